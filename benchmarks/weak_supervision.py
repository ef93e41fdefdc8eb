"""Weak supervision: image->label accuracy and label->image coherence against the paired fraction.

    MMGEN_DATA_ROOT=../shared/data python benchmarks/weak_supervision.py --epochs 3 --out runs/weak

Trains one recipe (default recipes/mnist_mvae_crossmodal.toml) once per ``data.paired_fraction``
at the same budget (epochs, seed, schedule), then scores each run on the whole test split with
``mmgen eval`` (its likelihood stage runs with K=1 only to keep this sweep cheap; the table uses
accuracy and coherence). Prints a markdown table and writes weak_supervision.{json,png} to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from sweep import train_once


def run(cmd: list[str]) -> str:
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, env=os.environ).stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="recipes/mnist_mvae_crossmodal.toml")
    ap.add_argument("--fractions", default="0.001,0.01,0.1,1.0")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("runs/weak"))
    args = ap.parse_args()
    rows = []
    for fraction in [float(f) for f in args.fractions.split(",")]:
        out = args.out / f"paired-{fraction:g}"
        started = time.perf_counter()
        train_once(args.recipe, [f"data.paired_fraction={fraction}", "train.crossmodal_every=0"], out, args.epochs)
        seconds = time.perf_counter() - started
        result = json.loads(run(["mmgen", "eval", str(out), "-K", "1", "--no-pictures", "--json"]))
        pairing = json.loads((out / "recipe.json").read_text())["data"]
        rows.append({"paired_fraction": fraction, "pairing_seed": pairing.get("pairing_seed", 0),
                     "epochs": args.epochs, "train_seconds": seconds,
                     "accuracy image->label": result["accuracy image->label"],
                     "coherence label->image": result["coherence label->image"],
                     "coherence joint": result["coherence joint"]})
    print(f"\n{args.recipe}, {args.epochs} epochs each, test split (10,000 images; coherence: 100 per class)\n")
    print("| paired fraction | paired examples | accuracy image→label | coherence label→image | joint coherence |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['paired_fraction']:g} | {round(r['paired_fraction'] * 50000)} | "
              f"{r['accuracy image->label']:.3f} | {r['coherence label->image']:.3f} | {r['coherence joint']:.3f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "weak_supervision.json").write_text(json.dumps(rows, indent=2) + "\n")
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    xs = [r["paired_fraction"] for r in rows]
    ax.plot(xs, [r["accuracy image->label"] for r in rows], "o-", label="accuracy image→label")
    ax.plot(xs, [r["coherence label->image"] for r in rows], "s-", label="coherence label→image")
    ax.set_xscale("log")
    ax.set_xlabel("paired fraction of the training set")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{Path(args.recipe).stem}, {args.epochs} epochs")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "weak_supervision.png", dpi=120)
    print(f"\nwrote {args.out / 'weak_supervision.png'}", file=sys.stderr)


if __name__ == "__main__":
    main()
