"""Write the recipe reference from the pydantic configs, so the docs cannot drift from the code.

    python -m mmgen.recipe.reference > docs/recipe-reference.md
"""

from __future__ import annotations

import re

from pydantic import BaseModel

from mmgen.config import ModelConfig, RecipeHead, TrainConfig
from mmgen.plugin.registry import CATEGORIES, SINGULAR, get_registry

SECTIONS = {"models": "[model]", "modalities": "[modalities.NAME]", "fusions": "[model.fusion]", "datasets": "[data]"}


def _default(field) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    return "(table)" if isinstance(value, BaseModel) else f"`{value!r}`"


def _table(model: type[BaseModel], skip: set[str] = frozenset()) -> list[str]:
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        ann = field.annotation
        kind = ann.__name__ if isinstance(ann, type) else str(ann).replace("typing.", "")
        kind = re.sub(r"Annotated\[(\w+), Gt\(gt=0\)\]", r"\1 > 0", kind)  # PositiveInt
        cells = [f"`{name}`", kind, _default(field), field.description or ""]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return rows


def reference_markdown() -> str:
    out = [
        "# Recipe reference",
        "",
        "Generated from the pydantic configs by `python -m mmgen.recipe.reference > docs/recipe-reference.md`;",
        "a test fails when this file and the code disagree. Every table forbids unknown keys. It covers the",
        "kinds mmgen ships; a plugin package documents its own (`mmgen plugins` lists what is installed).",
        "",
        "## Top level",
        "",
        *_table(RecipeHead, skip={"model", "train"}),
        "",
        "## [model]",
        "",
        "Every family has these keys; `kind` picks the family, whose own keys follow in its section below.",
        "",
        *_table(ModelConfig),
        "",
        "## [train]",
        "",
        *_table(TrainConfig),
    ]
    registry = get_registry()
    for category in CATEGORIES:
        if category not in SECTIONS:  # loggers have no settings of their own: train.loggers names them
            continue
        for kind, reg in sorted(getattr(registry, category).items()):
            if reg.package != "mmgen":  # what else happens to be installed must not change this page
                continue
            out += ["", f"## {SECTIONS[category]} kind = \"{kind}\"", "",
                    f"{SINGULAR[category].capitalize()} `{reg.cls.__name__}` from package `{reg.package}`.", "",
                    *_table(reg.cls.Config)]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(reference_markdown(), end="")
