"""The evaluation's numbers as pictures: the FID table and the coherence-by-subset curve (``mmgen eval``).

Both read only the report (``eval.json``'s dict), so a picture always shows the numbers saved beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    return plt


def fid_rows(fid: dict[str, Any]) -> tuple[list[str], list[str], list[list[str]]]:
    """(column headers, row names, cells) of the FID table: per image modality, unconditional FID for each
    latent sampler, then conditional FID by the number of modalities given."""
    samplers = list(fid.get("unconditional", {}))
    per_target = fid.get("conditional per target", {})
    sizes = sorted({k for by_size in per_target.values() for k in by_size}, key=int)
    headers = [f"unconditional ({s})" for s in samplers] + [f"given {k}" for k in sizes]
    names = sorted({m for s in samplers for m in fid["unconditional"][s]} | set(per_target))
    cells = []
    for m in names:
        row = [fid["unconditional"][s].get(m) for s in samplers] + [per_target.get(m, {}).get(k) for k in sizes]
        cells.append(["-" if v is None else f"{v:.2f}" for v in row])
    return headers, names, cells


def save_fid_table(report: dict[str, Any], path: Path) -> Path | None:
    """``fid.png``: the FID table with its feature network and sample count; None when the report has no FID."""
    fid = report.get("fid")
    if not fid:
        return None
    headers, names, cells = fid_rows(fid)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.7 + 1.35 * len(headers), 1.2 + 0.32 * len(names)))
    ax.axis("off")
    table = ax.table(cellText=cells, rowLabels=names, colLabels=headers, loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    features = sorted(set(fid.get("features", {}).values()))
    ax.set_title(f"FID (lower is better) against {fid.get('samples')} {report.get('split', '')} images\n"
                 + "\n".join(features), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def save_coherence_curve(report: dict[str, Any], path: Path) -> Path | None:
    """``coherence.png``: conditional coherence against the number of modalities given, each target's line
    and their mean, with joint coherence per latent sampler as markers; None without conditional coherence."""
    mean = report.get("conditional coherence")
    if not mean:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for target, by_size in sorted(report.get("conditional coherence per target", {}).items()):
        ks = sorted(by_size, key=int)
        ax.plot([int(k) for k in ks], [by_size[k] for k in ks], linewidth=0.8, alpha=0.6, label=target)
    ks = sorted(mean, key=int)
    ax.plot([int(k) for k in ks], [mean[k] for k in ks], "k-o", linewidth=2, label="mean")
    # The prior's joint coherence is "coherence joint"; each fitted sampler's "coherence joint (kind)".
    fitted = report.get("latent samplers", {})
    keys = {"prior": "coherence joint"} | {kind: f"coherence joint ({kind})" for kind in fitted}
    joint = {sampler: report[key] for sampler, key in keys.items() if isinstance(report.get(key), float)}
    for i, (sampler, value) in enumerate(joint.items()):
        ax.axhline(value, linestyle=["--", ":", "-."][i % 3], color="grey", linewidth=1,
                   label=f"joint coherence ({sampler}) {value:.3f}")
    ax.set_xlabel("modalities given")
    ax.set_ylabel("coherence")
    ax.set_xticks([int(k) for k in ks])
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"conditional coherence, {report.get('split', '')} split, epoch {report.get('epoch')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save_metric_pictures(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """The pictures the report's numbers allow, in ``out_dir``."""
    drawn = [save_fid_table(report, out_dir / "fid.png"), save_coherence_curve(report, out_dir / "coherence.png")]
    return [p for p in drawn if p is not None]
