"""The plan, the loop over cells and the command line of the leaderboard (``python -m benchmarks.leaderboard``)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import platform
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from mmgen.errors import MmgenError, TrainingInterrupted
from mmgen.recipe import build_dataset, build_model, load_recipe

from . import cells as cellmod
from .cells import FAILED, NO_RECIPE, NOT_RUN, Cell, read_json, run_cell
from .protocol import (
    DEFAULTS,
    REPO,
    Protocol,
    budget_overrides,
    code_version,
    digest,
    epochs_for,
    families,
    find_recipe,
    git_commit,
)
from .report import Row, markdown, plot

# Measured on this project's 2-core VM (one thread, nice 19, beside a training job) with the default protocol
# and MNIST's and PolyMNIST-style's mvae: one evaluation (once the judges are cached), the judges mmgen eval
# trains once per data set, and validation per epoch as a multiple of (validation examples / batch) training
# steps. Used only for the plan's estimate.
EVAL_MINUTES = {"mnist": 2.7, "polymnist": 3.0}
JUDGES_MINUTES = {"mnist": 0.6, "polymnist": 0.4}
VALIDATION_FACTOR = 0.5


def say_for(prefix: str):
    def say(message: str) -> None:
        print(f"[{prefix}] {message}", file=sys.stderr, flush=True)
    return say


# ---- the plan ----------------------------------------------------------------------------------------------
def plan(protocol: Protocol, kinds: list[str], seeds: list[int], root: Path,
         probe_steps: int) -> tuple[list[Cell], float]:
    """Every cell of one data set, with the recipe, overrides, epochs and folder it is trained under, and the
    minutes they are estimated to take; prints the plan and that estimate, timed from ``probe_steps`` training
    steps of each family to be trained."""
    registry, data, lines, total = families(), {}, [], 0.0
    print(f"\n{protocol.dataset}: {protocol.title}. Budget: {protocol.steps} optimizer steps at batch "
          f"{protocol.batch_size} (whole epochs) or {protocol.minutes:g} min of training, whichever comes first; "
          f"seeds {', '.join(map(str, seeds))}; eval: {protocol.eval.command()}; overrides: "
          f"{' '.join(protocol.overrides) or 'none'}", file=sys.stderr)
    out = []
    for kind in kinds:
        cells, line = family_cells(protocol, registry[kind], seeds, root, data)
        out += cells
        todo = [c for c in cells if c.stored() is None]
        minutes = estimate(protocol, cells[0], data, probe_steps) * len(todo) if todo else 0.0
        total += minutes
        lines.append(f"  {kind:12s} {line:70s} {len(todo)} of {len(cells)} to train"
                     + (f", about {minutes:.0f} min" if todo and not math.isnan(minutes) else ""))
    print("\n".join(lines), file=sys.stderr)
    judges = JUDGES_MINUTES.get(protocol.dataset, 0.0) if any(c.stored() is None for c in out) else 0.0
    print(f"  estimated: {(total + judges) / 60:.1f} h for {protocol.dataset}" if not math.isnan(total)
          else "  estimated: not timed (--probe-steps 0)", file=sys.stderr)
    return out, total + judges


def family_cells(protocol: Protocol, family, seeds: list[int], root: Path,
                 data: dict[str, Any]) -> tuple[list[Cell], str]:
    """The cells of one family (one per seed) and a line for the plan; a family is never left out: one with
    no recipe, or a recipe that cannot be read, gets cells that say so."""
    base = Cell(protocol, family.kind, 0)
    stem = dict(protocol.recipes).get(family.kind) or f"{protocol.dataset}_{family.kind}"
    path = find_recipe(protocol.dataset, family, stem)
    if path is None:
        why = f"no recipes/{stem}.toml and no registered recipe of that name"
        return [dataclasses.replace(base, seed=s, problem=why, status=NO_RECIPE) for s in seeds], "no recipe"
    shown = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else path.name
    try:
        recipe = load_recipe(path, list(protocol.overrides))
        fusion = getattr(recipe.model, "fusion", None)
        trains = "" if recipe.model.kind == family.kind else (  # mnist_mopoe.toml: the MVAE family, fusion mopoe
            f"model kind {recipe.model.kind}" + (f", fusion {fusion.kind}" if fusion is not None else ""))
        base = dataclasses.replace(base, trains=trains)
        sizes = data_sizes(recipe, protocol, data)
        epochs, per_epoch = epochs_for(protocol.steps, sizes["train"], protocol.batch_size)
        out = []
        for seed in seeds:
            overrides = budget_overrides(protocol, recipe, epochs, seed)
            resolved = load_recipe(path, overrides)
            unseeded = {k: v for k, v in resolved.to_dict().items() if k != "seed"}
            key = digest({"recipe": unseeded, "code": code_version(resolved)})
            folder = root / protocol.key() / protocol.dataset / family.kind / key / f"seed{seed}"
            out.append(dataclasses.replace(base, seed=seed, recipe=path, overrides=tuple(overrides), path=folder,
                                           epochs=epochs, steps_per_epoch=per_epoch))
    except (MmgenError, OSError) as exc:  # a recipe that does not validate, data that cannot be read
        why = cellmod.one_line(exc)
        return [dataclasses.replace(base, seed=s, recipe=path, problem=why, status=FAILED) for s in seeds], why
    shown += f" ({trains})" if trains else ""
    return out, f"{shown}: {epochs} epochs of {per_epoch} steps = {epochs * per_epoch} steps"


def data_sizes(recipe, protocol: Protocol, data: dict[str, Any]) -> dict[str, Any]:
    """The split sizes of a recipe's data set (loaded once per data configuration), and the first batch."""
    key = digest(recipe.data.model_dump(mode="json"))
    if key not in data:
        splits = build_dataset(recipe).load()
        sizes = {name: len(next(iter(split.values()))) for name, split in splits.items()}
        data[key] = {**sizes, "batch": {f: v[: protocol.batch_size] for f, v in splits["train"].items()}}
    return data[key]


def estimate(protocol: Protocol, cell: Cell, data: dict[str, Any], probe_steps: int) -> float:
    """Minutes of one cell: its training, timed from ``probe_steps`` steps and capped, plus one evaluation."""
    if cell.problem or probe_steps == 0:
        return 0.0 if cell.problem else math.nan
    recipe = load_recipe(cell.recipe, list(cell.overrides))
    sizes = data_sizes(recipe, protocol, data)
    try:
        seconds = seconds_per_step(recipe, sizes["batch"], probe_steps)
    except Exception as exc:  # the training will fail the same way, and its row will say why
        print(f"  {cell.family}: its timing failed ({cellmod.one_line(exc)})", file=sys.stderr)
        return 0.0
    validation = sizes["val"] / protocol.batch_size * seconds * VALIDATION_FACTOR
    train = min(cell.epochs * (cell.steps_per_epoch * seconds + validation), protocol.minutes * 60)
    print(f"  {cell.family}: {seconds:.3f} s a step", file=sys.stderr)
    return train / 60 + EVAL_MINUTES.get(protocol.dataset, 0.0)


def seconds_per_step(recipe, raw: dict[str, torch.Tensor], steps: int) -> float:
    """Wall seconds of one optimizer step on the first batch of the training split (after one warm-up step)."""
    torch.manual_seed(0)
    model = build_model(recipe)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.train.lr)
    batch = {n: model.modalities[n].prepare(raw[n]) for n in model.names}

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model(batch, beta=1.0).loss.backward()
        optimizer.step()

    step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - started) / steps


# ---- the board ---------------------------------------------------------------------------------------------
def rows_of(protocol: Protocol, cells: list[Cell], results: dict[Cell, dict[str, Any]]) -> list[Row]:
    rows: dict[str, Row] = {}
    for cell in cells:
        if cell.protocol != protocol:
            continue
        recipe = "—" if cell.recipe is None else f"`{cell.recipe.stem}`" + (f" ({cell.trains})" if cell.trains else "")
        row = rows.setdefault(cell.family, Row(cell.family, recipe))
        report = None if cell.path is None else read_json(cell.run_dir / "eval.json")
        row.seeds.append((cell, results[cell], report))
    return list(rows.values())


def machine(devices: set[str]) -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    cuda = torch.cuda.is_available() and any(d.startswith("cuda") for d in devices)
    gpu = f", {torch.cuda.get_device_name()}" if cuda else ""  # the GPU the board ran on
    return (f"{os.cpu_count()} CPUs ({cpu}){gpu}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
            f"Python {platform.python_version()}")


def header(protocols: list[Protocol], seeds: list[int], argv: list[str], root: Path) -> list[str]:
    env = " ".join(f"{k}={os.environ[k]}" for k in ("MMGEN_DATA_ROOT", "OMP_NUM_THREADS") if k in os.environ)
    lines = ["## Protocol", "",
             f"- Command: `{(env + ' ') if env else ''}python -m benchmarks.leaderboard {shlex.join(argv)}`".rstrip(),
             f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Machine: {machine({p.device for p in protocols})}.",
             f"- Code: commit {git_commit()}. Each result is stored under `{root}` keyed by its data set's protocol, "
             "and by its resolved recipe and a hash of mmgen's source and of the source of every plugin the recipe "
             "uses (its family, modalities, fusion, data set) and torch's version: a result at the same key is "
             "never trained again.",
             f"- Seeds: {', '.join(map(str, seeds))}, the same for every family (the recipe's `seed`).",
             "- Recipe: `recipes/<data set>_<family>.toml`, or the recipe of that name the family's plugin "
             "registers. Every family gets the same overrides: seed, batch size, epochs, device and the data "
             "overrides below; its β warm-up, learning-rate warm-up and step period (in epochs) are scaled by "
             "(budget epochs / recipe epochs), so each keeps the shape of its own schedule. Everything else "
             "(its objective's hyper-parameters, networks, learning rate, `best_by`) is the recipe's.",
             "- Budget: a number of optimizer steps, rounded up to whole epochs (the trainer keeps weights only at "
             "the end of an epoch), and a wall-time cap per training, whichever comes first. The cap stops "
             "training at the end of an epoch when the next, as long as the last, would end past it, or in the "
             "middle of one once it is reached (that epoch's steps are then lost). The evaluated weights are "
             "the best by the recipe's validation rule among the epochs that finished.",
             "- Evaluation: the test split, seed 0, the best weights, by `mmgen.eval.report.evaluate`, the same "
             "for every family; pictures are not drawn."]
    for p in protocols:
        lines.append(f"- **{p.title}**: {p.steps} steps at batch {p.batch_size} or {p.minutes:g} min; "
                     f"`{p.eval.command()}`; data overrides: "
                     + (", ".join(f"`{o}`" for o in p.overrides) or "none") + f"; device {p.device}.")
    return lines


def parse_args(argv: list[str]) -> argparse.Namespace:
    doc = sys.modules["benchmarks.leaderboard"].__doc__
    ap = argparse.ArgumentParser(prog="python -m benchmarks.leaderboard", description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    listed = lambda text: [s for s in text.split(",") if s]  # noqa: E731
    ap.add_argument("--families", type=listed, help="model kinds, comma-separated (default: every registered one)")
    ap.add_argument("--datasets", type=listed, default=list(DEFAULTS), help="mnist,polymnist (default: both)")
    ap.add_argument("--seeds", type=lambda t: [int(s) for s in listed(t)], default=[0, 1], help="default: 0,1")
    ap.add_argument("--steps", type=int, help="optimizer steps of every selected data set (rounded up to epochs)")
    ap.add_argument("--minutes", type=float, help="wall-time cap of one training, every selected data set")
    ap.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                    help="a recipe override for every family and data set (repeatable; part of the protocol)")
    ap.add_argument("--eval-K", type=int, help="mmgen eval -K of every selected data set")
    ap.add_argument("--eval-limit", type=int, help="mmgen eval --limit")
    ap.add_argument("--eval-per-class", type=int, help="mmgen eval --per-class")
    ap.add_argument("--probe-train", type=int, help="mmgen eval --probe-train")
    ap.add_argument("--device", default="cpu", help="where every family trains and is scored (default: cpu)")
    ap.add_argument("--probe-steps", type=int, default=2, help="steps timed per family for the plan (0: none)")
    ap.add_argument("--plan", action="store_true", help="print the plan and its estimated cost; train nothing")
    ap.add_argument("--no-train", action="store_true",
                    help="write the pages from the stored results; a cell without one says 'not run'")
    ap.add_argument("--root", type=Path, default=Path("runs/leaderboard"), help="where results are stored")
    ap.add_argument("--out-md", type=Path, default=REPO / "docs/leaderboard.md")
    ap.add_argument("--out-png", type=Path, default=REPO / "docs/images/leaderboard.png")
    return ap.parse_args(argv)


def protocols_of(args: argparse.Namespace) -> list[Protocol]:
    unknown = [d for d in args.datasets if d not in DEFAULTS]
    if unknown:
        raise SystemExit(f"error: unknown data set {unknown[0]!r} (the board has {', '.join(DEFAULTS)})")
    out = []
    for d in args.datasets:
        p = DEFAULTS[d]
        ev = p.eval
        ev = dataclasses.replace(ev, K=args.eval_K or ev.K, limit=args.eval_limit or ev.limit,
                                 per_class=args.eval_per_class or ev.per_class,
                                 probe_train=args.probe_train or ev.probe_train)
        out.append(dataclasses.replace(p, steps=args.steps or p.steps, minutes=args.minutes or p.minutes, eval=ev,
                                       overrides=(*p.overrides, *args.override), device=args.device))
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    protocols = protocols_of(args)
    registered = list(families())
    kinds = args.families or registered
    unknown = [k for k in kinds if k not in registered]
    if unknown:
        print(f"error: no registered model family {unknown[0]!r} (registered: {', '.join(registered)})",
              file=sys.stderr)
        return 2
    probe_steps = 0 if args.no_train else args.probe_steps  # --no-train runs no step at all, timed or not
    planned = [plan(p, kinds, args.seeds, args.root, probe_steps) for p in protocols]
    cells = [c for part, _ in planned for c in part]
    if probe_steps:
        print(f"\nestimated total: {sum(m for _, m in planned) / 60:.1f} h: training timed from {args.probe_steps} "
              "steps of each family here and now, capped; validation and evaluation from constants measured on mvae",
              file=sys.stderr)
    if args.plan:
        return 0
    results: dict[Cell, dict[str, Any]] = {}
    try:
        for cell in cells:
            say = say_for(f"{cell.protocol.dataset}/{cell.family}/seed{cell.seed}")
            stored = cell.stored()
            if stored is None and args.no_train:  # a stored failure says why; else nothing was run
                stored = read_json(cell.path / "result.json") or {"status": NOT_RUN,
                                                                  "error": "no stored result, and --no-train"}
            elif stored is None:
                say(f"training {cell.recipe.name} for {cell.epochs} epochs into {cell.path}")
            results[cell] = stored or run_cell(cell, say)
            say(f"{results[cell]['status']}" + (f": {results[cell]['error']}" if "error" in results[cell] else ""))
    except (TrainingInterrupted, KeyboardInterrupt):
        print("interrupted: run the same command again to resume where it stopped", file=sys.stderr)
        return 130
    boards = [(p, rows_of(p, cells, results)) for p in protocols]
    png = os.path.relpath(args.out_png, args.out_md.parent)
    args.out_md.parent.mkdir(parents=True, exist_ok=True)
    args.out_md.write_text(markdown(boards, header(protocols, args.seeds, argv, args.root), png))
    plot(boards, args.out_png)
    print(f"wrote {args.out_md} and {args.out_png}", file=sys.stderr)
    return 0
