"""``mmgen eval``: honest likelihoods, cross-modal metrics and pictures of a run; writes eval.json."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from mmgen.cli.app import app, err_console, out_console, reports_errors
from mmgen.cli.progress import StageProgress, plural
from mmgen.errors import MmgenError
from mmgen.eval.comparison import ComparisonSettings
from mmgen.eval.metric_pictures import save_metric_pictures
from mmgen.eval.report import evaluate, write_pictures
from mmgen.eval.representation import N_TRAIN
from mmgen.plugin.registry import get_registry
from mmgen.run.loaded import Run
from mmgen.storage.atomic import atomic_write_text

FAST = {"K": 50, "limit": 1000, "per_class": 20}
FAST_NOTE = (f"K={FAST['K']} on the first {FAST['limit']} examples, {FAST['per_class']} samples per class for "
             "coherence")

EVAL_EPILOG = """Examples:

  mmgen eval runs/quick --fast     # a look in under a minute, not the paper's protocol

  mmgen eval runs/quick            # the paper's protocol: K=1000 on every test example

  mmgen eval runs/quick --split val -K 100 --json

  mmgen eval runs/quick --proposal image     # every estimate with q(z|image), as the paper's Table 2

RUN defaults to the newest run under runs/. eval.json and the PNG pictures (unless --no-pictures) go into \
RUN; for an export or hf://ORG/NAME\\[@REVISION], into the working folder.

An export's own files, its eval.json among them, stay as exported: the numbers its card shows.
"""


@app.command(name="eval", epilog=EVAL_EPILOG)
@reports_errors
def eval_(
    run_dir: Path | None = typer.Argument(None, metavar="RUN", help="A run directory, an export, or "
                                          "hf://ORG/NAME\\[@REVISION] \\[default: the newest under runs/]."),
    split: str = typer.Option("test", "--split", help="test or val."),
    K: int = typer.Option(1000, "-K", min=1, help="Importance samples per example."),
    K_rest: int | None = typer.Option(
        None, "--K-rest", min=1, help="Importance samples for log p(rest) in each log p(m|rest) "
        "\\[default: 10 K for a rest cheap to decode, such as a label; down to K for one as costly as the joint]."
    ),
    proposal: list[str] | None = typer.Option(
        None, "--proposal", help="Use q(z|these) for every estimate (repeatable) \\[default: the modalities scored]."
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Evaluate only the first N examples."),
    per_class: int = typer.Option(100, "--per-class", min=1, help="Samples per class for coherence."),
    as_json: bool = typer.Option(False, "--json", help="Print eval.json to stdout instead of a table."),
    pictures: bool = typer.Option(True, "--pictures/--no-pictures", help="Write the PNG pictures beside eval.json."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    which: str = typer.Option("best", "--weights", help="best (by validation) or last."),
    fast: bool = typer.Option(False, "--fast", help=f"A look in under a minute: {FAST_NOTE} (an -K, --limit or "
                              "--per-class given wins); eval.json says it was a fast evaluation."),
    fid: bool = typer.Option(True, "--fid/--no-fid", help="FID of generated images, unconditional and given each "
                             "subset of the other modalities."),
    fid_features: str = typer.Option("judge", "--fid-features", help="judge (each image modality's own judge, "
                                     "a domain feature space) or inception (Inception-v3, from local weights only)."),
    inception_weights: Path | None = typer.Option(None, "--inception-weights", help="torch-fidelity's Inception "
                                                  "weights file \\[default: the one in torch.hub's cache]."),
    samplers: list[str] | None = typer.Option(None, "--sampler", help="Latent sampler of unconditional FID and "
                                              "joint coherence, repeatable: prior, gmm \\[default: both]."),
    probe: bool = typer.Option(True, "--probe/--no-probe", help="Latent linear-probe accuracy for every subset."),
    probe_train: int = typer.Option(N_TRAIN, "--probe-train", min=2, help="Training examples of each probe "
                                    "(MoPoE's 500)."),
) -> None:
    """Honest IWAE likelihoods, cross-modal accuracy and coherence, FID, latent probes and pictures; writes eval.json.

    What it costs: the default, K=1000 on every test example (10,000 for MNIST), takes 14-37 minutes on a 2-core CPU.
    The first evaluation of a data set also trains its images' judge: about 2 minutes once, then cached.
    --fast gives a look in under a minute (once the judge is cached).
    """
    if fast:
        K, limit, per_class = fast_settings(K, limit, per_class)
    compare = ComparisonSettings(fid=fid, fid_features=fid_features, inception_weights=inception_weights, probe=probe,
                                 samplers=tuple(samplers or ComparisonSettings.samplers), probe_train=probe_train)
    compare.check()  # before a run is loaded: a mistyped option costs nothing
    run = Run.load(run_dir, device=device, which=which)
    with StageProgress(err_console, quiet=as_json) as stages:
        report = evaluate(run, split=split, K=K, proposal=proposal, per_class=per_class, limit=limit,
                          on_stage=stages.stage, K_rest=K_rest, on_work=stages.work, compare=compare)
        if fast:
            report = {"evaluation": f"fast (--fast): {FAST_NOTE}, a quick look, not the paper's protocol", **report}
        path = run.outputs / "eval.json"
        save_report(path, report)  # the numbers first: a picture that fails must not lose them
        if pictures:
            stages.stage("pictures")
            report["pictures"] = draw_pictures(run, split, report)
            save_report(path, report)
    send_to_loggers(run, report)
    if as_json:
        out_console.print_json(data=report)
        return
    print_table(report, run, split, K, path)


def fast_settings(K: int, limit: int | None, per_class: int) -> tuple[int, int, int]:
    """--fast's K, example count and samples per class, where the option was left at its default."""
    return (FAST["K"] if K == 1000 else K, limit or FAST["limit"], FAST["per_class"] if per_class == 100 else per_class)


def save_report(path: Path, report: dict) -> None:
    try:
        atomic_write_text(path, json.dumps(report, indent=2) + "\n")
    except OSError as exc:
        raise MmgenError(f"cannot write {path}: {exc.strerror or exc}")


def warn(message: str) -> None:
    err_console.print(Text(f"warning: {message}", style="yellow"), soft_wrap=True)


def draw_pictures(run: Run, split: str, report: dict) -> list[str]:
    """The PNGs of the run and of its numbers; a picture that cannot be drawn is a warning, never a lost
    evaluation."""
    try:
        return [str(p) for p in [*write_pictures(run, split=split), *save_metric_pictures(report, run.outputs)]]
    except Exception as exc:  # any plotting or image failure: the numbers are already saved
        warn(f"the pictures were not drawn: {exc.__class__.__name__}: {exc}")
        return []


def send_to_loggers(run: Run, report: dict) -> None:
    """The numbers and pictures to each logger of the run's recipe (a no-op for jsonl and tensorboard); one that
    fails is a warning, never a lost evaluation: eval.json is already written."""
    registry = get_registry()
    pictures = [Path(p) for p in report.get("pictures", [])]
    for kind in run.recipe.train.loggers:
        try:  # a run's loggers were not checked when it loaded: it evaluates where they cannot run
            logger = registry.lookup("loggers", kind)
            missing = logger.missing_for(run.run_dir.path)
            if missing:
                warn(f"the evaluation was not logged to {kind}: {missing}")
                continue
            logger.log_evaluation(run.run_dir.path, run.recipe.to_dict(), report, pictures)
        except Exception as exc:  # an unknown kind, an unreachable server, a plugin's bug
            hint = f" (hint: {exc.hint})" if isinstance(exc, MmgenError) and exc.hint else ""
            warn(f"the evaluation was not logged to {kind}: {f'{exc}{hint}' or type(exc).__name__}")


def print_table(report: dict, run: Run, split: str, K: int, path: Path) -> None:
    table = Table("quantity", "value", "± s.e.", "how", title=f"{run.run_dir.path} (epoch {run.epoch}), {split} split")
    for key, value in report.items():
        if isinstance(value, dict) and "value" in value:
            stderr = "" if value["stderr"] is None else f"{value['stderr']:.2f}"
            shown = "n/a" if value["value"] is None else f"{value['value']:.2f}"
            ks = f"{value.get('K', K)}" + (f" - {value['K rest']}" if "K rest" in value else "")
            table.add_row(key, shown, stderr, f"{value['proposal']}, K={ks}, n={value['n']}")
        elif isinstance(value, float) and not key.startswith("seconds"):
            table.add_row(key, f"{value:.4f}", "", "")
        elif value is None and not key.startswith("seconds"):
            table.add_row(key, "n/a", "", "no example has the source modality")
    for k, value in report.get("conditional coherence", {}).items():
        table.add_row(f"conditional coherence, {k} given", f"{value:.4f}", "", "each target from each subset of size k")
    add_field_rows(table, report)
    for key, value in report.items():
        if key.startswith("token accuracy") and isinstance(value, list):
            table.add_row(key, " ".join(f"{v:.3f}" for v in value), "", "per position")
    for key, why in report.get("skipped", {}).items():
        table.add_row(Text(key), "-", "", Text(f"not measured: {why}"))
    out_console.print(table)
    for name, note in report["conventions"].items():
        out_console.print(f"{name}: {note}", highlight=False)
    if any(isinstance(v, dict) and "K rest" in v for v in report.values()):
        out_console.print("log p(m|rest) = log p(all) - log p(rest): a difference of two lower bounds, "
                          "an estimate, not a bound", highlight=False)
    if "evaluation" in report:
        out_console.print(f"evaluation: {report['evaluation']}", style="yellow", highlight=False)
    out_console.print(f"{plural(report['examples'], 'example')} in {report['seconds total']:.0f} s "
                      f"(likelihoods {report['seconds likelihood']:.0f} s); wrote {path}", highlight=False)


def add_field_rows(table: Table, report: dict) -> None:
    """FID (per sampler and modality; conditional by subset size) and latent-probe accuracy by subset size."""
    fid = report.get("fid") or {}
    how = f"n={fid.get('samples')}, {report.get('settings', {}).get('fid_features', 'judge')} features"
    for sampler, by_modality in fid.get("unconditional", {}).items():
        for m, value in by_modality.items():
            table.add_row(f"FID {m}, unconditional ({sampler})", "n/a" if value is None else f"{value:.2f}", "", how)
    for k, value in fid.get("conditional", {}).items():
        table.add_row(f"FID conditional, {k} given", "n/a" if value is None else f"{value:.2f}", "",
                      f"{how}; each image target from each subset of size k")
    for k, value in report.get("latent probe", {}).items():
        table.add_row(f"latent probe, {k} given", f"{value:.4f}", "",
                      f"linear, {report['latent probe settings']['n_train']} training examples")
