"""docs/leaderboard.md and its plot, from the stored results: one table per data set with the mean ± spread
over seeds, ranked by one key metric, the published numbers beside them in their own columns, then each
seed's numbers with their standard errors and K."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cells import SCORED, Cell
from .protocol import PUBLISHED, Protocol, Published

Value = tuple[float, float | None, Any]  # value, standard error, K


@dataclass(frozen=True)
class Metric:
    column: str
    get: Callable[[dict[str, Any]], Value | None]
    digits: int = 3


def estimate(key: str) -> Callable[[dict[str, Any]], Value | None]:
    """An IWAE estimate of eval.json, with its standard error and K (and K rest, for a conditional)."""
    def get(report: dict[str, Any]) -> Value | None:
        entry = report.get(key)
        if not isinstance(entry, dict) or entry.get("value") is None:
            return None
        k = entry.get("K")
        return entry["value"], entry.get("stderr"), f"{k}-{entry['K rest']}" if "K rest" in entry else k
    return get


def number(*path: str, mean_of: bool = False) -> Callable[[dict[str, Any]], Value | None]:
    """A number of eval.json at ``path`` (or the mean of the numbers in the dict there)."""
    def get(report: dict[str, Any]) -> Value | None:
        node: Any = report
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if mean_of and isinstance(node, dict):
            values = [v for v in node.values() if isinstance(v, int | float)]
            node = statistics.fmean(values) if values else None
        return None if not isinstance(node, int | float) else (float(node), None, None)
    return get


METRICS = {
    "mnist": [Metric("log p(x)", estimate("log p(image)"), 2), Metric("log p(x,y)", estimate("log p(image,label)"), 2),
              Metric("log p(x|y)", estimate("log p(image|label)"), 2),
              Metric("accuracy x→y", number("accuracy image->label")),
              Metric("coherence y→x", number("coherence label->image")),
              Metric("diversity y→x", number("diversity label->image")),
              Metric("joint coherence", number("coherence joint")),
              Metric("FID (prior)", number("fid", "unconditional", "prior", "image"), 2),
              Metric("latent probe", number("latent probe", "1"))],
    "polymnist": [*(Metric(f"coherence given {k}", number("conditional coherence", str(k))) for k in range(1, 5)),
                  Metric("mean coherence", number("conditional coherence", mean_of=True)),
                  Metric("joint coherence", number("coherence joint")),
                  Metric("joint (gmm)", number("coherence joint (gmm)")),
                  Metric("FID (prior, mean of 5)", number("fid", "unconditional", "prior", mean_of=True), 2),
                  Metric("FID given 4", number("fid", "conditional", "4"), 2),
                  Metric("latent probe given 1", number("latent probe", "1"))],
}
KEY_METRIC = {"mnist": "log p(x)", "polymnist": "mean coherence"}  # what ranks the families (higher is better)
PUBLISHED_COLUMNS = {"mnist": ["log p(x)", "log p(x,y)", "log p(x|y)"], "polymnist": ["1", "2", "3", "4", "mean"]}


@dataclass
class Row:
    """One family on one data set: its cells and their outcomes."""

    family: str
    recipe: str
    seeds: list[tuple[Cell, dict[str, Any], dict[str, Any] | None]] = field(default_factory=list)  # cell, result, eval

    def values(self, metric: Metric) -> list[Value]:
        return [v for _, result, report in self.seeds if result["status"] == SCORED and report
                and (v := metric.get(report)) is not None]


def md_row(cells: list[str]) -> str:
    """A markdown table row; a "|" inside a cell is escaped."""
    return "| " + " | ".join(c.replace("\\|", "|").replace("|", "\\|") for c in cells) + " |"


def mean_spread(values: list[Value], digits: int) -> str:
    """``mean ± half the range`` over the seeds (one seed: its value)."""
    if not values:
        return "—"
    xs = [v[0] for v in values]
    mean = statistics.fmean(xs)
    if len(xs) == 1:
        return f"{mean:.{digits}f} (1 seed)".replace("-", "−")
    return f"{mean:.{digits}f} ± {(max(xs) - min(xs)) / 2:.{digits}f}".replace("-", "−")


def training_note(row: Row) -> str:
    """Steps per seed and what stopped each; the outcome of each seed that has no numbers."""
    parts = []
    for cell, result, _ in row.seeds:
        if result["status"] == SCORED:
            by = "" if result["stopped_by"] == "steps" else ", time cap"
            parts.append(f"seed {cell.seed}: {result['steps']} steps{by}")
        else:
            parts.append(f"seed {cell.seed}: {result['status']}: {result.get('error', '')}".rstrip(": "))
    outcomes = {(r["status"], r.get("error", "")) for _, r, _ in row.seeds}
    if len(outcomes) == 1 and (only := next(iter(outcomes)))[0] != SCORED:  # the same outcome for every seed: once
        parts = [f"**{only[0]}**" + (f": {only[1]}" if only[1] else "")]
    return "; ".join(parts)


def published_for(family: str, dataset: str) -> list[Published]:
    return [p for p in PUBLISHED if p.family == family and p.dataset == dataset]


def published_note(entries: list[Published], dataset: str, sources: list[str]) -> str:
    out = []
    for p in entries:
        if p.source not in sources:
            sources.append(p.source)
        every = all(c in p.values for c in PUBLISHED_COLUMNS[dataset])
        values = " / ".join(("" if every else f"{c}: ") + f"{p.values[c]:.2f}".replace("-", "−")
                            for c in PUBLISHED_COLUMNS[dataset] if c in p.values)
        out.append(f"{values} [{sources.index(p.source) + 1}]")
    return "; ".join(out)


def ranked(rows: list[Row], dataset: str) -> list[tuple[str, Row]]:
    """Families with the key metric, best first (equal means as shown share a rank), then the others by name."""
    key = next(m for m in METRICS[dataset] if m.column == KEY_METRIC[dataset])
    means = {r.family: round(statistics.fmean(v[0] for v in r.values(key)), key.digits) for r in rows if r.values(key)}
    scored = sorted((r for r in rows if r.family in means), key=lambda r: (-means[r.family], r.family))
    rest = sorted((r for r in rows if r.family not in means), key=lambda r: r.family)
    ranks = [str(1 + sum(m > means[r.family] for m in means.values())) for r in scored]
    return list(zip(ranks, scored)) + [("—", r) for r in rest]


def table(protocol: Protocol, rows: list[Row]) -> list[str]:
    d = protocol.dataset
    metrics = METRICS[d]
    caveat = next((p.caveat for p in PUBLISHED if p.dataset == d), "")
    published_head = f"published {' / '.join(PUBLISHED_COLUMNS[d])} ({caveat})"
    head = ["rank", "family", "recipe", *(m.column for m in metrics), "training", published_head]
    lines = [md_row(head), "|" + "---|" * len(head)]
    sources: list[str] = []
    for rank, row in ranked(rows, d):
        cells = [rank, f"`{row.family}`", row.recipe, *(mean_spread(row.values(m), m.digits) for m in metrics),
                 training_note(row), published_note(published_for(row.family, d), d, sources)]
        lines.append(md_row(cells))
    lines.append("")
    lines.append(f"Ranked by {KEY_METRIC[d]} (mean over the seeds; ± is half the range between them). "
                 "Published numbers are not ranked: they come from other data or other budgets.")
    judges = [v for row in rows for _, result, report in row.seeds if result["status"] == SCORED and report
              for k, v in report.items() if k.startswith("classifier accuracy")]
    if judges:
        span = f"{min(judges):.3f}" + (f"–{max(judges):.3f}" if max(judges) > min(judges) else "")
        lines.append("The judges that read coherence (CNNs mmgen eval trains once on the run's training split) read "
                     f"the real test images correctly {span} of the time.")
    if sources:
        lines += ["", *(f"[{i}] {s}" + ("  " if i < len(sources) else "") for i, s in enumerate(sources, 1))]
    return lines


def per_seed(protocol: Protocol, rows: list[Row]) -> list[str]:
    """Each seed's numbers: likelihoods with their standard error and K (K-K rest for a conditional)."""
    metrics = METRICS[protocol.dataset]
    head = ["family", "seed", "outcome", "steps (epochs)", "weights of epoch", "train min", "eval min",
            *(m.column for m in metrics)]
    lines = [md_row(head), "|" + "---|" * len(head)]
    for row in rows:
        for cell, result, report in row.seeds:
            values = []
            for m in metrics:
                v = m.get(report) if report and result["status"] == SCORED else None
                text = "—" if v is None else f"{v[0]:.{m.digits}f}".replace("-", "−")
                if v is not None and v[1] is not None:
                    text += f" ± {v[1]:.2f} (K {v[2]})"
                values.append(text)
            outcome = result["status"] + ("" if result.get("stopped_by", "steps") == "steps" else " (time cap)")
            lines.append(md_row([
                f"`{row.family}`", str(cell.seed), outcome,
                f"{result.get('steps', '—')} ({result.get('epochs', '—')})", str(result.get("weights_epoch", "—")),
                f"{result['seconds'] / 60:.1f}" if "seconds" in result else "—",
                f"{result['eval_seconds'] / 60:.1f}" if "eval_seconds" in result else "—", *values]))
    return lines


def plot(boards: list[tuple[Protocol, list[Row]]], path: Path) -> None:
    """The key metric per family per data set, each seed a marker and the mean a bar; families without
    numbers are named on the axis with their outcome."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(boards), figsize=(6 * len(boards), 4.2), squeeze=False)
    for ax, (protocol, rows) in zip(axes[0], boards):
        d = protocol.dataset
        key = next(m for m in METRICS[d] if m.column == KEY_METRIC[d])
        order = ranked(rows, d)
        labels = []
        for x, (_, row) in enumerate(order):
            values = [v[0] for v in row.values(key)]
            scored = [c.seed for c, r, e in row.seeds if r["status"] == SCORED and e and key.get(e)]
            if values:
                ax.hlines(statistics.fmean(values), x - 0.3, x + 0.3, color="black", lw=2, label="mean of the seeds")
                for seed, value in zip(scored, values):
                    ax.scatter([x], [value], marker="os^D"[seed % 4], color=f"C{seed % 10}", zorder=3,
                               label=f"seed {seed}")
                labels.append(row.family)
            else:
                status = row.seeds[0][1]["status"] if row.seeds else "no run"
                labels.append(f"{row.family}\n({status})")
        ax.set_xticks(range(len(order)), labels, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{protocol.title}\n{protocol.steps} steps or {protocol.minutes:g} min", fontsize=9)
        ax.set_ylabel(key.column + " (higher is better)")
        handles, names = ax.get_legend_handles_labels()
        unique = dict(zip(names, handles))
        if unique:
            ax.legend(unique.values(), unique.keys(), fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(boards: list[tuple[Protocol, list[Row]]], header: list[str], png: str) -> str:
    lines = ["# Leaderboard", "", "Written by `python -m benchmarks.leaderboard` from its stored results; do not edit "
             "by hand. Every registered model family is trained under one protocol per data set and scored by one "
             "`mmgen eval` configuration.", "", *header, "", f"![the key metric per family and seed]({png})", ""]
    for protocol, rows in boards:
        lines += [f"## {protocol.title}", "", *table(protocol, rows), "", "Each seed:", "", *per_seed(protocol, rows),
                  ""]
    return "\n".join(lines)
