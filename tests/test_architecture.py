"""The package's shape, kept true: one-way layers, no import cycles, small modules and functions,
every module in docs/design.md, every folder packaged.

The import graph is read from the source with ``ast``: every ``import`` and ``from ... import``,
at module level or inside a function, so a function-level import cannot hide a cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from tests.support import REPO_ROOT

PACKAGE = REPO_ROOT / "mmgen"
# Bottom to top; a module may import only from its own entry or those below. Entries in one tuple
# are independent: neither imports the other. Keep in step with [tool.importlinter] and docs/design.md.
LAYERS: list[tuple[str, ...]] = [
    ("mmgen.errors",),
    ("mmgen.config",),
    ("mmgen.storage",),
    ("mmgen.plugin",),
    ("mmgen.data", "mmgen.model"),
    ("mmgen.recipe",),
    ("mmgen.run",),
    ("mmgen.eval",),
    ("mmgen.train", "mmgen.share"),
    ("mmgen.cli", "mmgen.testing"),
    ("mmgen", "mmgen.__main__"),  # the facade: gathers names, imported by nothing inside mmgen
]
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported mmgen module
    line: int
    in_function: bool


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(name: str) -> str | None:
    """The mmgen module an imported name lives in: ``mmgen.plugin.hookspecs`` from ``mmgen.plugin``'s
    ``hookspecs``, ``mmgen.config`` from ``mmgen.config.ModelConfig``; None outside mmgen."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(name: str) -> list[Import]:
    tree = ast.parse(MODULES[name].read_text())
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            targets: list[str] = []
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                targets = [f"{child.module}.{a.name}" for a in child.names]
            for target in targets:
                module = resolve(target)
                if module is not None and module != name:
                    found.append(Import(name, module, child.lineno, in_function))
            visit(child, inner)

    visit(tree, False)
    return found


IMPORTS = [imp for name in MODULES for imp in imports_of(name)]


def layer_of(module: str) -> int:
    best = None
    for level, entries in enumerate(LAYERS):
        for entry in entries:
            if (module == entry or module.startswith(entry + ".")) and (best is None or len(entry) > len(best[1])):
                best = (level, entry)
    assert best is not None, f"{module} is in no layer: add it to LAYERS and docs/design.md"
    return best[0]


def entry_of(module: str) -> str:
    level = layer_of(module)
    return max((e for e in LAYERS[level] if module == e or module.startswith(e + ".")), key=len)


def test_the_graph_is_not_empty():
    assert len(MODULES) > 40 and len(IMPORTS) > 100  # the checks below would pass vacuously otherwise


def test_every_import_goes_down_or_stays_in_its_own_layer_entry():
    bad = []
    for imp in IMPORTS:
        a, b = layer_of(imp.source), layer_of(imp.target)
        if b > a or (b == a and entry_of(imp.source) != entry_of(imp.target)):
            bad.append(f"{imp.source}:{imp.line} imports {imp.target}")
    assert not bad, "upward or sideways imports:\n" + "\n".join(bad)


def test_nothing_inside_mmgen_imports_the_facade():
    bad = [f"{i.source}:{i.line}" for i in IMPORTS if i.target == "mmgen" and i.source != "mmgen.__main__"]
    assert not bad, "import from the defining module, not from mmgen: " + ", ".join(bad)


def test_no_import_cycles_between_modules():
    """Tarjan's strongly connected components over every import (function-level ones included)."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for imp in IMPORTS:
        graph[imp.source].add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            strongconnect(v)
    assert not cycles, f"import cycles: {cycles}"


def test_no_function_level_import_of_an_mmgen_module():
    """Without cycles there is no reason for one; lazy imports are for heavy third-party packages only."""
    bad = [f"{i.source}:{i.line} imports {i.target}" for i in IMPORTS if i.in_function]
    assert not bad, "\n".join(bad)


# The first-party plugins are held to the same sizes as the package.
SIZED = {**MODULES, **{str(p.relative_to(REPO_ROOT)): p for p in sorted((REPO_ROOT / "plugins").rglob("*.py"))
                       if "tests" not in p.parts}}


def test_modules_and_functions_are_small():
    long_modules = {n: len(p.read_text().splitlines()) for n, p in SIZED.items()}
    long_modules = {n: k for n, k in long_modules.items() if k > MAX_MODULE_LINES}
    long_functions = []
    for name, path in SIZED.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = node.end_lineno - node.lineno + 1
                if size > MAX_FUNCTION_LINES:
                    long_functions.append(f"{name}.{node.name}: {size} lines")
    assert not long_modules, f"modules over {MAX_MODULE_LINES} lines: {long_modules}"
    assert not long_functions, f"functions over {MAX_FUNCTION_LINES} lines: {long_functions}"


def test_every_folder_says_what_it_owns_and_may_import():
    for init in PACKAGE.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        if init.parent != PACKAGE:
            assert "Owns" in doc and "May import" in doc, f"{init}: say what the folder owns and may import"


def test_design_doc_lists_every_module():
    design = (REPO_ROOT / "docs" / "design.md").read_text()
    missing = [str(p.relative_to(REPO_ROOT)) for p in MODULES.values() if str(p.relative_to(REPO_ROOT)) not in design]
    assert not missing, f"docs/design.md's module table lacks: {missing}"


def test_every_package_folder_is_packaged():
    listed = set(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {module_name(p) for p in PACKAGE.rglob("__init__.py")}
    assert folders <= listed, f"missing from [tool.setuptools] packages: {sorted(folders - listed)}"


def test_import_linter_config_names_the_same_layers():
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = config["contracts"]
    ours = [" | ".join(sorted(entries)) for entries in reversed(LAYERS[:-1])]  # top first, facade excluded
    theirs = [" | ".join(sorted(e.strip() for e in layer.split("|"))) for layer in contract["layers"]]
    assert theirs == ours


def test_lint_imports_keeps_the_contract():
    """import-linter (the dev extra) reads [tool.importlinter]; run as `lint-imports` would be."""
    command = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    result = subprocess.run([sys.executable, "-c", command], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 kept, 0 broken" in result.stdout


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch):
    """The graph builder itself: a function-level upward import in a copy of a module is found."""
    copy = tmp_path / "mmgen" / "errors.py"
    copy.parent.mkdir()
    copy.write_text(MODULES["mmgen.errors"].read_text() + "\n\ndef f():\n    from mmgen.cli.app import app\n")
    monkeypatch.setitem(MODULES, "mmgen.errors", copy)
    (imp,) = [i for i in imports_of("mmgen.errors") if i.target == "mmgen.cli.app"]
    assert imp.in_function and layer_of(imp.target) > layer_of(imp.source)
