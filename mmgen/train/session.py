"""What ``mmgen train`` runs: validate everything, load the data, build the model, open or create
the run directory, and fit; ``--resume`` continues a run from its resume file.

A run directory is never a dead end: ``mmgen train RUN --resume`` continues from the last
checkpoint (of a finished or a partial epoch), starts a run that has none yet again in place,
and says so when the run is already finished. It never trains over weights it cannot resume
from: a run with weights but no resume file is refused with the ways forward.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from mmgen.config import Recipe
from mmgen.data.sources import DataSource, read_batch
from mmgen.errors import CheckpointError, DataError, MmgenError, PeerFailed, RecipeError, TrainingDiverged
from mmgen.model.presence import describe
from mmgen.plugin.registry import get_registry
from mmgen.recipe.build import build_dataset, build_model, check_fits, check_probe_size, resolve_device
from mmgen.recipe.load import load_recipe
from mmgen.run.data_record import check_data_record, remove_data_record, save_data_record
from mmgen.run.directory import RunDir
from mmgen.storage.atomic import atomic_write_text
from mmgen.storage.tensors import save_tensors
from mmgen.train.batches import choose_path
from mmgen.train.checkpoint import load_weights, read_counters
from mmgen.train.distributed import Distributed
from mmgen.train.optim import build_optimizer
from mmgen.train.recovery import check_fits_model, check_pairing, complete_commit
from mmgen.train.signals import StopRequest, stop_on_signals
from mmgen.train.trainer import Callback, Trainer

Say = Callable[[str], None]
# The [train] keys a resume may change: the length of the run, and how long the ranks wait for each other.
RESUME_MAY_CHANGE = ("epochs", "rendezvous_timeout")


def create_run(out: Path, recipe: Recipe, say: Say) -> RunDir:
    """A new run directory; an existing run there is never overwritten.

    A run of the same recipe that never wrote a checkpoint (killed in its first epoch) is taken
    over in place, so running the same command again is all it takes.
    """
    run = RunDir(out)
    unstarted = run.recipe_file.is_file() and not any(p.is_file() for p in (run.state, run.last, run.best))
    if unstarted:
        try:
            same = run.recipe().to_dict() == recipe.to_dict()
        except MmgenError:
            same = False
        if not same:
            raise CheckpointError(f"{out} holds the start of a run of another recipe, with no checkpoint yet",
                                  hint=f"choose another --out, or `mmgen train {out} --resume` to start that one")
        say(f"{out} has no checkpoint yet: training it from epoch 1 in place")
        return run
    run.create(recipe.to_dict())
    return run


def clear_strays(run: RunDir, say: Say) -> None:
    """Remove the temporary files of writes a kill cut short, naming each."""
    for path in run.remove_stray_temporaries():
        say(f"removed {path.name}, a file left by a write that was cut short")


def open_run(out: Path, recipe: Recipe, from_weights: bool = False,
             say: Say = lambda _msg: None) -> tuple[RunDir, dict]:
    """An existing run to resume, with the counters of its resume file ({} when it has none yet), or
    with ``from_weights`` those of its last finished epoch's weights. What a kill kept its last commit
    from writing (weights, metrics rows) is rebuilt from the resume file first.

    The recipe must be the run's: only the ``[train]`` keys of ``RESUME_MAY_CHANGE`` may change, and
    train.epochs not below the epochs it finished. The new recipe is written to the run once every check
    has passed (``_train``), so a refusal leaves it as it was.
    """
    run = RunDir.open(out)
    # Re-validated, so a field added since the run began compares as its default, not as a difference.
    saved, now = run.recipe().to_dict(), recipe.to_dict()
    for recipe_dict in (saved, now):
        for key in RESUME_MAY_CHANGE:
            recipe_dict.get("train", {}).pop(key, None)
    if saved != now:
        raise CheckpointError(
            f"{out}: the recipe differs from the one this run was trained with (only "
            + " and ".join(f"train.{key}" for key in RESUME_MAY_CHANGE) + " may change)"
        )
    counters = read_counters(run, from_weights)
    finished = int(counters.get("epoch", 0))
    before = run.recipe().train.epochs
    if recipe.train.schedule == "cosine" and recipe.train.epochs != before and counters:
        raise RecipeError(f"train.epochs={recipe.train.epochs}: {out}'s cosine schedule was laid out over "
                          f"{before} epochs, so the length of this run cannot change",
                          hint="start a new run, or use train.schedule=step or constant")
    if recipe.train.epochs != before and counters:
        check_stages_kept(recipe, before, finished, out)
    if recipe.train.epochs < finished:
        raise RecipeError(f"train.epochs={recipe.train.epochs} is below the {finished} epochs {out} has finished",
                          hint=f"pass train.epochs={finished} or more, or leave it out")
    clear_strays(run, say)  # here too: a finished run goes no further
    if counters and not from_weights:
        for name in complete_commit(run, counters):
            say(f"rebuilt {name} from the resume file (a kill had cut the commit of epoch {finished} short)")
    return run, counters


def stages_of(recipe: Recipe, epochs: int, first: int | None = None) -> list[str]:
    """The recipe's family's training stage (Model.training_stage) of each of the ``first`` epochs (default:
    all) of a run of ``epochs``; ``first`` may pass ``epochs``, for a run that is being lengthened."""
    family = get_registry().lookup("models", recipe.model.kind)
    return [family.training_stage(recipe.model, e, epochs) for e in range(epochs if first is None else first)]


def check_stages_kept(recipe: Recipe, before: int, finished: int, out: Path) -> None:
    """A family trained in stages (``Model.training_stage``) lays them out over the run's length: a new
    ``train.epochs`` must leave the stage of every epoch begun (``finished`` + the next) as it was."""
    begun = range(min(finished + 1, recipe.train.epochs))
    was, now = stages_of(recipe, before, len(begun)), stages_of(recipe, recipe.train.epochs, len(begun))
    if was != now:
        epoch = next(e for e in begun if was[e] != now[e]) + 1
        raise RecipeError(f"train.epochs={recipe.train.epochs}: {out} trains {recipe.model.kind} in stages laid out "
                          f"over {before} epochs, and epoch {epoch}, trained in the {was[epoch - 1]} stage, would "
                          f"belong to the {now[epoch - 1]} stage", hint="start a new run for a longer schedule")


def stage_plan(recipe: Recipe) -> str:
    """"epochs 1-250: the joint stage; 251-500: the unimodal stage" for a family trained in stages, else ""."""
    epochs = recipe.train.epochs
    stages = stages_of(recipe, epochs)
    if set(stages) == {""}:
        return ""
    parts, start = [], 0
    for e in range(1, epochs + 1):
        if e == epochs or stages[e] != stages[start]:
            span = f"{start + 1}-{e}" if e - start > 1 else f"{e}"
            parts.append(f"{span}: the {stages[start]} stage")
            start = e
    return f"{recipe.model.kind} trains in stages, epochs " + "; ".join(parts)


def first_examples(source: DataSource, names: list[str]) -> dict[str, torch.Tensor]:
    """The first two training examples (the one of a 1-example split), which ``check_fits`` tries."""
    reader = source.reader("train", names)
    if len(reader) == 0:
        raise DataError("the training split holds no example", hint="check data.val_size and the data set's files")
    return read_batch(reader, list(range(min(2, len(reader)))))


def record_pairing(run: RunDir, trainer: Trainer) -> None:
    """Save the weak-supervision masks (bool as uint8) with their counts, so the split can be inspected."""
    if trainer.train_present is None:
        return
    masks = {n: m.to("cpu", torch.uint8) for n, m in trainer.train_present.items()}
    counts = describe({n: m.bool() for n, m in masks.items()}, trainer.n_train)
    save_tensors(run.pairing, masks, {"paired_fraction": trainer.recipe.data.paired_fraction,
                                      "pairing_seed": trainer.recipe.data.pairing_seed, **counts})


def keep_pairing(run: RunDir, trainer: Trainer, ranks: Distributed, say: Say) -> None:
    """On resume, every rank refuses a pairing file that disagrees with the rebuilt masks (rank 0 reads it);
    a weakly supervised run that lost the file gets it written again."""
    masks, seed = trainer.train_present, trainer.recipe.data.pairing_seed
    problem = None
    if ranks.main:
        try:
            check_pairing(run, masks, seed)
        except CheckpointError as exc:
            problem = (str(exc), exc.hint)
    problem = ranks.share(problem)
    if problem:
        raise CheckpointError(*problem)
    if ranks.main and masks is not None and not run.pairing.is_file():
        record_pairing(run, trainer)
        say(f"wrote {run.pairing.name} again: it was missing")


def read_recipe(recipe_path: Path, overrides: list[str], out: Path | None) -> tuple[Recipe, Path | None]:
    """The recipe of a TOML file, or of a run directory (its recipe.json, handy with --resume)."""
    recipe_path = Path(recipe_path)
    if recipe_path.is_dir():
        return RunDir.open(recipe_path).recipe(overrides, for_training=True), out or recipe_path
    return load_recipe(recipe_path, overrides), out  # every recipe error surfaces here, before any tensor


def train_recipe(recipe_path: Path, overrides: list[str], out: Path | None, device: str | None, resume: bool,
                 on_progress: Callback | None = None, on_epoch: Callback | None = None,
                 say: Say | None = None, from_weights: bool = False) -> Path:
    """``mmgen train``: validate everything, then load data, build the model and fit. Returns the run dir.

    ``from_weights`` (with ``resume``): go on from the weights of the last finished epoch with a fresh
    optimizer state, for a run whose resume file is lost.

    Under torchrun (``WORLD_SIZE`` > 1) every rank runs this; rank 0 alone makes or opens the run
    directory, prints and calls the callbacks.
    """
    ranks = Distributed.from_env()
    if not ranks.main:
        say = on_progress = on_epoch = None
    say = say or (lambda _msg: None)
    recipe, out = read_recipe(recipe_path, overrides, out)
    dev = resolve_device(device or recipe.train.device)
    if resume and out is None:
        raise CheckpointError("--resume needs the run directory: `mmgen train RUN_DIR --resume` or --out RUN_DIR")
    if from_weights and not resume:
        raise CheckpointError("--from-weights goes with --resume: `mmgen train RUN_DIR --resume --from-weights`")
    counters = {}
    if resume:
        counters = (open_run(out, recipe, from_weights, say)[1] if ranks.main
                    else read_counters(RunDir(out), from_weights))
    if resume and counters.get("epoch", 0) >= recipe.train.epochs and not counters.get("epoch_step"):
        say(f"{out} is finished: {counters['epoch']} of {recipe.train.epochs} epochs "
            f"(pass train.epochs=N to train it further)")
        return Path(out)
    # Model, data and their fit come before a new run directory, so an error there leaves nothing behind;
    # the files a resume reads are checked against the model before the data loads.
    model = build_model(recipe)
    check_probe_size(recipe, model)
    if resume:
        optimizer = build_optimizer(model.parameters(), recipe.train, torch.device("cpu"))  # only its groups are read
        check_fits_model(RunDir(out), model, optimizer, from_weights)
    source = DataSource(build_dataset(recipe))
    check_fits(model, first_examples(source, model.names))
    dev = ranks.start(dev, recipe.train.rendezvous_timeout)
    try:
        return _train(recipe, model, source, out, dev, resume, ranks, on_progress, on_epoch, say, from_weights)
    finally:
        ranks.stop()


def resume_everywhere(trainer: Trainer, ranks: Distributed, run: RunDir) -> None:
    """Resume on every rank from the one resume file; ranks that do not see it, or read other counters
    (a run directory that is not on a file system every node shares), stop every rank with one line."""
    blind = [r for r, seen in enumerate(ranks.gather(run.state.is_file())) if not seen]
    if blind:
        raise CheckpointError(f"rank(s) {', '.join(map(str, blind))} do not see {run.state}: the run directory "
                              "must be on a file system every rank shares")
    trainer.resume()
    counters = ranks.gather((trainer.state.epoch, trainer.state.step, trainer.state.epoch_step))
    if len(set(counters)) > 1:
        raise CheckpointError(f"the ranks read different resume files ({counters}): the run directory must be "
                              "on a file system every rank shares")


def _lost_a_peer(exc: RuntimeError) -> bool:
    """A collective failed because another process is gone (gloo or NCCL says so)."""
    text = str(exc)
    return isinstance(exc, getattr(torch.distributed, "DistError", ())) or any(
        word in text for word in ("Connection closed by peer", "Connection reset by peer", "NCCL communicator",
                                  "gloo/transport", "Socket Timeout"))


def resume_from_weights(trainer: Trainer, ranks: Distributed, run: RunDir) -> None:
    """``--from-weights`` on every rank: the last finished epoch's weights and counters, and the schedule
    stepped to that point; the optimizer's moments, the fp16 scaler and the random streams start afresh."""
    trainer.state, trainer.rows = load_weights(run, trainer.model, trainer.cfg.best_by, trainer.names)
    trainer.partial = None
    if trainer.stepper.scheduler is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # stepped without optimizer steps, on purpose
            for _ in range(trainer.state.step):
                trainer.stepper.scheduler.step()
    counters = ranks.gather((trainer.state.epoch, trainer.state.step))
    if len(set(counters)) > 1:
        raise CheckpointError(f"the ranks read different weights ({counters}): the run directory must be "
                              "on a file system every rank shares")


def _train(recipe: Recipe, model, source: DataSource, out: Path | None, dev: torch.device, resume: bool,
           ranks: Distributed, on_progress: Callback | None, on_epoch: Callback | None, say: Say,
           from_weights: bool = False) -> Path:
    """Choose the data path, make or open the run directory (rank 0), resume or start, and fit."""
    batches, placement = choose_path(recipe.data.on_device, source, model.names, dev, recipe.data.workers)
    run = None
    if ranks.main:
        run = RunDir(out) if resume else create_run(out or RunDir.default_path(recipe.name), recipe, say)
        clear_strays(run, say)
    run = RunDir(Path(ranks.share(str(run.path) if run else None)))  # every rank: the directory rank 0 chose
    say(placement + (f"; {ranks.world} processes share each batch of {recipe.train.batch_size}"
                     if ranks.active else ""))
    stages = stage_plan(recipe)
    if stages:
        say(stages)
    stop = StopRequest()
    trainer = Trainer(recipe, model, source, run, dev, stop, batches, ranks)
    resuming = ranks.share(run.state.is_file() if ranks.main else None)  # rank 0 decides whether this is a resume
    if from_weights or resuming:
        keep_pairing(run, trainer, ranks, say)
        check_data_record(run.path, source.dataset)  # the examples the run was trained on (Dataset.record)
    if from_weights:
        resume_from_weights(trainer, ranks, run)
        say(f"resuming {run.path} at epoch {trainer.state.epoch + 1} of {recipe.train.epochs} from "
            f"{run.last.name} (epoch {trainer.state.epoch}) with a fresh optimizer state: not bit-identical "
            "to an unbroken run")
    elif resuming:
        resume_everywhere(trainer, ranks, run)
        say(f"resuming {run.path} at epoch {trainer.state.epoch + 1} of {recipe.train.epochs}"
            + (f", step {trainer.state.epoch_step}" if trainer.state.epoch_step else ""))
    else:
        if resume:
            say(f"{run.path} has no checkpoint yet: training it from epoch 1 in place")
        if ranks.main:
            record_pairing(run, trainer)
            save_data_record(run.path, source.dataset)
    if resume and ranks.main:  # every check passed: the run's recipe gets its new train.epochs
        atomic_write_text(run.recipe_file, json.dumps(recipe.to_dict(), indent=2) + "\n")
    try:
        with stop_on_signals(stop):
            trainer.fit(on_progress, on_epoch)
    except RuntimeError as exc:
        if ranks.active and _lost_a_peer(exc):  # the rank that failed has said why; torchrun stops the rest
            raise PeerFailed(f"rank {ranks.rank} lost its connection to a rank that failed") from exc
        raise
    except TrainingDiverged as exc:
        if ranks.main and not resume and not run.state.is_file():  # nothing was saved: leave no half-made run
            remove_data_record(run.path)
            run.remove_unstarted()
            raise TrainingDiverged(f"{exc}; the run directory {run.path} was removed", exc.hint) from None
        raise
    return run.path
