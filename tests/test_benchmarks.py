"""The benchmark scripts still import against today's package (they are run by hand, not in CI)."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.support import REPO_ROOT

SCRIPTS = sorted((REPO_ROOT / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_the_script_imports_and_has_a_main_guard(path, monkeypatch):
    monkeypatch.syspath_prepend(str(path.parent))  # the scripts import their siblings (roofline, sweep...)
    spec = importlib.util.spec_from_file_location(f"benchmark_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)  # runs the imports and definitions, not main()
    finally:
        sys.modules.pop(f"benchmark_{path.stem}", None)
    helpers = {"reference_loop", "roofline", "sweep"}  # imported by the others
    assert path.stem in helpers or ("__main__" in path.read_text() and callable(getattr(module, "main", None)))
