"""``mmgen new-plugin``: names, refusals, the rendered package, and the end-to-end path a plugin author walks.

The end-to-end test installs a freshly scaffolded plugin into this environment with pip
(offline: no index, no build isolation, no dependencies), checks that ``mmgen plugins`` lists
it, runs the plugin's own tests, trains its recipe through ``mmgen recipes cp`` and ``mmgen
train``, and uninstalls it whatever happens.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest

from mmgen import MmgenError
from mmgen.plugin import scaffold as scaffold_module
from mmgen.plugin.registry import get_registry
from mmgen.plugin.scaffold import LAYOUT, TEMPLATES, TESTS, plugin_names
from mmgen.testing import registered_plugin
from tests.support import REPO_ROOT

ROOT = REPO_ROOT


def subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMGEN_PLUGINS")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    return env


def run(*args, cwd: Path, timeout: int = 180) -> subprocess.CompletedProcess:
    """A command in a fresh interpreter, as a user would run it (cwd outside the repository)."""
    return subprocess.run([str(a) for a in args], cwd=cwd, env=subprocess_env(), capture_output=True, text=True,
                          timeout=timeout)


def mmgen_cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    return run(sys.executable, "-m", "mmgen", *args, cwd=cwd)


# ---- names ---------------------------------------------------------------------------------------
def test_names_derive_from_the_plugin_name():
    names = plugin_names("mmgen-eeg-signal")  # the mmgen- prefix is optional
    assert (names.kind, names.dataset, names.recipe) == ("eeg_signal", "eeg_signal_clusters", "eeg_signal_mvae")
    assert (names.package, names.dist, names.Class) == ("mmgen_eeg_signal", "mmgen-eeg-signal", "EegSignal")
    assert plugin_names("wave").kind == "wave" and plugin_names("wave2").Class == "Wave2"


@pytest.mark.parametrize("bad", ["Wave", "1wave", "wa ve", "wave!", "wave__x", "wave-", "mmgen-", "import", "a" * 41])
def test_a_bad_name_is_one_line(cli, cli_error, bad, tmp_path):
    line = cli_error(cli("new-plugin", bad, "--dir", tmp_path))
    assert f"plugin name {bad!r} is not usable" in line
    assert list(tmp_path.iterdir()) == []


# ---- the rendered package ------------------------------------------------------------------------
def test_new_plugin_writes_the_package(cli, tmp_path):
    result = cli("new-plugin", "wave", "--dir", tmp_path)
    assert result.exit_code == 0, result.output
    target = tmp_path / "mmgen-wave"
    assert result.stdout.strip() == str(target)
    assert "pip install -e" in result.stderr  # the next steps
    files = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert files == sorted(["pyproject.toml", "README.md", "src/mmgen_wave/__init__.py",
                            "src/mmgen_wave/recipes/wave_mvae.toml", "tests/test_wave.py"])
    assert [p.name for p in tmp_path.iterdir()] == ["mmgen-wave"]  # no staging folder left behind
    for path in target.rglob("*"):
        if path.is_file():
            assert "$" not in path.read_text(), f"an unfilled placeholder in {path}"
            if path.suffix == ".py":
                compile(path.read_text(), str(path), "exec")
    project = tomllib.loads((target / "pyproject.toml").read_text())
    assert project["project"]["name"] == "mmgen-wave"
    assert project["project"]["entry-points"]["mmgen"] == {"wave": "mmgen_wave"}
    assert project["project"]["dependencies"][0].startswith("mmgen>=")
    recipe = tomllib.loads((target / "src/mmgen_wave/recipes/wave_mvae.toml").read_text())
    assert recipe["name"] == "wave_mvae" and recipe["modalities"]["wave"]["kind"] == "wave"
    assert recipe["data"]["kind"] == "wave_clusters"


def test_the_rendered_package_is_ruff_clean(tmp_path):
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (it comes with mmgen[dev])")
    _, target = scaffold_module.new_plugin("wave", tmp_path)
    result = run(ruff, "check", "--no-cache", ".", cwd=target)
    assert result.returncode == 0, result.stdout + result.stderr


def test_new_plugin_refuses_an_existing_folder(cli, cli_error, tmp_path):
    (tmp_path / "mmgen-wave").mkdir()
    (tmp_path / "mmgen-wave" / "mine.py").write_text("# mine\n")
    line = cli_error(cli("new-plugin", "wave", "--dir", tmp_path))
    assert f"{tmp_path / 'mmgen-wave'} already exists; not overwriting it" in line
    assert [p.name for p in (tmp_path / "mmgen-wave").iterdir()] == ["mine.py"]


def test_new_plugin_refuses_a_missing_dir(cli, cli_error, tmp_path):
    assert "no such folder" in cli_error(cli("new-plugin", "wave", "--dir", tmp_path / "nope"))


def test_new_plugin_refuses_a_kind_another_plugin_registers(cli, cli_error, tmp_path):
    line = cli_error(cli("new-plugin", "image", "--dir", tmp_path))
    assert "the kind 'image' is already registered by plugin 'image' (mmgen)" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("name", "line"), [
    ("poe", "the kind 'poe' is already registered by plugin 'poe' (mmgen)"),  # a fusion's: one meaning per kind
    ("jsonl", "the kind 'jsonl' is already registered by plugin 'loggers' (mmgen)"),
    ("recipes", "the plugin name 'recipes' is already taken by package mmgen"),  # an entry point's name
])
def test_new_plugin_refuses_every_installed_kind_and_plugin_name(cli, cli_error, tmp_path, name, line):
    result = cli("new-plugin", name, "--dir", tmp_path)
    assert cli_error(result) == f"error: {line}; choose another plugin name"
    assert result.exit_code == 1 and list(tmp_path.iterdir()) == []


@pytest.mark.skipif(importlib.util.find_spec("mmgen_text") is None, reason="the mmgen-text plugin is not installed")
def test_new_plugin_refuses_a_kind_of_the_installed_package_it_would_be_named_like(cli, cli_error, tmp_path):
    """``text`` would be mmgen-text, the installed text plugin's package: refused like ``image``."""
    result = cli("new-plugin", "text", "--dir", tmp_path)
    assert cli_error(result) == ("error: the kind 'text' is already registered by plugin 'text' (mmgen-text); "
                                 "choose another plugin name")
    assert result.exit_code == 1 and list(tmp_path.iterdir()) == []


def test_new_plugin_into_a_folder_that_cannot_be_written_is_one_line(cli, cli_error):
    try:
        os.mkdir("/proc/.mmgen-probe")
    except OSError as exc:  # what the kernel says here: ENOENT as root, EACCES otherwise
        why = exc.strerror
    result = cli("new-plugin", "wave", "--dir", "/proc")
    assert cli_error(result) == (f"error: --dir /proc: cannot write /proc/mmgen-wave there: {why}; nothing was "
                                 "written (hint: choose a folder you can write to)")
    assert result.exit_code == 1


@pytest.mark.parametrize("folder", ["", " "])
def test_new_plugin_with_an_empty_dir_is_refused(cli, cli_error, workdir, folder):
    result = cli("new-plugin", "wave", "--dir", folder)
    assert cli_error(result) == ("error: --dir is empty: name a folder "
                                 "(hint: leave --dir out to write into the working folder)")
    assert result.exit_code == 1 and list(workdir.iterdir()) == []


def test_a_failure_while_writing_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(names, model=False):
        return {"README.md": "ok", "src/x/__init__.py": None}  # writing None fails half-way

    monkeypatch.setattr(scaffold_module, "render", broken)
    with pytest.raises(TypeError):
        scaffold_module.new_plugin("wave", tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("folder", ["plugin", "model"])
def test_the_templates_are_shipped_as_package_data(folder):
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["mmgen.plugin"]
    templates = sorted(p.name for p in Path(str(TEMPLATES / folder)).iterdir() if p.is_file())
    assert sorted([*LAYOUT, TESTS[folder]]) == templates  # every template is rendered, and each has a template
    for name in templates:
        assert any(fnmatch(f"templates/{folder}/{name}", g) for g in globs), f"{name} would be missing from a wheel"


def test_the_rendered_plugin_registers_and_trains_without_installing(tmp_path, monkeypatch, cli):
    """The fast guard of the templates: import the module from its src folder and register it ad hoc."""
    _, target = scaffold_module.new_plugin("wave", tmp_path)
    monkeypatch.syspath_prepend(str(target / "src"))
    import mmgen_wave

    try:
        with registered_plugin("wave", mmgen_wave):
            registry = get_registry()
            assert registry.modalities["wave"].cls is mmgen_wave.Wave
            assert registry.datasets["wave_clusters"].cls is mmgen_wave.WaveClusters
            recipe = mmgen_wave.RECIPES / "wave_mvae.toml"
            result = cli("train", recipe, "train.epochs=1", "data.sizes=[200,100,100]", "--out", tmp_path / "run",
                         "--device", "cpu")
            assert result.exit_code == 0, result.output
            (row,) = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
            assert row["step"] == 2 and math.isfinite(row["val/loss"])  # two steps of 100
    finally:
        sys.modules.pop("mmgen_wave", None)


def test_new_plugin_model_writes_a_family_package(cli, tmp_path):
    result = cli("new-plugin", "fam", "--model", "--dir", tmp_path)
    assert result.exit_code == 0, result.output
    assert "wrote plugin mmgen-fam: model family 'fam', dataset 'fam_toy'" in " ".join(result.stderr.split())
    module = (tmp_path / "mmgen-fam" / "src" / "mmgen_fam" / "__init__.py").read_text()
    assert "class Fam(Model):" in module and 'register("fam", Fam)' in module
    assert (tmp_path / "mmgen-fam" / "tests" / "test_fam.py").is_file()


def test_new_plugin_model_refuses_a_family_kind_another_plugin_registers(cli, cli_error, tmp_path):
    line = cli_error(cli("new-plugin", "mvae", "--model", "--dir", tmp_path))
    assert "the kind 'mvae' is already registered by plugin 'mvae' (mmgen)" in line


def test_the_model_family_scaffold_registers_trains_samples_and_is_scored(tmp_path, monkeypatch, cli):
    """The fast guard of the model templates: the family and its dataset, registered ad hoc, go through
    train, sample and eval; the rendered package is ruff clean."""
    names, target = scaffold_module.new_plugin("fam", tmp_path, model=True)
    assert (names.kind, names.dataset, names.recipe) == ("fam", "fam_toy", "fam_toy")
    ruff = shutil.which("ruff")
    if ruff is not None:
        linted = run(ruff, "check", "--no-cache", ".", cwd=target)
        assert linted.returncode == 0, linted.stdout + linted.stderr
    monkeypatch.syspath_prepend(str(target / "src"))
    import mmgen_fam

    try:
        with registered_plugin("fam", mmgen_fam):
            assert get_registry().models["fam"].cls is mmgen_fam.Fam
            recipe, run_dir = mmgen_fam.RECIPES / "fam_toy.toml", tmp_path / "run"
            result = cli("train", recipe, "train.epochs=1", "data.sizes=[200,100,100]", "--out", run_dir,
                         "--device", "cpu")
            assert result.exit_code == 0, result.output
            assert json.loads((run_dir / "recipe.json").read_text())["model"]["alpha"] == 1.0
            result = cli("sample", run_dir, "--given", "label=1", "-n", "3", "--out", tmp_path / "ones.png")
            assert result.exit_code == 0, result.output
            result = cli("eval", run_dir, "-K", "5", "--limit", "40", "--per-class", "3", "--no-pictures")
            assert result.exit_code == 0, result.output
            assert json.loads((run_dir / "eval.json").read_text())["log p(image)"]["value"] < 0
    finally:
        sys.modules.pop("mmgen_fam", None)


# ---- end to end: the way a plugin author walks it --------------------------------------------------
@pytest.mark.parametrize("model", [False, True], ids=["modality", "model-family"])
def test_scaffold_install_list_test_train_uninstall(tmp_path, model):
    name = f"e2e{'m' if model else ''}{os.getpid()}"  # unique, so two test runs never share a distribution
    names, target = scaffold_module.new_plugin(name, tmp_path, model=model)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    try:
        installed = run(*pip, "install", "--no-index", "--no-build-isolation", "--no-deps", "-e", target, cwd=tmp_path)
        assert installed.returncode == 0, installed.stdout + installed.stderr

        listed = mmgen_cli("plugins", "--json", cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        row = next(r for r in json.loads(listed.stdout) if r["plugin"] == names.kind)
        assert (row["package"], row["version"], row["status"]) == (names.dist, "0.1.0", "loaded")
        kind = "model" if model else "modality"
        assert row["registers"] == {kind: [names.kind], "dataset": [names.dataset], "recipe": [names.recipe]}

        own_tests = run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=target)
        assert own_tests.returncode == 0, own_tests.stdout[-3000:]
        written = (target / "tests" / f"test_{names.kind}.py").read_text().count("\ndef test_")
        assert re.search(rf"\b{written} passed", own_tests.stdout) and written >= 3  # all ran, none skipped

        copied = mmgen_cli("recipes", "cp", names.recipe, ".", cwd=tmp_path)
        assert copied.returncode == 0, copied.stderr
        trained = mmgen_cli("train", f"{names.recipe}.toml", "train.epochs=1", "--out", "run", "--device", "cpu",
                            cwd=tmp_path)
        assert trained.returncode == 0, trained.stderr[-3000:]
        (row,) = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
        assert row["epoch"] == 1 and row["step"] == 20  # 2000 examples in batches of 100
    finally:
        removed = run(*pip, "uninstall", "-y", names.dist, cwd=tmp_path)
    assert removed.returncode == 0, removed.stderr
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution(names.dist)


def test_scaffold_module_errors_are_mmgen_errors(tmp_path):
    with pytest.raises(MmgenError, match="not usable"):
        scaffold_module.new_plugin("Bad Name", tmp_path)
