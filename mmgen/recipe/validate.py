"""Recipe validation: plain recipe data -> a :class:`mmgen.config.Recipe`, or one RecipeError with every problem.

Validation collects every problem, each with its dotted key, into one RecipeError before any
tensor is allocated. Plugin parts (``modalities.*``, ``model.fusion``, ``data``) are validated
against the Config class of the kind they name.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import ValidationError

from mmgen.config import ModalityConfig, Recipe, RecipeHead
from mmgen.errors import MmgenError, RecipeError
from mmgen.plugin.registry import get_registry


def _format(exc: ValidationError, prefix: str) -> list[str]:
    lines = []
    for err in exc.errors():
        key = ".".join([prefix, *map(str, err["loc"])] if prefix else map(str, err["loc"]))
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
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
        return cls.Config.model_validate(raw)
    except ValidationError as exc:
        errors.extend(_format(exc, prefix))
        return None


def validate_recipe(data: dict[str, Any], source: str = "recipe") -> Recipe:
    """Validate plain recipe data; every problem goes into one RecipeError."""
    data = copy.deepcopy(data)
    errors: list[str] = []
    modalities_raw = data.pop("modalities", None)
    data_raw = data.pop("data", None)
    model_raw = data.get("model", {})
    fusion_raw = {"kind": "poe"}
    if isinstance(model_raw, dict):
        fusion_raw = model_raw.pop("fusion", fusion_raw)

    head = None
    try:
        head = RecipeHead.model_validate(data)
    except ValidationError as exc:
        errors.extend(_format(exc, ""))

    fusion = _plugin_part("fusions", fusion_raw, "model.fusion", errors)
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
    if dataset is not None:
        fields = get_registry().lookup("datasets", dataset.kind).fields
        for name in modalities:
            if name not in fields:
                errors.append(
                    f"modalities.{name}: dataset {dataset.kind!r} has no field {name!r} (fields: {', '.join(fields)})"
                )

    if dataset is not None:
        for name in dataset.missing_at_eval:
            if name not in modalities:
                errors.append(f"data.missing_at_eval: {name!r} is not a modality of this recipe")
    if fusion is not None and head is not None and modalities:
        fusion_cls = get_registry().lookup("fusions", fusion.kind)
        errors.extend(f"model.fusion: {msg}" for msg in fusion_cls.check(fusion, list(modalities), head.model))

    if errors:
        raise RecipeError(f"{source}: {len(errors)} problem(s): " + "; ".join(errors))
    assert head is not None and fusion is not None and dataset is not None
    head.model.fusion = fusion
    return Recipe.model_construct(**dict(head), modalities=modalities, data=dataset)
