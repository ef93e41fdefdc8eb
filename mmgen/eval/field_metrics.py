"""The numbers the field reports beside coherence (``mmgen eval``): FID of generated images, unconditional
from each latent sampler (the prior, a post-hoc Gaussian mixture) and conditional on every subset of the
other modalities; joint coherence from each post-hoc sampler; and latent linear-probe accuracy.

What each costs grows with what the run has: FID needs an image modality, the probes a class field and a
modality other than the class itself, a post-hoc sampler one fit on the training split (then cached in the
run's outputs). ``FieldSettings`` holds the choices; a number not measured goes to ``"skipped"`` with why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from mmgen.errors import MmgenError
from mmgen.eval.class_spaces import CrossModalSetup
from mmgen.eval.crossmodal import joint_coherence
from mmgen.eval.features import FeatureNet, inception_features, judge_features
from mmgen.eval.fid import fid_report
from mmgen.eval.judge import as_unit_float
from mmgen.eval.representation import N_TRAIN, latent_probe_report
from mmgen.model.inputs import prepare_fixed
from mmgen.model.presence import training_presence
from mmgen.run.loaded import Run
from mmgen.run.posthoc import PRIOR, SAMPLERS, draw_latents, fit_posthoc_sampler

FID_FEATURES = ("judge", "inception")


@dataclass
class FieldSettings:
    """What ``mmgen eval`` measures beyond likelihoods and coherence (its options, recorded in ``settings``)."""

    fid: bool = True
    fid_features: str = "judge"  # "judge": each modality's own judge; "inception": Inception-v3 from local weights
    inception_weights: Path | None = None
    fid_sizes: tuple[int, ...] | None = None  # sizes of the given subsets for conditional FID; None: all
    samplers: tuple[str, ...] = (PRIOR, "gmm")
    probe: bool = True
    probe_train: int = N_TRAIN

    def check(self) -> None:
        if self.fid_features not in FID_FEATURES:
            raise MmgenError(f"--fid-features {self.fid_features!r}: choose {' or '.join(FID_FEATURES)}")
        unknown = [s for s in self.samplers if s != PRIOR and s not in SAMPLERS]
        if unknown:
            raise MmgenError(f"--sampler {unknown[0]!r}: the latent samplers are {', '.join([PRIOR, *SAMPLERS])}")
        if self.probe_train < 2:
            raise MmgenError(f"--probe-train {self.probe_train}: the probe needs at least 2 training examples")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["inception_weights"] = None if self.inception_weights is None else str(self.inception_weights)
        out["samplers"], out["fid_sizes"] = list(self.samplers), self.fid_sizes and list(self.fid_sizes)
        return out


def latent_samplers(run: Run, settings: FieldSettings, seed: int, say) -> tuple[dict[str, Any], dict[str, Any]]:
    """``{name: n -> (n, L)}`` for each sampler asked for, a post-hoc one fitted (or read from its cache), and
    ``{name: what was fitted}`` for eval.json."""
    draws: dict[str, Any] = {PRIOR: lambda n: run.model.prior((n,)).sample()}
    fits: dict[str, Any] = {}
    for kind in settings.samplers:
        if kind != PRIOR:
            fitted = fit_posthoc_sampler(run, kind, seed=seed, on_stage=say)
            draws[kind] = lambda n, fitted=fitted: draw_latents(run, fitted, n, seed)
            fits[kind] = {"fitted to": "posterior means q(z | every modality) of the training split",
                          "components": fitted.components, **fitted.info}
    return {k: v for k, v in draws.items() if k in settings.samplers}, fits


def feature_nets(run: Run, setup: CrossModalSetup, settings: FieldSettings) -> dict[str, FeatureNet]:
    """The network whose features FID compares, per image modality: its judge's penultimate layer, or Inception."""
    if settings.fid_features == "inception":
        net = inception_features(settings.inception_weights, device=run.device)
        return dict.fromkeys(setup.images, net)
    data = run.recipe.data.kind
    return {m: judge_features(setup.readers[m], f"mmgen's {m} judge, a CNN trained on {data}'s training split "
                              f"(a domain feature space, not Inception's)") for m in setup.images}


def field_report(run: Run, setup: CrossModalSetup, splits, split: str, data: dict[str, Tensor], limit: int | None,
                 present, per_class: int, settings: FieldSettings, seed: int, say) -> dict[str, Any]:
    """FID, joint coherence per post-hoc sampler and latent probes; ``"skipped"``: what was not measured, why."""
    model, out, skipped = run.model, {}, {}
    samplers, fits = latent_samplers(run, settings, seed, say) if (settings.fid and setup.images) or \
        len(setup.judged()) >= 2 else ({}, {})
    if fits:
        out["latent samplers"] = fits
    n_examples = next(iter(data.values())).shape[0]
    if settings.fid and setup.images and n_examples < 2:
        skipped["fid"] = f"{n_examples} example: FID compares the covariances of at least 2 images"
    elif settings.fid and setup.images:
        say(f"FID in the features of {'Inception-v3' if settings.fid_features == 'inception' else 'each judge'}")
        real = {m: as_unit_float(splits[split][m][:limit]).to(run.device) for m in setup.images}  # never binarized
        out.update(fid_report(model, feature_nets(run, setup, settings), data, real, present, seed=seed,
                              latents=samplers, conditional_sizes=settings.fid_sizes))
    elif settings.fid:
        skipped["fid"] = "no modality is an image read by a judge"
    judged = setup.judged()
    for kind, draw in samplers.items():
        if kind != PRIOR and len(judged) >= 2:  # the prior's is "coherence joint" (crossmodal_report)
            n = per_class * setup.spaces[next(iter(judged))].size
            out[f"coherence joint ({kind})"] = joint_coherence(model, judged, n=n, seed=seed, latents=draw)
    if settings.probe:
        out.update(probe_report(run, setup, splits, split, data, limit, present, settings, seed, skipped, say))
    out["skipped"] = skipped
    return out


def probe_report(run: Run, setup: CrossModalSetup, splits, split: str, data, limit, present, settings: FieldSettings,
                 seed: int, skipped: dict[str, str], say) -> dict[str, Any]:
    """Latent linear-probe accuracy for the data set's classes, from every subset of the other modalities."""
    field = setup.class_field
    if field is None:
        skipped["latent probe"] = "the data set names no class field"
        return {}
    exclude = {n for n, space in setup.spaces.items() if n in setup.targets and space.field == field}
    if not [n for n in run.model.names if n not in exclude]:
        skipped["latent probe"] = "every modality is the class itself"
        return {}
    say(f"latent linear probes on {settings.probe_train} training examples, every subset")
    model, train, cfg = run.model, splits["train"], run.recipe.data
    n_train = train[field].shape[0]
    return latent_probe_report(
        model, {m: train[m] for m in model.names}, train[field], data, splits[split][field][:limit].to(run.device),
        exclude=exclude, n_train=settings.probe_train,
        present_train=training_presence(model.names, n_train, cfg.paired_fraction, cfg.pairing_seed),
        present_test=present, seed=seed,
        prepare_train=lambda raw: prepare_fixed(model.modalities, raw, seed, run.device))
