"""The numbers papers compare models by, beside likelihoods and coherence (``mmgen eval``): FID of generated
images, unconditional from each latent sampler (the prior, a post-hoc Gaussian mixture) and conditional on
every subset of the other modalities; joint coherence from each post-hoc sampler; and latent linear-probe
accuracy.

What each costs grows with what the run has: FID needs an image modality, the probes a class field and a
modality other than the class itself, a post-hoc sampler one fit on the training split (then cached in the
run's outputs). ``ComparisonSettings`` holds the choices; a number not measured goes to ``"skipped"`` with why.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from mmgen.errors import MmgenError
from mmgen.eval.class_spaces import CrossModalSetup
from mmgen.eval.crossmodal import joint_coherence
from mmgen.eval.features import FeatureNet, check_inception, inception_features, judge_features
from mmgen.eval.fid import fid_report
from mmgen.eval.representation import N_TRAIN, latent_probe_report
from mmgen.model.inputs import prepare_fixed
from mmgen.model.presence import training_presence
from mmgen.run.loaded import Run
from mmgen.run.posthoc import PRIOR, SAMPLERS, draw_latents, fit_posthoc_sampler

FID_FEATURES = ("judge", "inception")


@dataclass
class ComparisonSettings:
    """What ``mmgen eval`` measures beyond likelihoods and coherence (its options, recorded in ``settings``)."""

    fid: bool = True
    fid_features: str = "judge"  # "judge": each modality's own judge; "inception": Inception-v3 from local weights
    inception_weights: Path | None = None
    samplers: tuple[str, ...] = (PRIOR, "gmm")
    probe: bool = True
    probe_train: int = N_TRAIN

    def check(self) -> None:
        """One line for a choice that cannot work, before anything is loaded or computed."""
        if self.fid_features not in FID_FEATURES:
            raise MmgenError(f"--fid-features {self.fid_features!r}: choose {' or '.join(FID_FEATURES)}")
        unknown = [s for s in self.samplers if s != PRIOR and s not in SAMPLERS]
        if unknown:
            raise MmgenError(f"--sampler {unknown[0]!r}: the latent samplers are {', '.join([PRIOR, *SAMPLERS])}")
        if self.probe_train < 2:
            raise MmgenError(f"--probe-train {self.probe_train}: the probe needs at least 2 training examples")
        if self.fid and self.fid_features == "inception":
            check_inception(self.inception_weights)  # not after an hour of likelihoods

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["inception_weights"] = None if self.inception_weights is None else str(self.inception_weights)
        out["samplers"] = list(self.samplers)
        return out


def latent_samplers(run: Run, settings: ComparisonSettings, train: dict[str, Tensor], seed: int, say,
                    skipped: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``{name: n -> (n, L)}`` for each sampler asked for, a post-hoc one fitted (or read from its cache), and
    ``{name: what was fitted}`` for eval.json. A fit that fails (collapsed latents) is skipped with its reason."""
    draws: dict[str, Any] = {PRIOR: lambda n: run.model.prior((n,)).sample()} if PRIOR in settings.samplers else {}
    fits: dict[str, Any] = {}
    for kind in settings.samplers:
        if kind == PRIOR:
            continue
        try:
            fitted = fit_posthoc_sampler(run, kind, seed=seed, on_stage=say, train=train)
        except (ValueError, MmgenError) as exc:  # scikit-learn's ill-defined covariance; too few paired examples
            skipped[f"sampler {kind}"] = f"the {kind} sampler could not be fitted: {exc}"
            continue
        draws[kind] = lambda n, fitted=fitted: draw_latents(run, fitted, n, seed)
        fits[kind] = {"fitted to": "posterior means E q(z | every modality) of the training split",
                      "components": fitted.components, **fitted.info}
    return draws, fits


def feature_nets(run: Run, setup: CrossModalSetup, settings: ComparisonSettings) -> dict[str, FeatureNet]:
    """The network whose features FID compares, per image modality: its judge's penultimate layer, or Inception."""
    if settings.fid_features == "inception":
        net = inception_features(settings.inception_weights, device=run.device)
        return dict.fromkeys(setup.images, net)
    data = run.recipe.data.kind
    return {m: judge_features(setup.readers[m], f"mmgen's {m} judge, a CNN trained on {data}'s training split "
                              f"(a domain feature space, not Inception's)") for m in setup.images}


def comparison_report(run: Run, setup: CrossModalSetup, splits, split: str, data: dict[str, Tensor],
                      limit: int | None, present, per_class: int, settings: ComparisonSettings, seed: int,
                      say) -> dict[str, Any]:
    """FID, joint coherence per post-hoc sampler and latent probes, and the seconds they took; ``"skipped"``: what
    was not measured, why."""
    started, model, out, skipped = time.perf_counter(), run.model, {}, {}
    judged, images = setup.judged(), setup.images if settings.fid else []
    samplers, fits = latent_samplers(run, settings, splits["train"], seed, say, skipped) \
        if images or len(judged) >= 2 else ({}, {})
    if fits:
        out["latent samplers"] = fits
    for m in list(images):  # FID compares covariances: a modality needs two real test images (data.missing_at_eval)
        have = next(iter(data.values())).shape[0] if present is None else int(present[m].sum())
        if have < 2:
            skipped[f"fid {m}"] = f"{have} test example(s) have {m}: FID compares the covariances of at least 2 images"
            images = [n for n in images if n != m]
    if images:
        say(f"FID in the features of {'Inception-v3' if settings.fid_features == 'inception' else 'each judge'}")
        real = {m: splits[split][m][:limit].to(run.device) for m in images}  # as stored (uint8): never binarized
        nets = {m: net for m, net in feature_nets(run, setup, settings).items() if m in images}
        out.update(fid_report(model, nets, data, real, present, seed=seed, latents=samplers))
    elif settings.fid and not setup.images:
        skipped["fid"] = "no modality is an image read by a judge"
    for kind, draw in samplers.items():
        if kind != PRIOR and len(judged) >= 2:  # the prior's is "coherence joint" (crossmodal_report)
            n = per_class * setup.spaces[next(iter(judged))].size
            out[f"coherence joint ({kind})"] = joint_coherence(model, judged, n=n, seed=seed, latents=draw)
    if settings.probe:
        out.update(probe_report(run, setup, splits, split, data, limit, present, settings, seed, skipped, say))
    out["skipped"], out["seconds comparison"] = skipped, time.perf_counter() - started
    return out


def probe_report(run: Run, setup: CrossModalSetup, splits, split: str, data, limit, present,
                 settings: ComparisonSettings, seed: int, skipped: dict[str, str], say) -> dict[str, Any]:
    """Latent linear-probe accuracy for the data set's classes, from every subset of the modalities but the one
    that stores the class itself (a label modality named as the class field: it would score 1 trivially)."""
    classes = setup.class_field
    if classes is None:
        skipped["latent probe"] = "the data set names no class field"
        return {}
    exclude = {classes} & set(run.model.names)
    if not [n for n in run.model.names if n not in exclude]:
        skipped["latent probe"] = "every modality is the class itself"
        return {}
    say(f"latent linear probes on {settings.probe_train} training examples, every subset")
    model, train, cfg = run.model, splits["train"], run.recipe.data
    n_train = train[classes].shape[0]
    return latent_probe_report(
        model, {m: train[m] for m in model.names}, train[classes], data, splits[split][classes][:limit].to(run.device),
        exclude=exclude, n_train=settings.probe_train,
        present_train=training_presence(model.names, n_train, cfg.paired_fraction, cfg.pairing_seed),
        present_test=present, seed=seed,
        prepare_train=lambda raw: prepare_fixed(model.modalities, raw, seed, run.device))
