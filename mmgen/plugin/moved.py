"""Names an earlier release showed that have moved: one table (``MOVED``) serves the deprecated
aliases, the explanation ``mmgen plugins`` gives for a plugin that failed on an mmgen import, and
the "API changes" list in docs/plugin-hooks.md (``api_changes_markdown``; a test keeps them equal).

A plugin written from an earlier release's docs imports what they showed (``from mmgen.plugins
import get_registry``); the plugin API is a contract, so such a name keeps working for at least one
minor version, as an alias that warns once and names the new home. A FutureWarning, not a
DeprecationWarning: Python shows DeprecationWarning only for code run as ``__main__``, and a plugin
is imported by discovery inside ``mmgen train``, so neither its author nor its user would see one.

The old modules exist only as aliases, made by a finder at the end of ``sys.meta_path`` (a real
module of the same name always wins); importing this module installs it, and ``import mmgen``
imports it through discovery. New homes are looked up by name when an old name is first used, by
which time ``mmgen`` is imported, so this module imports nothing of mmgen above it.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.abc
import importlib.machinery
import linecache
import re
import runpy
import sys
import traceback
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import Any

ORIGIN = "alias of moved mmgen names (mmgen/plugin/moved.py)"
LAYERED = "0.1.0"  # the version string when the layered packages (commit 8c92ea9) replaced the flat modules
# mmgen's flat modules before the layered packages that are no package today; what a plugin imported
# from one of them without an entry in MOVED was internal and has no alias.
FLAT_MODULES = frozenset({
    "build", "checkpoint", "crossmodal", "dataset", "evaluate", "fusion", "gaussian", "hookspecs", "judge",
    "likelihood", "mixture", "modality", "pairing", "pictures", "plugin_report", "plugins", "progress",
    "recipe_catalog", "recipe_reference", "rundir", "sample_output", "scaffold", "trainer",
})


@dataclass(frozen=True)
class Moved:
    """One name a release showed, and where it lives now."""

    old: str  # dotted: a module's attribute, or a whole module when ``module`` is true
    new: str  # dotted: where the same object lives now
    since: str  # the version that moved it
    shown_in: str  # where a release showed it: commits and files, so the entry can be checked
    module: bool = False  # a whole module moved (its attributes are forwarded)
    removed_in: str = ""  # the version that dropped the alias; kept here so the failure is still explained

    @property
    def old_module(self) -> str:
        return self.old if self.module else self.old.rpartition(".")[0]

    @property
    def kept_through(self) -> str:
        """The contract: an alias works, warning, at least through the minor version after the move."""
        major, minor = self.since.split(".")[:2]
        return f"{major}.{int(minor) + 1}"


MOVED: tuple[Moved, ...] = (
    Moved("mmgen.plugins.get_registry", "mmgen.get_registry", LAYERED,
          "818af68..3651b07: docs/writing-plugins.md, mmgen/templates/plugin/test_plugin.py.tmpl"),
    Moved("mmgen.dataset.Split", "mmgen.Split", LAYERED,
          "818af68..3651b07: mmgen/templates/plugin/module.py.tmpl; "
          "54a0836..3651b07: plugins/mmgen-text/src/mmgen_text/dataset.py"),
    Moved("mmgen.dataset.SPLITS", "mmgen.SPLITS", LAYERED,
          "54a0836..3651b07: plugins/mmgen-text/src/mmgen_text/dataset.py"),
    Moved("mmgen.mixture.GaussianMixture", "mmgen.GaussianMixture", LAYERED,
          "8483431..3651b07: docs/design.md; plugins/moe.py and plugins/mopoe.py"),
    Moved("mmgen.gaussian.DiagonalGaussian", "mmgen.DiagonalGaussian", LAYERED,
          "b9252c9..3651b07: plugins/poe.py, the fusion a fusion plugin starts from"),
    Moved("mmgen.build.build_dataset", "mmgen.recipe.build_dataset", LAYERED,
          "54a0836..3651b07: plugins/mmgen-text/tests/test_text_training.py"),
    Moved("mmgen.build.build_model", "mmgen.recipe.build_model", LAYERED,
          "54a0836..3651b07: plugins/mmgen-text/tests/test_text_training.py"),
    Moved("mmgen.recipe_reference", "mmgen.recipe.reference", LAYERED,
          "fca1d44..3651b07: docs/recipe-reference.md (python -m mmgen.recipe_reference)", module=True),
    # Model families became plugins (0.2.0): the MVAE left the model layer for mmgen_plugins.families.
    Moved("mmgen.model.MultimodalVAE", "mmgen_plugins.families.mvae.MultimodalVAE", "0.2.0",
          "8c92ea9..f268db9: docs/design.md, tests/support/linear_gaussian.py, benchmarks/reference_loop.py"),
    Moved("mmgen.model.ModelOutput", "mmgen.ModelOutput", "0.2.0", "8c92ea9..f268db9: mmgen/model/__init__.py"),
    Moved("mmgen.model.elbo", "mmgen_plugins.families.mvae.model.elbo", "0.2.0",
          "8c92ea9..f268db9: mmgen/model/__init__.py, tests/model/test_vae.py"),
    Moved("mmgen.model.vae", "mmgen_plugins.families.mvae.model", "0.2.0",
          "8c92ea9..f268db9: docs/design.md (the module table)", module=True),
)

_warned: set[str] = set()  # old names that have warned in this process


def entry(old: str) -> Moved | None:
    return next((m for m in MOVED if m.old == old), None)


def aliased(module: str) -> list[Moved]:
    """The live aliases an old module serves (a removed one is only explained)."""
    return [m for m in MOVED if m.old_module == module and not m.removed_in]


def resolve(dotted: str) -> Any:
    """The object a dotted name names: a module's attribute, or else a module."""
    parent, _, attr = dotted.rpartition(".")
    owner = importlib.import_module(parent)
    if hasattr(owner, attr):
        return getattr(owner, attr)
    return importlib.import_module(dotted)


def warn_once(moved: Moved, stacklevel: int) -> None:
    """One warning per old name and process; ``stacklevel`` points it at the line that used the name
    (the warnings module skips importlib's own frames)."""
    if moved.old in _warned:
        return
    _warned.add(moved.old)
    warnings.warn(f"{moved.old} moved to {moved.new} in mmgen {moved.since}; use {moved.new} "
                  f"(this alias is kept at least through mmgen {moved.kept_through}; "
                  "docs/plugin-hooks.md, API changes)", FutureWarning, stacklevel=stacklevel + 1)


def _forward(module: str, attr: str) -> Any:
    """An old module's ``__getattr__``: the moved object, after the warning."""
    whole = next((m for m in aliased(module) if m.module), None)
    moved = whole or entry(f"{module}.{attr}")
    if moved is None or moved.removed_in:
        names = ", ".join(m.old.rpartition(".")[2] for m in aliased(module))
        raise AttributeError(f"module {module!r} has no attribute {attr!r} (the names that moved from it "
                             f"and still resolve there: {names or 'none'}; docs/plugin-hooks.md, API changes)")
    if whole is None:
        warn_once(moved, stacklevel=2)
        return resolve(moved.new)
    return getattr(resolve(whole.new), attr)


def module_getattr(module: str) -> Any:
    """A ``__getattr__`` for a real module some of whose names moved away (their rows in MOVED):
    ``__getattr__ = module_getattr(__name__)``. A partial, so that it adds no frame the warning must skip."""
    return functools.partial(_forward, module)


class AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes the old modules of MOVED, each a module whose ``__getattr__`` forwards to the new homes."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        return importlib.machinery.ModuleSpec(fullname, self, origin=ORIGIN) if aliased(fullname) else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # the default module

    def exec_module(self, module: ModuleType) -> None:
        name = module.__name__
        module.__doc__ = f"Deprecated alias of names that moved from {name} (docs/plugin-hooks.md, API changes)."
        module.__getattr__ = module_getattr(name)  # type: ignore[method-assign]
        module.__all__ = [m.old.rpartition(".")[2] for m in aliased(name) if not m.module]
        whole = next((m for m in aliased(name) if m.module), None)
        if whole is not None:  # a whole module: the import itself is the use
            warn_once(whole, stacklevel=2)

    def get_code(self, fullname: str) -> Any:
        """What ``python -m OLD`` runs: the new module as ``__main__``, after the warning."""
        return compile(f"import mmgen.plugin.moved as m\nm.run_as_main({fullname!r})\n", ORIGIN, "exec")


def run_as_main(old: str) -> None:
    moved = next(m for m in aliased(old) if m.module)
    warn_once(moved, stacklevel=2)
    runpy.run_module(moved.new, run_name="__main__", alter_sys=True)


def install() -> None:
    """Put the finder last on ``sys.meta_path``, once (a reload of this module must not add a second)."""
    if not any(type(f).__name__ == "AliasFinder" and type(f).__module__ == __name__ for f in sys.meta_path):
        sys.meta_path.append(AliasFinder())


install()


def _public_names() -> tuple[str, ...]:
    return tuple(getattr(sys.modules.get("mmgen"), "__all__", ()))


def describe(name: str, version: str) -> str:
    """Why an imported mmgen name is not there: moved (and when), public elsewhere, or never public."""
    moved = entry(name)
    if moved is not None:
        alias = f"its alias was removed in {moved.removed_in}" if moved.removed_in else "a deprecated alias exists"
        return f"{name}, which moved to {moved.new} in {moved.since} ({alias})"
    last = name.rpartition(".")[2]
    if last in _public_names():
        return f"{name}, which is not there in mmgen {version}: use mmgen.{last}"
    module = name if any(m.old_module == name for m in MOVED) else name.rpartition(".")[0]
    kept = [m for m in MOVED if m.old_module == module]
    if kept:
        moves = ", ".join(f"{m.old} to {m.new} in {m.since}" for m in kept)
        return f"{name}, which is not there: of the old module {module} only these moved: {moves}"
    parts = name.split(".")
    if len(parts) > 1 and parts[1] in FLAT_MODULES:
        return (f"{name}, from mmgen.{parts[1]}, an internal module removed in {LAYERED}; it is not part "
                "of the plugin API (the names in mmgen.__all__, docs/plugin-hooks.md)")
    return f"{name}, which is not part of mmgen {version}'s plugin API (the names in mmgen.__all__)"


def _import_at(frame: traceback.FrameSummary) -> ast.Import | ast.ImportFrom | None:
    """The import statement a traceback frame stopped in, read from its source file."""
    source = "".join(linecache.getlines(frame.filename))
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    line = frame.lineno or 0
    return next((n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)
                 and n.lineno <= line <= (n.end_lineno or n.lineno)), None)


def _imported(exc: ImportError) -> tuple[list[str], str]:
    """The mmgen names the failing statement imported, and where it is (``file:line``, '' if unknown)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<frozen")]
    node = _import_at(frames[-1]) if frames else None
    failing = exc.name or ""
    missing = re.match(r"cannot import name '(\w+)'", str(exc))
    if isinstance(node, ast.ImportFrom) and node.module and not node.level:
        names = [f"{node.module}.{a.name}" for a in node.names]
    elif isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:  # no source to read (python -c, a zip): the message still names what was missing
        return [f"{failing}.{missing[1]}" if missing else failing], ""
    names = [n for n in names if (n == failing or n.startswith(failing + "."))
             and (missing is None or n.endswith("." + missing[1]))]
    return names or [failing], f"{frames[-1].filename}:{frames[-1].lineno}"


def explain(exc: BaseException, version: str) -> str | None:
    """One sentence for an ImportError of an mmgen name (None for any other error): what the plugin
    imported and where that name went, instead of a bare ModuleNotFoundError."""
    if not isinstance(exc, ImportError) or not (exc.name == "mmgen" or (exc.name or "").startswith("mmgen.")):
        return None
    names, where = _imported(exc)
    return f"{where or 'it'} imports " + "; and ".join(describe(n, version) for n in names)


def api_changes_markdown() -> str:
    """The "API changes" section of docs/plugin-hooks.md, from MOVED."""
    lines = [
        "## API changes", "",
        "Names an earlier release showed that have moved. Each keeps working as an alias that warns",
        "once, with a `FutureWarning` naming its new home (a `DeprecationWarning` would stay hidden: Python",
        "shows those only for code run as `__main__`, and discovery imports a plugin inside `mmgen train`).",
        "An alias is kept at least through the minor version after the move; once one is removed,",
        "`mmgen plugins` still names the new home of a name a plugin failed to import. This list is",
        "the table in `mmgen/plugin/moved.py` (`api_changes_markdown()`; a test keeps the two equal).", "",
    ]
    for m in MOVED:
        state = f"alias removed in {m.removed_in}" if m.removed_in else f"alias kept at least through {m.kept_through}"
        kind = " (module)" if m.module else ""
        lines.append(f"- `{m.old}`{kind} → `{m.new}`: moved in {m.since}, {state}; shown in {m.shown_in}")
    return "\n".join(lines) + "\n"
