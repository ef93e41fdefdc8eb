"""Recipe validation: plain recipe data -> a :class:`mmgen.config.Recipe`, or one RecipeError with every problem.

Validation collects every problem, each with its dotted key, into one RecipeError before any
tensor is allocated. Plugin parts (``model``, ``modalities.*``, ``model.fusion``, ``data``) are
validated against the Config class of the kind they name; ``model`` without a kind is the MVAE.

Values are checked strictly, whoever wrote the Config: a number is never read from a bool or a
string (``seed=true``, ``train.epochs="3"``), an integer never from a float (``train.epochs=1e3``),
a bool never from a string (``download="yes"``). Before that, every value of the recipe must be
a finite number, a 64-bit integer, a bool, a string, or a table or array of them, nested at most
``MAX_DEPTH`` deep.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import tomllib
from collections.abc import Sequence
from typing import Any

import torch
from pydantic import BaseModel, ValidationError

from mmgen.config import ModalityConfig, ModelConfig, Recipe, RecipeHead, TrainConfig
from mmgen.config.model import DEFAULT_FAMILY
from mmgen.errors import MmgenError, RecipeError
from mmgen.plugin.registry import get_registry

MAX_DEPTH = 16
INT64 = 2**63


def value_problems(value: Any, key: str, depth: int = 0) -> list[str]:
    """What is wrong with the raw values under ``key``, whatever the schema: depth, non-finite
    numbers, integers no tensor can hold, TOML dates and times."""
    where = key or "recipe"
    if depth > MAX_DEPTH:
        return [f"{where}: nested more than {MAX_DEPTH} levels deep"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in value_problems(v, f"{key}.{k}" if key else str(k), depth + 1)]
    if isinstance(value, list | tuple):  # TOML arrays; a tuple from Python code
        return [p for i, v in enumerate(value) for p in value_problems(v, f"{where}[{i}]", depth + 1)]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return []
    if isinstance(value, int):
        return [] if -INT64 <= value < INT64 else [f"{where}: {value} does not fit a 64-bit integer"]
    if isinstance(value, float):
        return [] if math.isfinite(value) else [f"{where}: must be a finite number (got {value})"]
    return [f"{where}: a {type(value).__name__} is not a recipe value (numbers, bools, strings, tables, arrays)"]


def _strict(cls: type[BaseModel], raw: dict[str, Any]):
    """``cls`` validated strictly, as JSON: arrays may fill tuples, and nothing else is coerced."""
    return cls.model_validate_json(json.dumps(raw), strict=True)


def _known_keys(cls: type[BaseModel], loc: tuple) -> list[str]:
    """The keys of the table at ``loc`` in ``cls`` (walking nested models); [] where that is not a model."""
    for part in loc:
        field = cls.model_fields.get(part) if isinstance(part, str) else None
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return []
        cls = field.annotation
    return list(cls.model_fields)


def _unknown_key(key: str, cls: type[BaseModel], loc: tuple, siblings: tuple[str, ...]) -> str:
    """The problem of an unknown key, with a "did you mean" when a known key of its table is close."""
    known = _known_keys(cls, loc[:-1]) + (list(siblings) if len(loc) == 1 else [])
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    parent = key.rpartition(".")[0]
    return f"unknown key; did you mean '{parent + '.' if parent else ''}{close[0]}'?" if close else "unknown key"


def _format(exc: ValidationError, prefix: str, cls: type[BaseModel], siblings: tuple[str, ...] = ()) -> list[str]:
    """One ``key: problem`` line per error of ``cls``; ``siblings``: the other keys its top-level table may hold."""
    lines = []
    for err in exc.errors():
        key = ".".join([prefix, *map(str, err["loc"])] if prefix else map(str, err["loc"]))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = _unknown_key(key, cls, err["loc"], siblings)
        if err["type"] not in ("extra_forbidden", "missing"):
            msg += f" (got {err['input']!r})"
        lines.append(f"{key}: {msg}")
    return lines


def _plugin_part(category: str, raw: Any, prefix: str, errors: list[str]):
    """Validate one plugin-configured table against the Config of the kind it names."""
    if not isinstance(raw, dict):
        errors.append(f"{prefix}: expected a table, got {raw!r}")
        return None
    if "kind" not in raw:
        errors.append(f"{prefix}.kind: Field required")
        return None
    try:
        cls = get_registry().lookup(category, str(raw["kind"]))
    except MmgenError as exc:
        errors.append(f"{prefix}.kind: {exc}")
        return None
    try:
        return _strict(cls.Config, raw)
    except ValidationError as exc:
        errors.extend(_format(exc, prefix, cls.Config))
        return None


def _cross_checks(head: RecipeHead | None, model: ModelConfig | None, modalities: dict[str, ModalityConfig],
                  dataset, for_training: bool) -> list[str]:
    """Problems between the parts: fields the dataset lacks, names, the model family's own check, and (for
    training) the loggers."""
    errors = []
    registry = get_registry()
    if dataset is not None:
        fields = registry.lookup("datasets", dataset.kind).fields
        errors += [f"modalities.{name}: dataset {dataset.kind!r} has no field {name!r} (fields: {', '.join(fields)})"
                   for name in modalities if name not in fields]
        errors += [f"data.missing_at_eval: {name!r} is not a modality of this recipe"
                   for name in dataset.missing_at_eval if name not in modalities]
    if model is not None and modalities:
        errors += registry.lookup("models", model.kind).check(model, modalities, registry.lookup)
    if head is not None:
        errors += _logger_problems(head.train.loggers, for_training) + _backend_problems(head.train.compile_backend)
    return errors


def _model_part(raw: Any, errors: list[str]) -> ModelConfig | None:
    """``[model]`` against its family's Config; a family with a ``fusion`` setting has it validated as the
    plugin part it is (the family's default fusion when the recipe names none)."""
    if not isinstance(raw, dict):
        errors.append(f"model: expected a table, got {raw!r}")
        return None
    raw = {"kind": DEFAULT_FAMILY, **raw}
    try:
        family = get_registry().lookup("models", str(raw["kind"]))
    except MmgenError as exc:
        errors.append(f"model.kind: {exc}")
        return None
    fusion_field = family.Config.model_fields.get("fusion")
    fusion = None
    if fusion_field is not None:
        default = fusion_field.get_default(call_default_factory=True)
        fusion_raw = raw.pop("fusion", default.model_dump() if isinstance(default, BaseModel) else default)
        fusion = _plugin_part("fusions", fusion_raw, "model.fusion", errors)
    try:
        config = _strict(family.Config, raw)
    except ValidationError as exc:
        errors.extend(_format(exc, "model", family.Config))
        return None
    if fusion_field is not None:
        if fusion is None:
            return None
        config.fusion = fusion
    return config


def _logger_problems(kinds: list[str], for_training: bool) -> list[str]:
    """Repeated logger kinds; for training, unknown ones and loggers whose package is missing."""
    errors = [f"train.loggers: {kind!r} is named twice" for kind in sorted({k for k in kinds if kinds.count(k) > 1})]
    for kind in dict.fromkeys(kinds) if for_training else ():
        try:
            why = get_registry().lookup("loggers", kind).missing()
        except MmgenError as exc:
            why = str(exc)
        if why:
            errors.append(f"train.loggers: {why}")
    return errors


def _backend_problems(backend: str) -> list[str]:
    """A torch.compile backend torch does not have. The default is always there: asking torch for its list
    imports its compiler, which takes about a second."""
    if backend == TrainConfig.model_fields["compile_backend"].default:
        return []
    every = torch.compiler.list_backends(exclude_tags=())  # the debugging ones too (aot_eager, eager)
    if backend in every:
        return []
    close = difflib.get_close_matches(backend, every, n=1)
    usual = ", ".join(torch.compiler.list_backends())  # without the debugging ones
    return [f"train.compile_backend: torch.compile has no backend {backend!r}; "
            + (f"did you mean {close[0]!r}?" if close else f"the usual ones are {usual}")]


def _is_toml(value: str) -> bool:
    try:
        tomllib.loads(f"v = {value}")
    except (tomllib.TOMLDecodeError, RecursionError):
        return False
    return True


def _blame(problem: str, overrides: Sequence[str]) -> tuple[str, str | None, bool]:
    """-> (the problem's line, the override that set its key or a key under it, whether that override
    alone is to blame). An unknown table an override made is the override's; another problem of a table
    an override changed a key of names both."""
    key, _, what = problem.partition(": ")
    for text in reversed(overrides):  # the last override of a key is the one that counts
        target = ".".join(part.strip() for part in text.partition("=")[0].split("."))
        if key == target:
            return f"override {text.strip()}: {what}", text, True
        if key.startswith((f"{target}.", f"{target}[")) or (target.startswith(f"{key}.") and
                                                              what.startswith("unknown key")):
            return f"override {text.strip()}: {problem}", text, True
        if target.startswith(f"{key}."):
            return f"{problem} (with override {text.strip()})", text, False
    return problem, None, False


def _override_hint(texts: list[str], lines: list[str]) -> str:
    """Where the keys are listed, when only keys are wrong; else how to write override values: TOML,
    with the list an override meant when its strings lack quotes."""
    if all("unknown key" in line for line in lines):
        return "docs/recipe-reference.md lists every key"
    for text in texts:
        key, _, value = (part.strip() for part in text.partition("="))
        if value.startswith("[") and not _is_toml(value):
            items = [item.strip() for item in value.strip("[]").split(",") if item.strip()]
            fixed = "[" + ",".join(i if _is_toml(i) else json.dumps(i) for i in items) + "]"
            return (f"override values are TOML: quote the strings in a list, and the whole override for the shell: "
                    f"'{key}={fixed}'")
    return 'override values are TOML: 3, 1e-3, true, "text", [1, 2], ["a", "b"]; `mmgen train --help` shows more'


def recipe_error(errors: list[str], source: str, overrides: Sequence[str] = ()) -> RecipeError:
    """One RecipeError for every problem; a problem an override made names that override, not the file."""
    blamed = [_blame(problem, overrides) for problem in errors]
    lines = [line for line, _, _ in blamed]
    texts = [text for _, text, _ in blamed if text is not None]
    if texts and all(alone for _, _, alone in blamed):
        return RecipeError(("" if len(lines) == 1 else f"{len(lines)} problem(s): ") + "; ".join(lines),
                           hint=_override_hint(texts, lines))
    message = f"{source}: {len(errors)} problem(s): " + "; ".join(lines)
    return RecipeError(message, hint=f"fix the recipe or the override; {_override_hint(texts, lines)}" if texts else "")


def validate_recipe(data: dict[str, Any], source: str = "recipe", overrides: Sequence[str] = (),
                    for_training: bool = True) -> Recipe:
    """Validate plain recipe data; every problem goes into one RecipeError. ``overrides``: the
    ``key.path=value`` texts already applied to ``data``, so that their problems are blamed on them.

    ``for_training=False`` (a finished run's recipe, to load, sample, evaluate or share) leaves the loggers
    unchecked: where the run logged to is no concern of the machine that reads it, and ``mmgen eval`` warns
    about a logger it cannot reach."""
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a recipe is a table of keys, got {type(data).__name__}")
    errors = value_problems(data, "")
    if errors:  # values no schema should see (NaN, 2**70, 40 levels deep): report them alone
        raise recipe_error(errors, source, overrides)
    data = copy.deepcopy(data)
    modalities_raw = data.pop("modalities", None)
    data_raw = data.pop("data", None)
    model_raw = data.pop("model", {})

    head = None
    try:
        head = _strict(RecipeHead, data)
    except ValidationError as exc:
        errors.extend(_format(exc, "", RecipeHead, ("model", "modalities", "data")))
    model = _model_part(model_raw, errors)
    modalities: dict[str, ModalityConfig] = {}
    if not isinstance(modalities_raw, dict) or not modalities_raw:
        errors.append("modalities: at least one [modalities.NAME] table is required")
    else:
        for name, raw in modalities_raw.items():
            cfg = _plugin_part("modalities", raw, f"modalities.{name}", errors)
            if cfg is not None:
                modalities[name] = cfg
    dataset = None
    if data_raw is None:
        errors.append("data: a [data] table with a kind is required")
    else:
        dataset = _plugin_part("datasets", data_raw, "data", errors)
    errors += _cross_checks(head, model, modalities, dataset, for_training)
    if errors:
        raise recipe_error(errors, source, overrides)
    assert head is not None and model is not None and dataset is not None
    return Recipe.model_construct(**{**dict(head), "model": model}, modalities=modalities, data=dataset)
