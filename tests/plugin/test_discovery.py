"""Discovery through entry points: broken plugins warn and are skipped, MMGEN_PLUGINS selects, clashes name packages.

Each test installs fake distributions (a ``*.dist-info`` folder with ``entry_points.txt`` and
a module beside it) on ``sys.path`` and reruns discovery in a fresh PluginSet, so the real
entry-point machinery runs without pip; the process's own plugins are restored afterwards.
"""

from __future__ import annotations

import itertools
import json
import logging
import sys
import textwrap

import pytest

from mmgen import PluginError
from mmgen.plugin import discovery
from mmgen.plugin import registry as registry_module
from mmgen.plugin.discovery import PluginSet, plugin_infos, plugin_versions
from mmgen.plugin.registry import build_registry

_ids = itertools.count()

GOOD = """
import mmgen
from mmgen_plugins.label import CategoricalLabel

class {cls}(CategoricalLabel):
    pass

@mmgen.hookimpl
def register_modalities(register):
    register("{kind}", {cls})
"""


@pytest.fixture
def install(tmp_path, monkeypatch):
    """``install(package, version, {entry point: module source})``: a fake installed distribution.

    Module names get a unique suffix (sys.modules outlives a test); returns {entry point: module name}.
    """
    monkeypatch.syspath_prepend(str(tmp_path))
    made = []

    def make(package: str, version: str, modules: dict[str, str]) -> dict[str, str]:
        info = tmp_path / f"{package.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
        names = {ep: f"fake_{ep}_{next(_ids)}" for ep in modules}
        (info / "entry_points.txt").write_text("[mmgen]\n" + "".join(f"{ep} = {m}\n" for ep, m in names.items()))
        for ep, source in modules.items():
            (tmp_path / f"{names[ep]}.py").write_text(textwrap.dedent(source))
        made.extend(names.values())
        return names

    yield make
    for name in made:
        sys.modules.pop(name, None)


@pytest.fixture
def fresh(monkeypatch):
    """A fresh PluginSet as the process's plugins (reads os.environ when it loads); the old one comes back."""
    plugins = PluginSet()
    monkeypatch.setattr(discovery, "_plugins", plugins)
    monkeypatch.setattr(registry_module, "_registry", None)
    monkeypatch.delenv("MMGEN_PLUGINS", raising=False)
    monkeypatch.delenv("MMGEN_PLUGINS_BLOCK", raising=False)
    return plugins


def status(plugins) -> dict[str, str]:
    return {info.name: info.status for info in plugin_infos(plugins)}


def test_a_broken_plugin_warns_naming_its_package_and_the_others_load(install, fresh, caplog):
    install("mmgen-good", "1.2", {"good": GOOD.format(cls="Good", kind="good_kind")})
    install("mmgen-broken", "2.0", {"broken": "raise ImportError('needs libfoo')"})
    with caplog.at_level(logging.WARNING, logger="mmgen.plugin"):
        registry = build_registry(fresh)
    assert status(fresh)["broken"] == "failed" and status(fresh)["good"] == "loaded"
    (warning,) = [r.getMessage() for r in caplog.records if "broken" in r.getMessage()]
    assert "plugin 'broken' (mmgen-broken 2.0) failed to load" in warning and "needs libfoo" in warning
    good = registry.modalities["good_kind"]
    assert (good.plugin, good.package, good.version) == ("good", "mmgen-good", "1.2")
    assert "image" in registry.modalities  # mmgen's own plugins are unaffected
    # A kind nobody registered may be the broken plugin's: the error says that it did not load.
    with pytest.raises(PluginError, match=r"unknown modality kind 'words'.*plugin 'broken' \(mmgen-broken 2.0\) "
                                          r"failed to load: .*ImportError: needs libfoo"):
        registry.lookup("modalities", "words")
    assert "broken" not in plugin_versions() and plugin_versions()["good"]["package"] == "mmgen-good"


def test_mmgen_plugins_lists_the_failure_and_exits_zero(install, fresh, cli):
    install("mmgen-broken", "2.0", {"broken": "import no_such_module_anywhere"})
    result = cli("plugins", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["plugin"]: row for row in json.loads(result.stdout)}
    assert rows["broken"]["status"] == "failed" and rows["broken"]["package"] == "mmgen-broken"
    assert "No module named 'no_such_module_anywhere'" in rows["broken"]["reason"]
    assert rows["image"]["registers"] == {"modality": ["image"]} and rows["image"]["status"] == "loaded"
    table = cli("plugins").stdout
    assert "failed:" in table and "mmgen-broken" in table


def test_mmgen_plugins_allows_only_the_named_plugins(install, fresh, monkeypatch):
    install("mmgen-good", "1.0", {"good": GOOD.format(cls="Good", kind="good_kind")})
    monkeypatch.setenv("MMGEN_PLUGINS", "mmgen-good, label")  # a package name and an entry-point name
    registry = build_registry(fresh)
    assert set(registry.modalities) == {"good_kind", "label"}
    assert status(fresh)["image"] == "disabled"
    with pytest.raises(PluginError, match=r"plugin 'image' \(mmgen [^)]*\) is disabled: not named in MMGEN_PLUGINS"):
        registry.lookup("modalities", "image")


def test_mmgen_plugins_by_package_loads_all_of_its_entry_points(install, fresh, monkeypatch):
    install("mmgen-good", "1.0", {"good": GOOD.format(cls="Good", kind="good_kind")})
    monkeypatch.setenv("MMGEN_PLUGINS", "MMGEN")  # names compare like package names
    registry = build_registry(fresh)
    assert {"image", "label"} <= set(registry.modalities) and "poe" in registry.fusions
    assert status(fresh)["good"] == "disabled" and "good_kind" not in registry.modalities


def test_an_empty_mmgen_plugins_loads_nothing(fresh, monkeypatch):
    monkeypatch.setenv("MMGEN_PLUGINS", "")
    assert not build_registry(fresh).modalities
    assert set(status(fresh).values()) == {"disabled"}


def test_block_skips_an_entry_point_or_a_whole_package(install, fresh, monkeypatch):
    install("mmgen-good", "1.0", {"good": GOOD.format(cls="Good", kind="good_kind"),
                                  "other": GOOD.format(cls="Other", kind="other_kind")})
    monkeypatch.setenv("MMGEN_PLUGINS_BLOCK", "other,image")
    registry = build_registry(fresh)
    assert "good_kind" in registry.modalities and "label" in registry.modalities
    assert "other_kind" not in registry.modalities and "image" not in registry.modalities
    assert "named in MMGEN_PLUGINS_BLOCK" in next(p.reason for p in plugin_infos(fresh) if p.name == "other")

    package_blocked = PluginSet()
    monkeypatch.setenv("MMGEN_PLUGINS_BLOCK", "mmgen_good")
    assert not {"good_kind", "other_kind"} & set(build_registry(package_blocked).modalities)


def test_a_name_that_matches_no_plugin_is_a_warning(fresh, monkeypatch, caplog):
    monkeypatch.setenv("MMGEN_PLUGINS", "image,imgae")
    with caplog.at_level(logging.WARNING, logger="mmgen.plugin"):
        fresh.load()
    assert any("MMGEN_PLUGINS names imgae, which is no installed plugin" in r.getMessage() for r in caplog.records)


def test_a_misspelt_hook_is_a_warning(install, fresh, caplog):
    install("mmgen-typo", "1.0", {"typo": """
        import mmgen

        @mmgen.hookimpl
        def register_modality(register):
            pass
    """})
    with caplog.at_level(logging.WARNING, logger="mmgen.plugin"):
        fresh.load()
    assert status(fresh)["typo"] == "loaded"
    assert any("marks register_modality with @hookimpl, which is no mmgen hook" in r.getMessage()
               for r in caplog.records)


def test_a_hook_that_raises_or_registers_a_wrong_class_is_skipped(install, fresh, caplog):
    install("mmgen-half", "1.0", {"half": """
        import mmgen

        @mmgen.hookimpl
        def register_modalities(register):
            register("half_kind", dict)  # not a Modality

        @mmgen.hookimpl
        def register_fusions(register):
            raise RuntimeError("fusion table missing")
    """})
    with caplog.at_level(logging.WARNING, logger="mmgen.plugin"):
        registry = build_registry(fresh)
    assert "half_kind" not in registry.modalities and "image" in registry.modalities
    reasons = [p.reason for p in registry.unavailable if p.name == "half"]
    assert any("register_modalities raised TypeError: modality 'half_kind' is <class 'dict'>, not a subclass of "
               "mmgen.Modality" in r for r in reasons), reasons
    assert any("register_fusions raised RuntimeError: fusion table missing" in r for r in reasons), reasons
    assert sum("mmgen-half" in r.getMessage() for r in caplog.records) == 2


def test_an_entry_point_name_taken_by_another_package_fails_naming_it(install, fresh):
    install("mmgen-first", "1.0", {"same": GOOD.format(cls="First", kind="first_kind")})
    install("mmgen-second", "1.0", {"same": GOOD.format(cls="Second", kind="second_kind")})
    infos = [p for p in plugin_infos(fresh) if p.name == "same"]
    assert sorted(p.status for p in infos) == ["failed", "loaded"]
    failed = next(p for p in infos if p.status == "failed")
    loaded = next(p for p in infos if p.status == "loaded")
    assert f"already taken by package {loaded.package}" in failed.reason and failed.package != loaded.package


def test_a_kind_two_packages_register_is_an_error_naming_both(install, fresh):
    install("mmgen-first", "1.0", {"first": GOOD.format(cls="First", kind="shared_kind")})
    install("mmgen-second", "1.0", {"second": GOOD.format(cls="Second", kind="shared_kind")})
    with pytest.raises(PluginError, match="'shared_kind' is registered twice") as info:
        build_registry(fresh)
    assert "(mmgen-first)" in str(info.value) and "(mmgen-second)" in str(info.value)


def test_a_recipe_naming_a_kind_of_a_broken_plugin_says_it_did_not_load(install, fresh, cli, cli_error, tmp_path):
    install("mmgen-words", "0.3", {"words": "import torchtext_is_not_installed"})
    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "r"\n[modalities.label]\nkind = "words"\n[data]\nkind = "mnist"\n')
    line = cli_error(cli("recipes", "validate", recipe))
    assert "modalities.label.kind: unknown modality kind 'words'" in line
    assert "plugin 'words' (mmgen-words 0.3) failed to load" in line and "torchtext_is_not_installed" in line


def test_mmgen_plugins_shows_both_packages_of_a_shared_entry_point_name(install, fresh, cli):
    install("mmgen-first", "1.0", {"same": GOOD.format(cls="First", kind="first_kind")})
    install("mmgen-second", "1.0", {"same": GOOD.format(cls="Second", kind="second_kind")})
    rows = [row for row in json.loads(cli("plugins", "--json").stdout) if row["plugin"] == "same"]
    assert sorted(row["package"] for row in rows) == ["mmgen-first", "mmgen-second"]
    assert sorted(row["status"] for row in rows) == ["failed", "loaded"]
