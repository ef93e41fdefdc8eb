"""Plot image->label accuracy and label->image coherence against epochs for several runs.

    python benchmarks/crossmodal_curves.py runs/a runs/b --out docs/images/crossmodal-gap.png

Reads the ``val/accuracy ...`` and ``val/coherence ...`` lines that ``train.crossmodal_every``
writes into each run's metrics.jsonl, and prints them as a table too.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=Path("crossmodal-gap.png"))
    args = ap.parse_args()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for run in args.runs:
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
        recipe = json.loads((run / "recipe.json").read_text())
        label = f"{run.name} (reconstruct={recipe['model'].get('reconstruct', 'subset')}, " \
                f"β over {recipe['train']['anneal_epochs']:g} ep)"
        for ax, prefix in zip(axes, ("val/accuracy", "val/coherence")):
            key = next((k for k in rows[-1] if k.startswith(prefix)), None)
            if key is None:
                continue
            epochs = [r["epoch"] for r in rows if key in r]
            values = [r[key] for r in rows if key in r]
            ax.plot(epochs, values, marker="o", markersize=3, label=label)
            ax.set_title(key[4:])
            print(f"{run.name:24s} {key[4:]:24s} " + " ".join(f"{e}:{v:.3f}" for e, v in zip(epochs, values)))
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
