"""The model card: an export's README.md in the Hugging Face Hub's format. YAML front matter (library,
tags, data sets, metrics) that the Hub reads, then what was trained and how, the numbers of eval.json with
their K and standard errors, and the commands that reproduce them.

Everything comes from the export itself (its loaded run, recipe.json, export.json, versions.json,
eval.json), so the card says nothing the folder does not hold. The front matter is written here rather
than with huggingface_hub's ModelCardData: exporting does not need the `hub` extra, and JSON's strings
and lists are YAML's too.
"""

from __future__ import annotations

import json
from typing import Any

from mmgen.plugin.discovery import NOT_INSTALLED
from mmgen.run.exported import CARD, EVAL, MANIFEST, SAMPLES, Manifest
from mmgen.run.loaded import Run
from mmgen.share.reproduce import eval_command, train_commands

SE_NOTE = "± is the standard error of the mean over the examples"


def front_matter(fields: dict[str, Any]) -> str:
    """``---``-fenced YAML: a key per line, each list item on its own line, every value a JSON scalar."""
    lines = ["---"]
    for key, value in fields.items():
        if value in ([], None):
            continue  # an empty list would read as null
        if isinstance(value, list):
            lines += [f"{key}:", *(f"- {json.dumps(item)}" for item in value)]
        else:
            lines.append(f"{key}: {json.dumps(value)}")
    return "\n".join([*lines, "---"]) + "\n"


def metric_names(report: dict[str, Any] | None) -> list[str]:
    """The kinds of number eval.json holds, as the Hub's ``metrics`` list names them."""
    keys = [k for k, v in (report or {}).items() if isinstance(v, dict | float | int) and not isinstance(v, bool)]
    kinds = {"log-likelihood": "log p(", "accuracy": "accuracy", "coherence": "coherence", "diversity": "diversity"}
    return [name for name, start in kinds.items() if any(k.startswith(start) or f" {start}" in k for k in keys)]


def cell(value: Any) -> str:
    """A Markdown table cell: ``|`` (as in ``q(z|image)``) escaped."""
    return str(value).replace("|", "\\|")


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(cell(c) for c in row) + " |" for row in rows)]


def estimate_row(key: str, estimate: dict[str, Any], K: Any) -> list[Any]:
    """One likelihood of eval.json: its value and standard error in nats, proposal, K (and K of the rest), n."""
    value, stderr = estimate["value"], estimate.get("stderr")
    ks = f"{estimate.get('K', K)}" + (f" (rest: {estimate['K rest']})" if "K rest" in estimate else "")
    return [key, "n/a" if value is None else nats(value), "" if stderr is None else nats(stderr),
            estimate.get("proposal", ""), ks, estimate.get("n", "")]


def nats(x: float) -> str:
    """Two decimals, as the docs give nats; two significant digits below 0.01 (a label's standard error)."""
    return f"{x:.2f}" if abs(x) >= 0.01 or x == 0 else f"{x:.2g}"


def results(report: dict[str, Any] | None, epoch: int, ref: str) -> list[str]:
    """The Results section: every estimate with its K and standard error, then the fractions."""
    if report is None:
        return ["No evaluation came with this model. Measure it with:", "", "```bash", f"mmgen eval {ref}", "```"]
    how = f"`mmgen eval` on the {report.get('split', '?')} split, {report.get('examples', '?')} examples"
    lines = [f"{how}. Log-likelihoods are IWAE estimates in nats per example, with K importance samples; {SE_NOTE}."]
    if report.get("epoch") != epoch:
        lines.append(f"**These numbers are of the weights of epoch {report.get('epoch')}; the weights here are of "
                     f"epoch {epoch}.**")
    if "evaluation" in report:
        lines.append(f"**{report['evaluation']}.**")
    estimates = [estimate_row(key, v, report.get("K")) for key, v in report.items()
                 if isinstance(v, dict) and "value" in v]
    fractions = [[key, f"{v:.4f}"] for key, v in report.items()
                 if isinstance(v, float) and not key.startswith(("seconds", "classifier"))]
    fractions += [[f"conditional coherence, {k} given", f"{v:.4f}"]
                  for k, v in report.get("conditional coherence", {}).items()]
    if estimates:
        lines += ["", *table(["quantity", "nats", "± s.e.", "proposal", "K", "examples"], estimates)]
    if fractions:
        lines += ["", *table(["quantity", "fraction"], fractions)]
    lines += ["", *(f"- {name}: {note}" for name, note in report.get("conventions", {}).items())]
    lines += [f"- not measured, {key}: {why}" for key, why in report.get("skipped", {}).items()]
    return lines


def described(run: Run, manifest: Manifest, metrics_epochs: int | None) -> list[str]:
    """What was trained, on what, for how long, and which weights these are."""
    recipe, t = run.recipe, run.recipe.train
    parts = ", ".join(f"`{name}` ({cfg.kind}, λ = {cfg.weight:g})" for name, cfg in recipe.modalities.items())
    fusion = getattr(recipe.model, "fusion", None)
    trained = f"{metrics_epochs} of {t.epochs}" if metrics_epochs not in (None, t.epochs) else f"{t.epochs}"
    rule = {"elbo": "ELBO"}.get(t.best_by, t.best_by)
    which = (f"the weights with the best validation {rule} (`train.best_by`)" if manifest.weights.chosen == "best"
             else "the weights after the last epoch")
    return [
        f"A multimodal generative model of the **{recipe.model.kind}** family, trained with mmgen: modalities "
        f"{parts}; a {recipe.model.latent_dim}-dimensional latent" + (f", fusion `{fusion.kind}`" if fusion else "")
        + f". Data set `{recipe.data.kind}`; {trained} epoch{'' if t.epochs == 1 else 's'}. These are {which}, "
        f"from epoch {manifest.weights.epoch}.",
    ]


def usage(run: Run, ref: str, packages: list[str]) -> list[str]:
    """How to install what it needs and use it: the command line, then Python."""
    labels = [n for n in run.model.names if run.model.modalities[n].num_classes]
    given = f" --given {labels[0]}=1" if labels else ""
    python_given = f", given={{{labels[0]!r}: 1}}" if labels else ""
    plugins = f", and the plugin package(s) {', '.join(packages)}" if packages else ""
    mmgen = ("mmgen with its `hub` extra (`pip install -e '.[hub]'` in a checkout of mmgen)" if ref.startswith("hf:")
             else "mmgen")
    return [f"It needs {mmgen}{plugins}.", "",
            "```bash", f"mmgen sample {ref}{given} --seed 0 --out samples.png",
            f"mmgen eval {ref} --fast      # a quick look, written here; the model's own files stay as they are",
            "```", "", "```python", "import mmgen", "", f"run = mmgen.load_run({ref!r})",
            f"out = run.sample(16{python_given}, seed=0)   # decoded means per modality", "```"]


def training(run: Run, versions: dict[str, Any], manifest: Manifest) -> list[str]:
    """The settings that matter most, the versions it was trained with, and the plugins it needs."""
    t = run.recipe.train
    model = {k: v for k, v in run.recipe.model.model_dump(mode="json").items() if k not in ("kind", "latent_dim")}
    epochs = f"{t.epochs} epoch{'' if t.epochs == 1 else 's'}"
    rows = [["seed", run.recipe.seed], ["model", f"`{json.dumps(model)}`"],
            ["train", f"{epochs}, batch {t.batch_size}, Adam lr {t.lr:g} ({t.schedule}), β over {t.anneal_epochs:g} "
                      f"epochs, {t.precision}"],
            ["trained with", trained_with(versions)],
            ["exported by", f"mmgen {manifest.exported_by}"]]
    needs = [[n.category, n.kind, n.plugin, n.package, n.version] for n in manifest.needs]
    return [*table(["", ""], rows), "", "`recipe.json` holds every setting. The plugins it needs (loading checks that "
            "they are installed):", "", *table(["part", "kind", "plugin", "package", "version"], needs)]


def trained_with(versions: dict[str, Any]) -> str:
    """The versions that trained it, from versions.json; "unknown" when the run had none to export."""
    if "mmgen" not in versions:
        return "unknown: the run had no versions.json"
    return f"mmgen {versions['mmgen']}, torch {versions.get('torch', '?')}, python {versions.get('python', '?')}"


def model_card(run: Run, manifest: Manifest, versions: dict[str, Any], report: dict[str, Any] | None,
               repo_id: str | None = None) -> str:
    """The README.md of an export, from the export loaded back (``run``) and its files."""
    recipe = run.recipe
    ref = f"hf://{repo_id}" if repo_id else "THIS_FOLDER"
    rows = run.run_dir.read_metrics()
    packages = sorted({n.package for n in manifest.needs} - {"mmgen", NOT_INSTALLED})
    tags = list(dict.fromkeys(["mmgen", "multimodal", "vae", recipe.model.kind,
                               *[n.kind for n in manifest.needs if n.category in ("fusions", "modalities")]]))
    head = front_matter({"library_name": "mmgen", "tags": tags, "datasets": [recipe.data.kind],
                         "metrics": metric_names(report)})
    out = f"runs/{recipe.name}"
    body = [f"# {recipe.name}", "", *([recipe.description, ""] if recipe.description else []),
            *described(run, manifest, rows[-1].get("epoch") if rows else None), "",
            "## Use it", "", *usage(run, ref, packages), "",
            *(["## Samples", "", f"![samples drawn by this model]({SAMPLES})", ""]
              if (run.run_dir.path / SAMPLES).is_file() else []),
            "## Results", "", *results(report, manifest.weights.epoch, ref), "",
            "## Training", "", *training(run, versions, manifest), "",
            "## Reproduce", "",
            "The data set is read from `$MMGEN_DATA_ROOT` (torchvision's layout), or downloaded. THIS_FOLDER is "
            f"this model's folder (`hf download {repo_id or 'ORG/NAME'} --local-dir THIS_FOLDER` fetches it).", "",
            "```bash", *train_commands(json.loads(run.run_dir.recipe_file.read_text()), out),
            *([eval_command(report, out)] if report else []), "```", "",
            "## Files", "",
            *table(["file", "what"], [[f"`{name}`", what] for name, what in files(run, manifest, versions).items()]),
            "",
            "Nothing here is pickled: loading reads JSON and safetensors and runs no code from this folder."]
    return head + "\n" + "\n".join(body) + "\n"


def files(run: Run, manifest: Manifest, versions: dict[str, Any]) -> dict[str, str]:
    """The export's files that exist, with what each holds."""
    known = "mmgen" in versions
    said = {manifest.weights.file: f"the weights ({manifest.weights.chosen}, epoch {manifest.weights.epoch})",
            "recipe.json": "the resolved recipe", "versions.json": "mmgen, torch, python and plugin versions of "
            "the training" if known else "that the versions of the training are not known",
            "metrics.jsonl": "the training curve, one line per epoch", EVAL: "`mmgen eval`'s numbers",
            SAMPLES: "samples drawn by the model", CARD: "this card",
            MANIFEST: "the plugins it needs, the weights' SHA-256 and the recipe's model and modalities, checked "
            "on loading"}
    return {name: what for name, what in said.items() if (run.run_dir.path / name).is_file() or name == CARD}
