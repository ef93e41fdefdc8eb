"""Kill training with SIGKILL at random moments, resume every run to completion, and count what survived.

    python benchmarks/crash_harness.py --runs 20

Each run is a real ``mmgen train`` process on tiny synthetic data (``mmgen.testing``), killed with
SIGKILL: the odd-numbered runs at a random moment of the run, the even-numbered ones the moment an
atomic write's temporary file appears in the run directory (that is, during a checkpoint write).
Each is then restarted as a user would until it finishes: ``mmgen train RUN --resume`` when the
run has its recipe.json, else the very command that was killed. Printed: how many runs
resumed to completion, how many checkpoints failed to load afterwards, whether ``metrics.jsonl``
holds every epoch exactly once, whether no temporary file was left, and whether the final weights
equal those of an uninterrupted run bit for bit.
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


def train(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mmgen", "train", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def kill_at_random(proc: subprocess.Popen, run: Path, rng: random.Random, window: tuple[float, float],
                   during_write: bool) -> str:
    """SIGKILL ``proc`` at a random moment of ``window`` (seconds after its start: the reference run's
    training), or as soon as a temporary file shows in ``run``."""
    deadline = time.monotonic() + (window[1] * 1.5 if during_write else rng.uniform(*window))
    seen: set[str] = set()
    skip = rng.randrange(12)  # which write: 2 at the start, then 3 (last, best, the resume file) per epoch
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
    state = "no resume file yet"
    if (run / "trainer_state.safetensors").is_file():
        try:
            meta = load_tensors(run / "trainer_state.safetensors")[1]
            state = f"resume file at epoch {meta.get('epoch')}"
        except CheckpointError:
            state = "resume file unreadable"
    stray = len(list(run.glob(".*.tmp"))) if run.is_dir() else 0
    what = f"during write {len(seen)}" if during_write else "at random"
    return f"killed {what}: {state}, {stray} temporary file(s) left"


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
    a, b = load_tensors(run / "last.safetensors")[0], load_tensors(reference / "last.safetensors")[0]
    out["bit_identical"] = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
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
        totals = {"resumed": 0, "checkpoints_fail": 0, "metrics_once": 0, "no_tmp": 0, "bit_identical": 0}
        for i in range(args.runs):
            run = Path(tmp) / f"run{i}"
            first = [str(recipe), "--out", str(run)]
            how = kill_at_random(train(first, env), run, rng, window, i % 2 == 0)
            attempts, code = 0, None
            while code != 0 and attempts < 3:
                attempts += 1
                resumed = train([str(run), "--resume"] if (run / "recipe.json").is_file() else first, env)
                code = resumed.wait()
                error = resumed.stderr.read().strip().splitlines()[-1:] if code else []
            ok = code == 0
            result = check(run, reference, args.epochs) if ok else {}
            totals["resumed"] += ok
            for key in ("checkpoints_fail", "metrics_once", "no_tmp", "bit_identical"):
                totals[key] += int(result.get(key, 0))
            print(f"run {i:2d}: {how}; resumed {'ok' if ok else 'FAILED ' + str(error)}"
                  + (f" in {attempts} attempt(s); {result}" if ok else ""))
        n = args.runs
        print(f"\n{totals['resumed']}/{n} resumed to completion; {totals['checkpoints_fail']} checkpoint(s) failed to "
              f"load; metrics.jsonl held every epoch exactly once in {totals['metrics_once']}/{n}; no temporary file "
              f"left in {totals['no_tmp']}/{n}; final weights bit-identical to the uninterrupted run in "
              f"{totals['bit_identical']}/{n}")


if __name__ == "__main__":
    main()
