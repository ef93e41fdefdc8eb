"""An export: a run directory cut down to what another machine needs to use its model, plus
``export.json``, which says what the model needs and lets a loader check what it received.

    DEST/
        recipe.json        the run's resolved recipe (data.root and train.loggers, settings of the
                           training machine, back to their defaults)
        versions.json      mmgen, torch, python and the plugins when the run was trained (the run's file;
                           for a run without one, a file saying they are unknown)
        best.safetensors   the chosen weights (last.safetensors when those were chosen), the run's bytes
        metrics.jsonl      the training curve, when the run logged one
        eval.json          ``mmgen eval``'s numbers, when the run has them
        data_record.safetensors  how the data set assembled the examples trained on, when it says (MNIST-SVHN)
        samples.png        a grid of samples
        README.md          the model card (the Hugging Face Hub's format)
        export.json        this module's manifest: the plugins the recipe needs, the weights' size and SHA-256,
                           and the recipe's model and modalities sections with the SHA-256 of their canonical JSON

An export is still a run directory, so everything that loads a run loads it. A run directory has no
export.json, and loading it skips these checks. ``mmgen.share.export`` writes exports.

What loading an export holds fixed: the weights (the manifest's file, its bytes) and the sections of
recipe.json that build the model they fit, ``model`` and ``modalities``: a change there that keeps
every tensor's shape (``modalities.image.binarize``, ``model.fusion.prior_expert``) would load and
sample another model. ``data`` and ``train`` stay the receiver's to change (the data's folder, a
training of their own).
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mmgen.config import DatasetConfig, Recipe, TrainConfig
from mmgen.errors import CheckpointError, PluginError
from mmgen.plugin.registry import SINGULAR, get_registry
from mmgen.run.data_record import DATA_RECORD
from mmgen.run.directory import RunDir

MANIFEST = "export.json"
FORMAT = 1  # export.json's layout; a newer mmgen that changes it raises this
CARD, SAMPLES, EVAL = "README.md", "samples.png", "eval.json"
# Every file an export may hold: all that is downloaded of a Hub model (so that a repository which is
# not an export costs a few small files, not its weights).
FILES = ("recipe.json", "versions.json", "best.safetensors", "last.safetensors", "metrics.jsonl", EVAL, SAMPLES,
         CARD, MANIFEST, DATA_RECORD)
AGAIN = "export the run again, or download or copy the export again"
FIXED = ("model", "modalities")  # the recipe's sections the weights fix
# versions.json of an export whose run had none: said, not guessed from the exporting machine.
UNKNOWN_VERSIONS = {"unknown": "the run this was exported from had no versions.json: the versions that trained it "
                               "are not known"}


class Need(BaseModel):
    """One plugin part the recipe names, and the plugin that registered it when the run was exported."""

    model_config = ConfigDict(extra="ignore")

    category: str = Field(description="A registry category: models, modalities, fusions, datasets or loggers.")
    kind: str
    plugin: str = Field(description="The entry-point name of the plugin that registered the kind.")
    package: str = Field(description="The distribution that ships that plugin (pip install this).")
    version: str

    def describe(self) -> str:
        return f"{SINGULAR.get(self.category, self.category)} {self.kind!r} (plugin {self.plugin!r}, " \
               f"package {self.package} {self.version})"


class Weights(BaseModel):
    """The exported weights: which file, which run's weights they were, and the bytes expected."""

    model_config = ConfigDict(extra="ignore")

    file: str
    chosen: str = Field(description="best or last: the run's weights that were exported.")
    epoch: int
    bytes: int
    sha256: str


class FixedRecipe(BaseModel):
    """The recipe's sections that the weights fix, as exported, and the SHA-256 of their canonical JSON."""

    model_config = ConfigDict(extra="ignore")

    sha256: str = Field(description="SHA-256 of the canonical JSON (sorted keys, no spaces) of model and modalities.")
    model: dict[str, Any]
    modalities: dict[str, Any]


class Manifest(BaseModel):
    """``export.json``. Unknown keys are ignored, so that an older mmgen reads a newer manifest of the same FORMAT."""

    model_config = ConfigDict(extra="ignore")

    format: int = FORMAT
    run: str = Field(description="The exported run's recipe name.")
    exported_by: str = Field(description="The mmgen version that wrote the export.")
    weights: Weights
    recipe: FixedRecipe = Field(description="recipe.json's model and modalities: a change to them is refused.")
    needs: list[Need]

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2) + "\n"


def shareable(recipe: dict[str, Any]) -> dict[str, Any]:
    """A resolved recipe as an export holds it: two settings of the training machine back to their defaults,
    data.root (a folder there) and train.loggers (where it logged, maybe a tracking server), so that the
    recipe reads the data and validates on another machine."""
    out = copy.deepcopy(recipe)
    out.setdefault("data", {})["root"] = DatasetConfig.model_fields["root"].get_default()
    out.setdefault("train", {})["loggers"] = TrainConfig.model_fields["loggers"].get_default(call_default_factory=True)
    return out


def flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"epochs": 3}}`` -> ``{"train.epochs": 3}``; lists and empty dicts stay values."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{path}."))
        else:
            out[path] = value
    return out


def canonical(data: Any) -> bytes:
    """One JSON text for equal data, whatever its key order, layout or way of writing a whole number
    (``1.0`` or ``1``) in a file: sorted keys, no spaces, whole floats as integers."""
    return json.dumps(_whole(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _whole(data: Any) -> Any:
    if isinstance(data, float) and data.is_integer():
        return int(data)
    if isinstance(data, dict):
        return {key: _whole(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_whole(value) for value in data]
    return data


def recipe_record(recipe: dict[str, Any]) -> FixedRecipe:
    """The fixed sections of ``recipe`` (recipe.json's data) as export.json records them."""
    sections = {name: recipe.get(name) for name in FIXED}
    return FixedRecipe(sha256=digest(canonical(sections)), **sections)


def needed_kinds(recipe: Recipe) -> list[tuple[str, str]]:
    """``(category, kind)`` of every plugin part the recipe names: what validating it looks up."""
    kinds = [("models", recipe.model.kind)]
    fusion = getattr(recipe.model, "fusion", None)  # a family may have no fusion
    if fusion is not None:
        kinds.append(("fusions", fusion.kind))
    kinds += [("modalities", cfg.kind) for cfg in recipe.modalities.values()]
    kinds.append(("datasets", recipe.data.kind))
    kinds += [("loggers", kind) for kind in recipe.train.loggers]
    return list(dict.fromkeys(kinds))


def needs_of(recipe: Recipe) -> list[Need]:
    """The plugins ``recipe`` needs, as installed now (a validated recipe names only registered kinds)."""
    registry = get_registry()
    needs = []
    for category, kind in needed_kinds(recipe):
        reg = getattr(registry, category)[kind]
        needs.append(Need(category=category, kind=kind, plugin=reg.plugin, package=reg.package, version=reg.version))
    return needs


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_manifest(run_dir: RunDir) -> Manifest | None:
    """The folder's export.json; None for a run directory, which has none."""
    path = run_dir.path / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{path} is unreadable: {exc.__class__.__name__}: {' '.join(str(exc).split())[:200]}",
                              hint=AGAIN)
    if isinstance(data, dict) and isinstance(data.get("format"), int) and data["format"] > FORMAT:
        raise CheckpointError(f"{run_dir.path} was exported by mmgen {data.get('exported_by', '?')} in a newer format "
                              f"({data['format']}; this mmgen reads {FORMAT})", hint="upgrade mmgen")
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "export.json"
        raise CheckpointError(f"{path} is not an export manifest: {where}: {first['msg']}", hint=AGAIN)


def check_plugins(run_dir: RunDir, manifest: Manifest) -> None:
    """Every plugin the export needs is installed and loaded; the missing ones are named in one line."""
    registry = get_registry()
    missing = [need for need in manifest.needs if need.kind not in getattr(registry, need.category, {})]
    if not missing:
        return
    packages = sorted({need.package for need in missing})
    raise PluginError(
        f"{run_dir.path} needs {len(missing)} plugin part(s) that are not installed or did not load: "
        + "; ".join(need.describe() for need in missing),
        hint=f"pip install {' '.join(packages)}; `mmgen plugins` lists what is installed and what failed to load")


def check_weights(run_dir: RunDir, manifest: Manifest, weights_path: Path) -> None:
    """The weights file is the one exported and holds its bytes: its name, its size, then its SHA-256."""
    if weights_path.name != manifest.weights.file:  # put there since: nothing recorded to hold it to
        raise CheckpointError(f"{weights_path} is not the weights file this export was made with "
                              f"({manifest.weights.file}): export.json holds no checksum of it",
                              hint=f"load the exported weights, --weights {manifest.weights.chosen}, or remove "
                              f"{weights_path.name}")
    size = weights_path.stat().st_size
    if size != manifest.weights.bytes:
        raise CheckpointError(f"{weights_path} has {size:,} bytes, the export wrote {manifest.weights.bytes:,}: "
                              f"it was {'truncated' if size < manifest.weights.bytes else 'changed'} since", hint=AGAIN)
    if digest(weights_path.read_bytes()) != manifest.weights.sha256:
        raise CheckpointError(f"{weights_path} is not the file exported: its SHA-256 differs from export.json's",
                              hint=AGAIN)


def check_recipe(run_dir: RunDir, manifest: Manifest) -> None:
    """recipe.json's model and modalities are those exported (their canonical JSON's SHA-256); the first key
    that differs is named."""
    ours = {name: run_dir.read_recipe_data().get(name) for name in FIXED}
    if digest(canonical(ours)) == manifest.recipe.sha256:
        return
    mine, theirs = flat(ours), flat({name: getattr(manifest.recipe, name) for name in FIXED})
    changed = [k for k in dict.fromkeys([*theirs, *mine])
               if k not in mine or k not in theirs or canonical(mine[k]) != canonical(theirs[k])]
    said = (f"{changed[0]} is {shown(mine, changed[0])}, the export's {shown(theirs, changed[0])}" if changed
            else "its model and modalities are not those whose SHA-256 export.json records")
    raise CheckpointError(f"{run_dir.recipe_file} is not the recipe exported with these weights: {said}",
                          hint=f"the model and modalities sections must stay as exported, data and train may "
                          f"change; undo the change, or {AGAIN}")


def shown(values: dict[str, Any], key: str) -> str:
    """A recipe value in a message: its JSON, cut short; a key the recipe lacks is "absent"."""
    text = json.dumps(values[key], ensure_ascii=False) if key in values else "absent"
    return text if len(text) <= 80 else text[:77] + "..."


def check_export(run_dir: RunDir, which: str) -> None:
    """For an export, before its recipe is validated: the plugins it needs, the bytes of the weights ``which``
    loads, and its recipe's model and modalities. A run directory (no export.json) passes untouched."""
    manifest = read_manifest(run_dir)
    if manifest is None:
        return
    check_plugins(run_dir, manifest)
    if which == "last" and not run_dir.last.is_file():  # the run's message would ask whether training stopped early
        raise CheckpointError(f"{run_dir.path} is an export of the run's {manifest.weights.chosen} weights (epoch "
                              f"{manifest.weights.epoch}); it holds no others", hint="leave out --weights last")
    check_weights(run_dir, manifest, run_dir.weights(which))
    check_recipe(run_dir, manifest)


def is_export(run_dir: RunDir) -> bool:
    """Whether the folder is an export (it has export.json), whose files stay as exported."""
    return (run_dir.path / MANIFEST).is_file()
