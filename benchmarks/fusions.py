"""MVAE vs MMVAE vs MoPoE on MNIST image + label at one budget: likelihoods, coherence, accuracy, time.

    MMGEN_DATA_ROOT=../shared/data python benchmarks/fusions.py --epochs 3 -K 100 --limit 2000 --out runs/fusions

Trains recipes/mnist_mvae.toml (PoE, the paper's sub-sampled ELBO), recipes/mnist_mmvae.toml
(mixture of experts) and recipes/mnist_mopoe.toml (mixture of products) for the same number of
epochs with the same β schedule (``train.anneal_epochs``), then runs ``mmgen eval`` on each:
IWAE likelihoods with K samples on the first --limit test images (each with its own posterior
as proposal), accuracy on those images, and coherence with 100 samples per class. Prints a
markdown table and writes fusions.json to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from sweep import train_once

RECIPES = {"MVAE (poe)": "recipes/mnist_mvae.toml", "MMVAE (moe)": "recipes/mnist_mmvae.toml",
           "MoPoE (mopoe)": "recipes/mnist_mopoe.toml"}
COLUMNS = ("log p(image)", "log p(image,label)", "log p(image|label)", "accuracy image->label",
           "coherence label->image", "coherence joint")


def run(cmd: list[str]) -> str:
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, env=os.environ).stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--anneal-epochs", type=float, default=3)
    ap.add_argument("-K", type=int, default=100)
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=Path("runs/fusions"))
    args = ap.parse_args()
    rows = {}
    for title, recipe in RECIPES.items():
        out = args.out / Path(recipe).stem
        train_once(recipe, [f"train.anneal_epochs={args.anneal_epochs}", "train.crossmodal_every=0"], out, args.epochs)
        metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
        report = json.loads(run(["mmgen", "eval", str(out), "-K", str(args.K), "--limit", str(args.limit),
                                 "--no-pictures", "--json"]))
        rows[title] = {"recipe": recipe, "epochs": args.epochs,
                       "seconds per epoch": sum(m["train_seconds"] for m in metrics) / len(metrics),
                       **{c: report[c]["value"] if isinstance(report[c], dict) else report[c] for c in COLUMNS}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fusions.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\n{args.epochs} epochs each (β over {args.anneal_epochs:g}), K={args.K} on the first {args.limit} "
          "test images; coherence 100 samples per class\n")
    print("| model | " + " | ".join(COLUMNS) + " | s/epoch |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    for title, r in rows.items():
        cells = ["n/a" if r[c] is None else f"{r[c]:.2f}" if c.startswith("log") else f"{r[c]:.3f}" for c in COLUMNS]
        print(f"| {title} | " + " | ".join(cells) + f" | {r['seconds per epoch']:.0f} |")


if __name__ == "__main__":
    main()
