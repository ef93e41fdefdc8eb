"""What drives the MVAE's cross-modal gap: one override at a time on the paper's recipe.

    MMGEN_DATA_ROOT=../shared/data python benchmarks/gap_ablations.py --epochs 3 --seeds 0,1 --out runs/gap

Trains recipes/mnist_mvae.toml (the paper's objective) once per variant and seed at the same budget,
with ``train.crossmodal_every=1`` so every epoch logs image->label accuracy and label->image
coherence on 1000 fixed validation examples. Prints a markdown table (mean and range over seeds at
each epoch) and writes gap_ablations.{json,png} to --out. A run that already has its epochs is
not retrained and one stopped part-way is resumed, so an interrupted sweep picks up where it stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from sweep import train_once

# name -> recipe overrides; each changes one thing the issue asks about.
VARIANTS: dict[str, list[str]] = {
    "paper": [],
    "λ_label = 1": ["modalities.label.weight=1"],
    "no prior expert": ["model.fusion.prior_expert=false"],
    "latent 16": ["model.latent_dim=16"],
    "joint term only": ["model.terms=joint"],
    "β over 3 epochs": ["train.anneal_epochs=3"],
    "reconstruct all": ["model.reconstruct=all"],
}
ACCURACY, COHERENCE = "val/accuracy image->label", "val/coherence label->image"


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.replace("λ", "lambda").replace("β", "beta")).strip("-")


def curves(run: Path) -> dict[str, list[float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {key: [r[key] for r in rows if key in r] for key in (ACCURACY, COHERENCE)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="recipes/mnist_mvae.toml")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of the names above")
    ap.add_argument("--out", type=Path, default=Path("runs/gap"))
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    results = {}
    for name in args.variants.split(","):
        per_seed = []
        for seed in seeds:
            out = args.out / f"{slug(name)}-seed{seed}"
            train_once(args.recipe, [*VARIANTS[name], f"seed={seed}", "train.crossmodal_every=1"], out, args.epochs,
                       quiet=True)
            per_seed.append(curves(out))
        results[name] = {"overrides": VARIANTS[name], "seeds": seeds, "runs": per_seed}

    print(f"\n{args.recipe}, {args.epochs} epochs, seeds {args.seeds}; validation subset of 1000 examples;"
          " mean (min–max over seeds) per epoch\n")
    print("| variant | overrides | accuracy image→label | coherence label→image |")
    print("|---|---|---|---|")
    for name, r in results.items():
        cells = []
        for key in (ACCURACY, COHERENCE):
            per_epoch = zip(*(run[key] for run in r["runs"]))
            cells.append(" / ".join(f"{sum(v) / len(v):.2f} ({min(v):.2f}–{max(v):.2f})" for v in per_epoch))
        print(f"| {name} | `{' '.join(r['overrides']) or '—'}` | {cells[0]} | {cells[1]} |")

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gap_ablations.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    for i, (name, r) in enumerate(results.items()):
        for ax, key in zip(axes, (ACCURACY, COHERENCE)):
            for j, run in enumerate(r["runs"]):
                ax.plot(range(1, len(run[key]) + 1), run[key], marker="o", markersize=3, color=f"C{i}",
                        alpha=0.8, label=name if j == 0 else None)
            ax.set_title(key[4:])
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.set_xticks(range(1, args.epochs + 1))
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))  # outside: curves fill the axes
    fig.tight_layout()
    fig.savefig(args.out / "gap_ablations.png", dpi=110)
    print(f"\nwrote {args.out / 'gap_ablations.png'}", file=sys.stderr)


if __name__ == "__main__":
    main()
