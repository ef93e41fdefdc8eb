"""Docs that are generated or enumerate code stay in step with it."""

import inspect
import re
from pathlib import Path

from mmgen import hookspecs
from mmgen.recipe_reference import reference_markdown

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_recipe_reference_is_up_to_date():
    committed = (DOCS / "recipe-reference.md").read_text()
    assert committed == reference_markdown(), "run: python -m mmgen.recipe_reference > docs/recipe-reference.md"


def test_every_hook_has_a_section_in_plugin_hooks():
    hooks = {n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("register_")}
    headings = set(re.findall(r"^## (\w+)$", (DOCS / "plugin-hooks.md").read_text(), re.MULTILINE))
    assert hooks, "no hooks found: the test would pass vacuously"
    assert hooks == headings
