"""Every package the product imports at run time is declared in pyproject.toml (an undeclared
matplotlib once broke `mmgen eval` on every fresh install while CI, on a machine that had it, passed).

The imports are read from the source, function-level ones included, for mmgen and its first-party
plugins, and for the text plugin against its own pyproject.toml. .ci/run installs into a new
virtual environment as well, so a missing declaration also fails there.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

PRODUCTS = {  # pyproject -> the source folders it ships
    REPO_ROOT / "pyproject.toml": [REPO_ROOT / "mmgen", REPO_ROOT / "plugins"],
    REPO_ROOT / "plugins" / "mmgen-text" / "pyproject.toml": [REPO_ROOT / "plugins" / "mmgen-text" / "src"],
}
OWN = {"mmgen", "mmgen_plugins", "mmgen_text"}
TEST_ONLY = {"pytest", "hypothesis"}  # mmgen.testing is imported by tests only; it uses neither


def top_level_imports(folders: list[Path], skip: Path | None = None) -> dict[str, str]:
    found: dict[str, str] = {}
    for folder in folders:
        for path in folder.rglob("*.py"):
            if (skip and skip in path.parents) or "tests" in path.relative_to(folder).parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                for name in names:
                    found.setdefault(name.split(".")[0], f"{path}:{node.lineno}")
    return found


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(pyproject: Path) -> set[str]:
    """The dependencies, and the optional ones of each extra but ``dev`` (the tools that build and test it):
    code that imports an extra's package must say how to install it when it is missing (tested beside it)."""
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = [dep for name, deps in project.get("optional-dependencies", {}).items() if name != "dev" for dep in deps]
    return {normalize(re.split(r"[<>=!~\[; ]", dep, maxsplit=1)[0]) for dep in [*project.get("dependencies", []),
                                                                              *extras]}


@pytest.mark.parametrize("pyproject", list(PRODUCTS), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_third_party_import_is_a_declared_dependency(pyproject):
    skip = REPO_ROOT / "plugins" / "mmgen-text" if pyproject == REPO_ROOT / "pyproject.toml" else None
    imports = top_level_imports(PRODUCTS[pyproject], skip)
    distributions = importlib.metadata.packages_distributions()
    deps = declared(pyproject)
    if "mmgen" in deps:  # a plugin may use what mmgen itself declares
        deps |= declared(REPO_ROOT / "pyproject.toml")
    missing = {}
    for module, where in sorted(imports.items()):
        if module in OWN or module in sys.stdlib_module_names or module in TEST_ONLY or module == "__future__":
            continue
        providers = {normalize(d) for d in distributions.get(module, [module])}
        if not providers & deps:
            missing[module] = where
    assert imports and "torch" in imports  # the scan found the code: the test cannot pass vacuously
    assert not missing, f"imported but not declared in {pyproject.name}: {missing}"


def test_the_check_sees_an_undeclared_import(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text("def f():\n    import matplotlib.pyplot\n")
    assert "matplotlib" in top_level_imports([tmp_path / "pkg"])
