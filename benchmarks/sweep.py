"""Shared by the sweep benchmarks: train a run to N epochs once, resuming one that was interrupted."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def epochs_done(out: Path) -> int:
    metrics = out / "metrics.jsonl"
    return sum(1 for line in metrics.read_text().splitlines() if line.strip()) if metrics.is_file() else 0


def train_once(recipe: str, overrides: list[str], out: Path, epochs: int, quiet: bool = False) -> None:
    """``mmgen train RECIPE OVERRIDES train.epochs=EPOCHS --out OUT``, unless OUT already has them.

    A run stopped part-way (its last.safetensors is written every epoch) is resumed, not taken as
    done; a folder killed before its first epoch holds no weights and is started again.
    """
    done = epochs_done(out)
    if done >= epochs:
        return
    if (out / "last.safetensors").is_file():
        cmd = ["mmgen", "train", str(out), "--resume", f"train.epochs={epochs}"]
    else:
        if out.exists():
            print(f"# {out} has no weights (stopped before its first epoch): starting it again", file=sys.stderr)
            shutil.rmtree(out)
        cmd = ["mmgen", "train", recipe, *overrides, f"train.epochs={epochs}", "--out", str(out)]
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL if quiet else None, env=os.environ)
