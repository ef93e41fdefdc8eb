"""Short runs that decide the flagship recipe's objective (issue 14): likelihoods, accuracy, coherence
and diversity of a few objectives on the paper's networks, at one budget.

    MMGEN_DATA_ROOT=../shared/data python benchmarks/flagship_probe.py --epochs 6 --out runs/flagship-probe

Each variant trains recipes/mnist_mvae.toml with β reaching 1 after ``--anneal`` epochs (the
paper's cross-modal gap opens at β = 1, so a short run must get there), then ``mmgen eval`` scores
it on the first ``--limit`` test images at K = ``-K``. Prints a markdown table. Interrupted runs
resume (benchmarks/sweep.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from sweep import train_once

VARIANTS: dict[str, list[str]] = {
    "paper (each term its own modalities)": [],
    "reconstruct all (every term both)": ["model.reconstruct=all"],
    "cross from image (q(z|image) also predicts the label)": ['model.cross_from=["image"]'],
    "cross from image, IWAE K=4": ['model.cross_from=["image"]', "model.objective=iwae", "model.samples=4"],
    "cross from image, IWAE K=2": ['model.cross_from=["image"]', "model.objective=iwae", "model.samples=2"],
    "cross from image, IWAE K=2 for the joint and image terms": [
        'model.cross_from=["image"]', "model.objective=iwae", "model.samples=2",
        'model.objective_terms=["joint", "image"]'],
    "cross from image, IWAE K=2 for the image term": [
        'model.cross_from=["image"]', "model.objective=iwae", "model.samples=2", 'model.objective_terms=["image"]'],
}
COLUMNS = ["log p(image)", "log p(image,label)", "log p(image|label)", "accuracy image->label",
           "coherence label->image", "diversity label->image"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--anneal", type=float, default=2)
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("-K", type=int, default=100)
    ap.add_argument("--out", type=Path, default=Path("runs/flagship-probe"))
    ap.add_argument("--only", default="", help="comma-separated variant numbers (1-based) to run")
    args = ap.parse_args()
    chosen = [v for i, v in enumerate(VARIANTS, 1) if not args.only or str(i) in args.only.split(",")]
    rows = []
    for i, name in enumerate(chosen, 1):
        out = args.out / f"variant{list(VARIANTS).index(name) + 1}"
        train_once("recipes/mnist_mvae.toml", [*VARIANTS[name], f"train.anneal_epochs={args.anneal}"], out,
                   args.epochs, quiet=True)
        report = out / "eval.json"
        if not report.is_file():
            subprocess.run(["mmgen", "eval", str(out), "-K", str(args.K), "--limit", str(args.limit),
                            "--no-pictures"], check=True, stdout=subprocess.DEVNULL)
        data = json.loads(report.read_text())
        rows.append((name, data))
        print(f"# {i}/{len(chosen)} done: {name}", file=sys.stderr, flush=True)
    print(f"| variant ({args.epochs} epochs, β = 1 after {args.anneal}; test[:{args.limit}], K = {args.K}) | "
          + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for name, data in rows:
        cells = []
        for col in COLUMNS:
            value = data.get(col)
            value = value["value"] if isinstance(value, dict) else value
            cells.append("n/a" if value is None else f"{value:.2f}" if col.startswith("log") else f"{value:.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
