"""Start-up: `mmgen --help`, `mmgen plugins` and `mmgen recipes ls` import no torch (it alone takes a
second or more), so they start in well under 1.5 s (benchmarks/startup.py measures it). The plugin
list is cached (mmgen.plugin.report.listing) while what it depends on stays the same; the facades
import a name on first use and still offer every one."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import mmgen
import mmgen.plugin
from mmgen.plugin import discovery
from mmgen.plugin import registry as registry_module
from mmgen.plugin.discovery import PluginSet, fingerprint
from mmgen.plugin.report import cache_file, listing
from tests.plugin import test_discovery
from tests.support import REPO_ROOT

install = test_discovery.install  # fixture: a fake installed distribution


def mmgen_in_a_fresh_python(*args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """``python -X importtime -m mmgen ARGS``: the result and the top-level packages it imported."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "mmgen", *args], cwd=REPO_ROOT,
                            capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, timeout=120)
    imported = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}
    assert "mmgen" in imported, result.stderr[-2000:]
    return result, imported


def test_help_imports_no_torch():
    result, imported = mmgen_in_a_fresh_python("--help")
    assert result.returncode == 0 and "recipes" in result.stdout
    assert not imported & {"torch", "torchvision", "numpy"}


def warm(*args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """``mmgen ARGS`` once the plugin list is cached. A source file of mmgen or a plugin edited between
    two runs (by an editor, while the tests run) rightly invalidates the list: then a third run counts."""
    for _ in range(3):
        result, imported = mmgen_in_a_fresh_python(*args)
        assert result.returncode == 0, result.stderr[-2000:]
        if "torch" not in imported:
            break
    return result, imported


def test_plugins_and_recipes_ls_import_no_torch_once_the_list_is_cached(cli):
    first, _ = mmgen_in_a_fresh_python("plugins", "--json")  # works the list out (imports torch) and keeps it
    assert first.returncode == 0, first.stderr[-2000:]
    assert cache_file().is_file()
    again, imported = warm("plugins", "--json")
    assert "torch" not in imported
    assert json.loads(again.stdout) == json.loads(first.stdout) == json.loads(cli("plugins", "--json").stdout)
    recipes, imported = warm("recipes", "ls", "--json")
    assert "torch" not in imported
    assert json.loads(recipes.stdout) == json.loads(cli("recipes", "ls", "--json").stdout)  # as listed live


SHIPS = """
import mmgen

@mmgen.hookimpl
def register_recipes(register):
    register({folder!r})
"""


@pytest.fixture
def fresh_set(monkeypatch):
    """``fresh_set()`` makes a new, unloaded PluginSet the process's plugins, as in a new process."""
    monkeypatch.delenv("MMGEN_PLUGINS", raising=False)
    monkeypatch.delenv("MMGEN_PLUGINS_BLOCK", raising=False)

    def make() -> PluginSet:
        plugins = PluginSet()
        monkeypatch.setattr(discovery, "_plugins", plugins)
        monkeypatch.setattr(registry_module, "_registry", None)
        return plugins

    return make


def test_the_list_is_kept_until_a_recipe_folder_changes(install, fresh_set, tmp_path):
    folder = tmp_path / "shipped"
    folder.mkdir()
    (folder / "one.toml").write_text('description = "one"\n')
    install("mmgen-ships", "1.0", {"ships": SHIPS.format(folder=str(folder))})
    fresh_set()
    worked_out = listing()
    assert not worked_out.cached and "one" in [r.name for r in worked_out.recipes]
    fresh_set()
    kept = listing()
    assert kept.cached and kept.rows == worked_out.rows and kept.recipes == worked_out.recipes
    (folder / "two.toml").write_text('description = "two"\n')
    os.utime(folder, ns=(os.stat(folder).st_atime_ns, os.stat(folder).st_mtime_ns + 10**9))
    fresh_set()
    changed = listing()
    assert not changed.cached and {"one", "two"} <= {r.name for r in changed.recipes}
    ships = next(row for row in changed.rows if row.plugin == "ships")
    assert ships.registers == {"recipe": ["one", "two"]}


def test_a_list_with_a_failure_is_never_kept(install, fresh_set):
    install("mmgen-broken", "2.0", {"broken": "raise ImportError('needs libfoo')"})
    for _ in range(2):
        fresh_set()
        result = listing()
        assert not result.cached
        assert next(row for row in result.rows if row.plugin == "broken").status == "failed"


def test_plugins_loaded_in_the_process_are_listed_as_they_are(fresh_set):
    """Tests (and anything that registered a plugin by hand) never see a cached list."""
    plugins = fresh_set()
    plugins.load()
    assert not listing().cached


def test_the_fingerprint_follows_the_plugin_sources_and_the_variables(install, monkeypatch, tmp_path):
    names = install("mmgen-fp", "1.0", {"fp": "x = 1\n"})
    before = fingerprint()
    assert before is not None and before == fingerprint()
    source = tmp_path / f"{names['fp']}.py"
    source.write_text("x = 22\n")
    os.utime(source, ns=(0, os.stat(source).st_mtime_ns + 10**9))
    edited = fingerprint()
    assert edited != before
    monkeypatch.setenv("MMGEN_PLUGINS_BLOCK", "fp")
    assert fingerprint() != edited


def test_import_mmgen_imports_no_torch_and_still_installs_the_moved_names():
    code = ("import sys, mmgen; "
            "print('torch' in sys.modules, any(type(f).__name__ == 'AliasFinder' for f in sys.meta_path))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["False", "True"], result.stderr[-2000:]


@pytest.mark.parametrize("facade", [mmgen, mmgen.plugin], ids=lambda m: m.__name__)
def test_each_facade_offers_every_name_and_its_type_checking_block_names_the_same(facade):
    for name in facade.__all__:
        assert getattr(facade, name) is not None, name
    assert set(facade.__all__) <= set(dir(facade))
    tree = ast.parse(Path(facade.__file__).read_text())
    block = next(node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING")
    declared = {alias.asname or alias.name for node in ast.walk(block) if isinstance(node, ast.ImportFrom)
                for alias in node.names}
    assert declared == set(facade._HOMES)
    assert set(facade._HOMES) <= set(facade.__all__)
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        facade.nope  # noqa: B018
