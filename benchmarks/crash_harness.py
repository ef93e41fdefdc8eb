"""Kill training with SIGKILL at random moments and inside every epoch's commit, resume every run to
completion, and count what survived.

    python benchmarks/crash_harness.py --runs 20

Each run is a real ``mmgen train`` process on tiny synthetic data (``mmgen.testing``), killed with
SIGKILL: the odd-numbered runs at a random moment of the run, the even-numbered ones the moment an
atomic write's temporary file appears in the run directory (that is, during a checkpoint write).
Then, for every epoch (the last included), two runs that kill themselves with SIGKILL at a point
of that epoch's commit too short to hit from outside: right after the resume file is renamed into
place (before ``last``, ``best`` and the metrics row), and after the weights, before the metrics
row (``--no-sweep`` leaves these out). Each run is then restarted as a user would until it
finishes: ``mmgen train RUN --resume`` when the run has its recipe.json, else the very command
that was killed. Printed: how many runs resumed to completion, how many checkpoints failed to load
afterwards, whether ``metrics.jsonl`` holds every epoch exactly once, whether no temporary file
was left, and whether the final ``last`` and ``best`` weights equal those of an uninterrupted run
bit for bit.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mmgen import CheckpointError, load_run
from mmgen.storage import load_tensors
from mmgen.testing import write_tiny_mnist

RECIPE = """\
name = "crash"
[model]
latent_dim = 16
[modalities.image]
kind = "image"
encoder_hidden = [256]
decoder_hidden = [256]
[modalities.label]
kind = "label"
weight = 50.0
encoder_hidden = [64]
decoder_hidden = [64]
[data]
kind = "mnist"
download = false
val_size = 200
[train]
epochs = {epochs}
batch_size = 50
anneal_epochs = 2
log_every = 5
device = "cpu"
"""


# ``python -c KILL_IN_COMMIT WHERE EPOCH ARGS...``: ``mmgen ARGS`` that sends itself SIGKILL at WHERE in
# epoch EPOCH's commit. A real SIGKILL, sent from inside because the window is microseconds wide.
KILL_IN_COMMIT = """
import os, signal, sys
from pathlib import Path
where, epoch = sys.argv[1], int(sys.argv[2])
sys.argv = ["mmgen", *sys.argv[3:]]
if where == "after the resume file":
    real_replace, commits = os.replace, [0]
    def replace(src, dst, *args, **kwargs):
        real_replace(src, dst, *args, **kwargs)
        if Path(dst).name == "trainer_state.safetensors":
            commits[0] += 1
            if commits[0] == epoch:
                os.kill(os.getpid(), signal.SIGKILL)
    os.replace = replace
else:
    from mmgen.run import RunDir
    real_append = RunDir.append_metrics
    def append(self, row):
        if row["epoch"] == epoch:
            os.kill(os.getpid(), signal.SIGKILL)
        real_append(self, row)
    RunDir.append_metrics = append
from mmgen.cli import main
main()
"""
COMMIT_POINTS = ("after the resume file", "before the metrics row")
CHECKED = ("checkpoints_fail", "metrics_once", "no_tmp", "bit_identical")


def train(args: list[str], env: dict, kill_in_commit: tuple[str, int] | None = None) -> subprocess.Popen:
    start = [sys.executable, "-m", "mmgen"]
    if kill_in_commit:
        start = [sys.executable, "-c", KILL_IN_COMMIT, kill_in_commit[0], str(kill_in_commit[1])]
    return subprocess.Popen([*start, "train", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def left_behind(run: Path) -> str:
    """What a kill left: the resume file's epoch, the metrics rows and the temporary files."""
    state = "no resume file yet"
    if (run / "trainer_state.safetensors").is_file():
        try:
            meta = load_tensors(run / "trainer_state.safetensors")[1]
            state = f"resume file at epoch {meta.get('epoch')}"
        except CheckpointError:
            state = "resume file unreadable"
    metrics = run / "metrics.jsonl"
    rows = len([line for line in metrics.read_text().splitlines() if line.strip()]) if metrics.is_file() else 0
    stray = len(list(run.glob(".*.tmp"))) if run.is_dir() else 0
    return f"{state}, {rows} metrics row(s), {stray} temporary file(s) left"


def kill_at_random(proc: subprocess.Popen, run: Path, rng: random.Random, window: tuple[float, float],
                   during_write: bool) -> str:
    """SIGKILL ``proc`` at a random moment of its training (``window``: the reference run's, seconds after
    its start), or as soon as a temporary file shows in ``run``. The random moment counts from this run's
    own recipe.json: a warm start is faster than the reference's cold one, and a moment counted from the
    process's start fell after the end of every run on a quiet machine."""
    if during_write:
        deadline = time.monotonic() + window[1] * 1.5
    else:
        while proc.poll() is None and not (run / "recipe.json").exists():
            time.sleep(0.005)
        deadline = time.monotonic() + rng.uniform(0.0, window[1] - window[0])
    seen: set[str] = set()
    # Which write: 3 at the start (recipe.json, versions.json, metrics.jsonl), then 3 an epoch (the resume file,
    # last, best).
    skip = rng.randrange(12)
    while proc.poll() is None and time.monotonic() < deadline:
        if during_write and run.is_dir():
            seen.update(p.name for p in run.glob(".*.tmp"))
            if len(seen) > skip:
                break
        time.sleep(0.0005 if during_write else 0.01)
    if proc.poll() is not None:
        return "finished before the kill"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    what = f"during write {len(seen)}" if during_write else "at random"
    return f"killed {what}: {left_behind(run)}"


def kill_in_commit(proc: subprocess.Popen, run: Path, where: str, epoch: int) -> str:
    """Wait for a ``KILL_IN_COMMIT`` process to kill itself at ``where`` in epoch ``epoch``'s commit."""
    code = proc.wait()
    if code != -signal.SIGKILL:
        return f"NOT killed {where} of epoch {epoch} (exit {code})"
    return f"killed {where} of epoch {epoch}: {left_behind(run)}"


def check(run: Path, reference: Path, epochs: int) -> dict:
    out = {"checkpoints_fail": 0}
    for which in ("best", "last"):
        try:
            load_run(run, device="cpu", which=which)
        except CheckpointError:
            out["checkpoints_fail"] += 1
    try:
        load_tensors(run / "trainer_state.safetensors")
    except CheckpointError:
        out["checkpoints_fail"] += 1
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    out["metrics_once"] = [r["epoch"] for r in lines] == list(range(1, epochs + 1))
    out["no_tmp"] = not list(run.glob(".*.tmp"))
    out["bit_identical"] = all(same_tensors(run / name, reference / name)
                               for name in ("last.safetensors", "best.safetensors"))
    return out


def same_tensors(a: Path, b: Path) -> bool:
    x, y = load_tensors(a)[0], load_tensors(b)[0]
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def finish(run: Path, first: list[str], env: dict) -> tuple[int | None, int, list[str]]:
    """Restart as a user would, up to 3 times: -> (exit code, attempts, the last error line)."""
    attempts, code, error = 0, None, []
    while code != 0 and attempts < 3:
        attempts += 1
        resumed = train([str(run), "--resume"] if (run / "recipe.json").is_file() else first, env)
        code = resumed.wait()
        error = resumed.stderr.read().strip().splitlines()[-1:] if code else []
    return code, attempts, error


def summary(totals: dict, n: int) -> str:
    return (f"{totals['resumed']}/{n} resumed to completion; {totals['checkpoints_fail']} checkpoint(s) failed to "
            f"load; metrics.jsonl held every epoch exactly once in {totals['metrics_once']}/{n}; no temporary file "
            f"left in {totals['no_tmp']}/{n}; final weights (last and best) bit-identical to the uninterrupted run "
            f"in {totals['bit_identical']}/{n}")


def trial(label: str, how: str, run: Path, first: list[str], env: dict, reference: Path, epochs: int,
          totals: dict) -> None:
    """Finish one killed run, check it against the reference, add it to ``totals`` and print it."""
    code, attempts, error = finish(run, first, env)
    ok = code == 0
    result = check(run, reference, epochs) if ok else {}
    totals["resumed"] += ok
    for key in CHECKED:
        totals[key] += int(result.get(key, 0))
    print(f"{label}: {how}; resumed {'ok' if ok else 'FAILED ' + str(error)}"
          + (f" in {attempts} attempt(s); {result}" if ok else ""), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-sweep", action="store_true", help="leave out the kills inside every epoch's commit")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = write_tiny_mnist(Path(tmp) / "data", n_train=1200, n_test=100)
        recipe = Path(tmp) / "crash.toml"
        recipe.write_text(RECIPE.format(epochs=args.epochs))
        env = {**os.environ, "MMGEN_DATA_ROOT": str(root), "OMP_NUM_THREADS": "1", "MMGEN_CACHE": str(Path(tmp) / "c")}
        started = time.monotonic()
        reference = Path(tmp) / "reference"
        proc = train([str(recipe), "--out", str(reference)], env)
        while proc.poll() is None and not (reference / "recipe.json").exists():
            time.sleep(0.01)
        made = time.monotonic() - started
        metrics = reference / "metrics.jsonl"
        while proc.poll() is None and (not metrics.is_file() or len(metrics.read_text().splitlines()) < args.epochs):
            time.sleep(0.01)
        window = (made, time.monotonic() - started)  # from the run directory to the last epoch's commit
        assert proc.wait() == 0, proc.stderr.read()
        print(f"reference run: {args.epochs} epochs; the run directory made {window[0]:.1f} s after the start, the "
              f"last epoch committed after {window[1]:.1f} s; random kills fall in between")
        totals = dict.fromkeys(("resumed", *CHECKED), 0)
        for i in range(args.runs):
            run = Path(tmp) / f"run{i}"
            first = [str(recipe), "--out", str(run)]
            how = kill_at_random(train(first, env), run, rng, window, i % 2 == 0)
            trial(f"run {i:2d}", how, run, first, env, reference, args.epochs, totals)
        print(f"\n{summary(totals, args.runs)}")
        if args.no_sweep:
            return
        print(f"\nkilled inside the commit of every epoch, at {' and '.join(COMMIT_POINTS)}:")
        totals = dict.fromkeys(("resumed", *CHECKED), 0)
        for where in COMMIT_POINTS:
            for epoch in range(1, args.epochs + 1):
                run = Path(tmp) / f"{where.split()[0]}-{epoch}"
                first = [str(recipe), "--out", str(run)]
                how = kill_in_commit(train(first, env, (where, epoch)), run, where, epoch)
                trial(f"epoch {epoch}", how, run, first, env, reference, args.epochs, totals)
        print(f"\n{summary(totals, len(COMMIT_POINTS) * args.epochs)}")


if __name__ == "__main__":
    main()
