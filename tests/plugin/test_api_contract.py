"""The plugin API is a contract: every name an earlier release showed still imports, as the same object,
with one FutureWarning naming its new home; a plugin that fails on an mmgen name is told where it went.

The aliases are imported in a fresh interpreter with Python's default warning filters, because they
warn once per process (this one may have used them already) and because a warning hidden by the
default filters is no warning to a plugin's author.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from mmgen.plugin import moved
from mmgen.plugin.discovery import plugin_infos
from mmgen.plugin.registry import build_registry
from mmgen.recipe.reference import reference_markdown
from tests.plugin import test_discovery
from tests.support import REPO_ROOT

install = test_discovery.install  # fixtures: a fake installed distribution, a fresh discovery
fresh = test_discovery.fresh

# Imports each live alias as a plugin would, twice from two places, and prints what happened as JSON.
PROBE = r"""
import importlib, json, warnings
from mmgen.plugin.moved import MOVED

def run(statement, where):
    namespace = {}
    with warnings.catch_warnings(record=True) as caught:  # the default filters stay as they are
        exec(compile(statement, where, "exec"), namespace)
    return namespace["value"], [(w.category.__name__, str(w.message), w.filename) for w in caught]

out = {}
for m in MOVED:
    if m.removed_in:
        continue
    parent, _, attr = m.old.rpartition(".")
    statement = f"import {m.old} as value" if m.module else f"from {parent} import {attr} as value"
    value, first = run(statement, "<plugin>")
    _, second = run(statement, "<other plugin>")
    if m.module:
        new = importlib.import_module(m.new)
        public = [n for n in vars(new) if not n.startswith("_")]
        same = bool(public) and all(getattr(value, n) is getattr(new, n) for n in public)
    else:
        home, _, name = m.new.rpartition(".")
        same = value is getattr(importlib.import_module(home), name)
    out[m.old] = {"same": same, "first": first, "second": second}
print(json.dumps(out))
"""


def _fresh_python(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "PYTHONDEVMODE")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_table_holds_the_name_of_the_issue():
    """818af68's docs/writing-plugins.md showed ``from mmgen.plugins import get_registry``."""
    assert moved.entry("mmgen.plugins.get_registry").new == "mmgen.get_registry"
    assert len({m.old for m in moved.MOVED}) == len(moved.MOVED) >= 8


def test_every_old_name_is_the_new_object_and_warns_once_naming_its_home():
    result = _fresh_python("-c", PROBE)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(seen) == {m.old for m in moved.MOVED if not m.removed_in}
    for m in moved.MOVED:
        got = seen[m.old]
        assert got["same"], f"{m.old} is not the object {m.new} names"
        assert len(got["first"]) == 1, f"{m.old}: {got['first']}"
        category, message, filename = got["first"][0]
        assert category == "FutureWarning" and m.old in message and f"use {m.new} " in message
        assert filename == "<plugin>", f"{m.old}: the warning points at {filename}, not the importing line"
        assert got["second"] == [], f"{m.old} warned again: {got['second']}"


def test_python_m_of_an_old_module_runs_the_new_one():
    """docs/recipe-reference.md said ``python -m mmgen.recipe_reference > docs/recipe-reference.md``."""
    result = _fresh_python("-m", "mmgen.recipe_reference")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == reference_markdown()  # the same plugins are installed in both processes
    assert "FutureWarning: mmgen.recipe_reference moved to mmgen.recipe.reference" in result.stderr


def test_docs_list_the_table():
    text = (REPO_ROOT / "docs" / "plugin-hooks.md").read_text()
    start = text.index("\n## API changes\n") + 1
    end = text.find("\n## ", start)
    section = text[start:] if end < 0 else text[start:end + 1]
    assert section == moved.api_changes_markdown(), "docs/plugin-hooks.md: paste moved.api_changes_markdown()"
    assert all(f"`{m.old}`" in section for m in moved.MOVED)


def test_an_alias_names_what_it_still_has():
    import mmgen.dataset  # an alias module made by the finder

    with pytest.raises(AttributeError, match=r"no attribute 'Nope' .*SPLITS"):
        mmgen.dataset.Nope  # noqa: B018


def _reason(plugins, name: str) -> str:
    (info,) = [p for p in plugin_infos(plugins) if p.name == name]
    assert info.status == "failed", info
    return info.reason


def test_a_plugin_on_an_old_name_loads_and_is_told_the_new_home(install, fresh, monkeypatch):
    monkeypatch.setattr(moved, "_warned", set())
    plugin = test_discovery.GOOD.format(cls="Old", kind="old_kind")
    install("mmgen-old", "1.0", {"old": "from mmgen.plugins import get_registry\n" + plugin})
    with pytest.warns(FutureWarning, match=r"mmgen\.plugins\.get_registry moved to mmgen\.get_registry"):
        assert {p.name: p.status for p in plugin_infos(fresh)}["old"] == "loaded"


def test_mmgen_plugins_names_a_moved_name_whose_alias_is_gone(install, fresh, monkeypatch, cli):
    """The alias of the issue's name, as a later release without it: the line names its new home."""
    gone = dataclasses.replace(moved.entry("mmgen.plugins.get_registry"), removed_in="0.9.0")
    monkeypatch.setattr(moved, "MOVED", tuple(gone if m.old == gone.old else m for m in moved.MOVED))
    monkeypatch.delitem(sys.modules, "mmgen.plugins", raising=False)  # an earlier test may have made it
    install("mmgen-x", "1.0", {"x": "import mmgen\n\nfrom mmgen.plugins import get_registry\n"})
    rows = {row["plugin"]: row for row in json.loads(cli("plugins", "--json").stdout)}
    reason = rows["x"]["reason"]
    assert rows["x"]["status"] == "failed"
    assert ".py:3 imports mmgen.plugins.get_registry, which moved to mmgen.get_registry in 0.1.0 " \
           "(its alias was removed in 0.9.0)" in reason, reason
    assert "ModuleNotFoundError: No module named 'mmgen.plugins'" in reason
    assert "failed:" in cli("plugins").stdout


def test_a_plugin_on_an_internal_or_misplaced_name_is_told_what_it_was(install, fresh):
    install("mmgen-y", "1.0", {
        "internal": "from mmgen.trainer import Trainer\n",
        "misplaced": "from mmgen.config import Split\n",
        "leftover": "from mmgen.gaussian import kl_to_prior\n",
        "lazy": """
            import mmgen

            @mmgen.hookimpl
            def register_modalities(register):
                from mmgen.checkpoint import save
        """,
        "elsewhere": "import no_such_module_anywhere\n",
    })
    reason = _reason(fresh, "internal")
    assert "imports mmgen.trainer.Trainer, from mmgen.trainer, an internal module removed in 0.1.0; it is " \
           "not part of the plugin API" in reason, reason
    assert "imports mmgen.config.Split, which is not there in mmgen" in _reason(fresh, "misplaced")
    assert _reason(fresh, "misplaced").endswith("use mmgen.Split")
    assert "imports mmgen.gaussian.kl_to_prior, which is not there: of the old module mmgen.gaussian only " \
           "these moved: mmgen.gaussian.DiagonalGaussian to mmgen.DiagonalGaussian in 0.1.0" \
           in _reason(fresh, "leftover")
    lazy = next(p.reason for p in build_registry(fresh).unavailable if p.name == "lazy")
    assert "register_modalities raised ModuleNotFoundError" in lazy and "mmgen.checkpoint.save" in lazy, lazy
    assert "imports" not in _reason(fresh, "elsewhere")  # not about mmgen: the error as it was


def test_a_command_failing_on_a_moved_name_says_where_it_went_not_internal_error(capsys):
    import typer

    from mmgen.cli.app import reports_errors

    @reports_errors
    def command():
        exec("from mmgen.plugins import no_such_name", {})  # a plugin's import of a name that moved

    with pytest.raises(typer.Exit) as info:
        command()
    line = capsys.readouterr().err.strip()
    assert info.value.exit_code == 1 and "internal error" not in line
    assert line.startswith("error: ImportError: ") and "mmgen.plugins" in line and "API changes" in line
