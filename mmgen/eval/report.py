"""``mmgen eval``: IWAE likelihoods, cross-modal accuracy and coherence, and pictures, for a run.

Every number says how it was obtained: the proposal of each likelihood estimate, the split, K,
the likelihood convention of each modality, the classifier's own test accuracy; ``"settings"`` holds
the arguments of the evaluation (split, K, K_rest, proposal, limit, per_class) that make them again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mmgen.errors import MmgenError
from mmgen.eval.class_spaces import CrossModalSetup, crossmodal_metrics, crossmodal_setup
from mmgen.eval.comparison import ComparisonSettings, comparison_report
from mmgen.eval.conditional import conditional_coherence
from mmgen.eval.crossmodal import joint_coherence
from mmgen.eval.judge import as_unit_float, cache_dir, training_progress
from mmgen.eval.likelihood import REST_FACTOR, likelihood_report
from mmgen.eval.pictures import save_sampling_pictures, save_training_curves
from mmgen.eval.sequences import sequence_targets, token_accuracy
from mmgen.model.inputs import prepare_fixed
from mmgen.model.presence import evaluation_presence
from mmgen.recipe.build import build_dataset, class_field_of
from mmgen.recipe.memory import FLOAT_BYTES, refuse_if_too_big
from mmgen.run.data_record import check_data_record
from mmgen.run.loaded import Run

EVAL_SPLITS = ("test", "val")
Stage = Callable[[str], None]  # a stage begins: what it does
Work = Callable[[int, int, str], None]  # the stage's work so far: (done, total, unit), e.g. (500, 10000, "examples")


def evaluate(run: Run, split: str = "test", K: int = 1000, proposal: list[str] | None = None,
             per_class: int = 100, limit: int | None = None, seed: int = 0,
             on_stage: Stage | None = None, K_rest: int | None = None, on_work: Work | None = None,
             compare: ComparisonSettings | None = None) -> dict[str, Any]:
    """The whole evaluation as a JSON-able dict (``eval.json``). ``K_rest``: the K of log p(rest) in each
    conditional log p(m | rest); None picks it per conditional (``likelihood.rest_K``). ``on_stage(what)``: a
    stage begins; ``on_work(done, total, unit)``: the work of a stage that counts it (else lines to on_stage).
    ``compare``: FID, post-hoc samplers and latent probes (``mmgen.eval.comparison``; by default all)."""
    say = on_stage or (lambda _msg: None)
    compare = compare or ComparisonSettings()
    check_arguments(run, split, K, K_rest, proposal, per_class, compare)
    work = on_work or work_as_lines(say)
    model, names = run.model, run.model.names
    say(f"loading the {split} split")
    dataset = build_dataset(run.recipe)
    check_data_record(run.run_dir.path, dataset)  # the examples it was trained on (Dataset.record)
    splits = dataset.load()
    if split not in splits:
        raise MmgenError(f"the {run.recipe.data.kind!r} dataset has no {split!r} split (it has {', '.join(splits)})")
    # Prepared once with a fixed seed on the CPU: a binarized split is binarized once, and the same
    # way on every device.
    data = prepare_fixed(model.modalities, {n: splits[split][n][:limit] for n in names}, seed, run.device)
    n_examples = next(iter(data.values())).shape[0]
    # Examples that lack a modality (data.missing_at_eval) are left out of every number that needs it.
    present = evaluation_presence(names, splits[split][names[0]].shape[0], run.recipe.data.missing_at_eval,
                                  run.recipe.data.pairing_seed)
    present = None if present is None else {n: m[:limit].to(run.device) for n, m in present.items()}

    out: dict[str, Any] = {
        "run": str(run.run_dir.path), "epoch": run.epoch, "split": split, "examples": n_examples, "K": K,
        "K rest": K_rest or f"per conditional, up to {REST_FACTOR} K: each conditional's \"K rest\"",
        "proposal": "per estimate (the modalities scored)" if proposal is None else f"q(z|{','.join(proposal)})",
        "conventions": {n: model.modalities[n].evaluation_note() for n in names}, "binarization_seed": seed,
        "missing": {n: int((~m).sum()) for n, m in present.items() if not m.all()} if present else {},
        "settings": dict(split=split, K=K, K_rest=K_rest, proposal=proposal, limit=limit, per_class=per_class,
                         **compare.to_dict()),
    }
    say(f"IWAE estimates with K={K} on {n_examples} examples")
    torch.manual_seed(seed)
    started = time.perf_counter()
    work(0, n_examples, "examples")
    skipped: dict[str, str] = {}
    try:
        for key, est in likelihood_report(model, data, K=K, proposal=proposal,
                                          on_batch=lambda done, total: work(done, total, "examples"),
                                          present=present, K_rest=K_rest).items():
            out[key] = est.to_dict()
    except NotImplementedError as exc:  # a family without a tractable density says so from log_joint
        skipped["log-likelihoods"] = f"the {model.describe()} has no joint density to score: {exc}"
    out["seconds likelihood"] = time.perf_counter() - started

    crossmodal, setup = crossmodal_report(run, splits, split, data, limit, present, per_class, seed, say, work)
    out.update(crossmodal)
    compared = comparison_report(run, setup, splits, split, data, limit, present, per_class, compare, seed, say)
    out["skipped"] = {**skipped, **out.get("skipped", {}), **compared.pop("skipped")}
    out.update(compared)
    stored = {t: splits[split][t][:limit].to(run.device) for t in sequence_targets(model)}
    out.update(token_accuracy(model, data, stored, present))
    out["seconds total"] = time.perf_counter() - started
    return out


def check_arguments(run: Run, split: str, K: int, K_rest: int | None, proposal: list[str] | None, per_class: int,
                    compare: ComparisonSettings) -> None:
    """Refuse, in one line, an evaluation that cannot be made, before any data is read."""
    compare.check()
    if split not in EVAL_SPLITS:
        raise MmgenError(f"split {split!r} cannot be evaluated: choose one of {', '.join(EVAL_SPLITS)}")
    if K < 1:
        raise MmgenError(f"-K {K}: the number of importance samples must be at least 1")
    if K_rest is not None and K_rest < 1:
        raise MmgenError(f"--K-rest {K_rest}: the number of importance samples must be at least 1")
    check_sizes(run, max(K, K_rest or K), per_class)  # an automatic K_rest fits by construction
    for name in proposal or []:
        if name not in run.model.names:
            raise MmgenError(f"--proposal {name!r}: this run has no such modality ({', '.join(run.model.names)})")


def work_as_lines(say: Stage, every: float = 30.0) -> Work:
    """Work as a line now and then (at most every ``every`` seconds, and at the end of a stage)."""
    last = {"at": 0.0}

    def work(done: int, total: int, unit: str) -> None:
        now = time.perf_counter()
        if done == 0:
            last["started"] = now
        elif done == total or now - last["at"] >= every:
            last["at"] = now
            say(f"  {done}/{total} {unit}, {now - last.get('started', now):.0f} s")

    return work


def check_sizes(run: Run, K: int, per_class: int) -> None:
    """Refuse a K or a per-class count whose tensors cannot fit, before anything is computed.

    One example's IWAE estimate holds K latents and, per scored modality, K decoded parameters
    and about as many activations; coherence decodes ``per_class`` samples of every class at once.
    """
    per_sample = run.bytes_per_sample()
    widest = max(FLOAT_BYTES * max((max(p.shape) for p in m.parameters() if p.dim()), default=1)
                 for m in run.model.modalities.values())
    refuse_if_too_big(f"-K {K:,} importance samples per example", K * (2 * per_sample + 4 * widest), run.device,
                      hint="use a smaller -K (the paper's is 1000)")
    classes = max((m.num_classes or 0 for m in run.model.modalities.values()), default=0) or 10
    refuse_if_too_big(f"--per-class {per_class:,} samples of each of {classes} classes",
                      per_class * classes * per_sample, run.device, hint="use a smaller --per-class")


def crossmodal_report(run: Run, splits, split: str, data, limit: int | None, present, per_class: int, seed: int,
                      say: Stage, work: Work | None = None) -> tuple[dict[str, Any], CrossModalSetup]:
    """Accuracy of every self-reading target from every other modality, coherence within each class
    space, and joint coherence over the readers of the data set's classes; the judges' own test
    accuracies; and, under ``"skipped"``, each number that is not measured and why. With the set-up
    (readers, judges) that measured them."""
    model, device = run.model, run.device
    judging = []

    def judge_steps(done: int, total: int) -> None:  # only a judge that is not in the cache trains
        if done == 0:
            say(f"training the classifier that judges {judging[-1]} on the training split: once, then cached "
                f"in {cache_dir() / 'classifiers'}")
        if work:
            work(done, total, "steps")

    def on_judge(name: str) -> None:
        judging.append(name)
        say(f"the classifier that judges {name}")

    with training_progress(judge_steps):
        setup = crossmodal_setup(model, splits["train"], class_field_of(run.recipe), device, run.recipe.data.kind,
                                 on_judge=on_judge)
    say("cross-modal accuracy, coherence and diversity")
    out: dict[str, Any] = {}
    for name, reader in setup.readers.items():
        if name not in setup.targets:
            test_x, test_y = splits["test"][name].to(device), splits["test"][setup.class_field].to(device)
            out[f"classifier accuracy {name} (test)"] = float((reader.predict(as_unit_float(test_x)) == test_y)
                                                             .float().mean())
    truths = {f: splits[split][f][:limit].to(device) for f in setup.fields()}
    real = {t: as_unit_float(splits[split][t][:limit]).to(device) for t in setup.images}  # never binarized
    out.update(crossmodal_metrics(model, setup, data, truths, present, per_class, seed, real))
    judged = setup.judged()
    if len(model.names) >= 3 and judged and setup.class_field is not None:  # PolyMNIST's measure
        out.update(conditional_coherence(model, judged, data, truths[setup.class_field], present, seed=seed))
    if len(judged) >= 2:
        out["coherence joint"] = joint_coherence(model, judged, n=per_class * setup.spaces[next(iter(judged))].size,
                                                 seed=seed)
    elif len(setup.readers) >= 2:
        setup.skipped["coherence joint"] = "fewer than two modalities read the data set's classes"
    out["skipped"] = dict(setup.skipped)
    return out, setup


def write_pictures(run: Run, split: str = "test", seed: int = 0) -> list[Path]:
    """Sampling modes, reconstructions and training curves as PNGs in ``run.outputs``: the run directory, or the
    working folder for an export or a Hub model."""
    splits = build_dataset(run.recipe).load()
    written = save_sampling_pictures(run, splits[split], run.outputs, seed=seed)
    rows = run.run_dir.read_metrics()
    if rows:
        written.append(save_training_curves(rows, run.outputs / "curves.png"))
    return written
