"""``mmgen new-plugin NAME [--model]``: writes a working plugin package from the templates.

By default (``templates/plugin/``) the package registers a Gaussian vector modality, a toy dataset to
train it on and a recipe pairing it with mmgen's ``label`` modality. With ``--model``
(``templates/model/``) it registers a model family, a toy image dataset and a recipe training the
family on mmgen's ``image`` and ``label`` modalities. Either comes with tests, so that ``pip install -e``
and ``pytest`` work the moment it is written. Templates are ``string.Template`` files (``$name``).
"""

from __future__ import annotations

import keyword
import re
import secrets
import shutil
import string
from dataclasses import asdict, dataclass
from importlib.resources import files
from pathlib import Path

from mmgen.errors import MmgenError
from mmgen.plugin.discovery import current, mmgen_version
from mmgen.plugin.registry import CATEGORIES, get_registry

NAME = re.compile(r"^[a-z][a-z0-9]*(?:[_-][a-z0-9]+)*$")
TEMPLATES = files("mmgen.plugin") / "templates"


@dataclass(frozen=True)
class PluginNames:
    """Every name the scaffold derives from NAME (``wave`` -> ``mmgen-wave``, ``mmgen_wave``, ``Wave``...)."""

    kind: str  # the modality (or model family) kind and entry-point name: wave
    dataset: str  # the toy dataset's kind: wave_clusters (wave_toy for a model family)
    recipe: str  # wave_mvae
    package: str  # the import package: mmgen_wave
    dist: str  # the distribution and folder: mmgen-wave
    Class: str  # the modality class: Wave (WaveConfig, WaveClusters, WaveClustersConfig beside it)
    mmgen_min: str  # the mmgen release it was written against, the lower bound of its dependency


def plugin_names(name: str, model: bool = False) -> PluginNames:
    """Derive the names from NAME: lowercase letters and digits in words joined by ``_`` or ``-``."""
    bare = name.strip().removeprefix("mmgen-").removeprefix("mmgen_")
    if not NAME.match(bare):
        raise MmgenError(
            f"plugin name {name!r} is not usable: use lowercase letters and digits, words joined by _ or - "
            "(for example: wave, eeg_signal)"
        )
    kind = bare.replace("-", "_")
    if keyword.iskeyword(kind) or len(kind) > 40:
        raise MmgenError(f"plugin name {name!r} is not usable: a Python keyword, or longer than 40 characters")
    release = re.match(r"\d+(\.\d+)*", mmgen_version())
    return PluginNames(
        kind=kind,
        dataset=f"{kind}_toy" if model else f"{kind}_clusters",
        recipe=f"{kind}_toy" if model else f"{kind}_mvae",
        package=f"mmgen_{kind}",
        dist=f"mmgen-{kind.replace('_', '-')}",
        Class="".join(part.capitalize() for part in kind.split("_")),
        mmgen_min=release.group(0) if release else "0.1",
    )


# template file -> path in the new package (formatted with the names), per template folder
LAYOUT = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "module.py.tmpl": "src/{package}/__init__.py",
    "recipe.toml.tmpl": "src/{package}/recipes/{recipe}.toml",
}
TESTS = {"plugin": "test_plugin.py.tmpl", "model": "test_model.py.tmpl"}


def render(names: PluginNames, model: bool = False) -> dict[str, str]:
    """``{relative path: text}`` of every file of the new package (a model family's with ``model``)."""
    folder = "model" if model else "plugin"
    mapping = asdict(names)
    layout = {**LAYOUT, TESTS[folder]: "tests/test_{kind}.py"}
    return {
        dest.format(**mapping): string.Template((TEMPLATES / folder / template).read_text()).substitute(mapping)
        for template, dest in layout.items()
    }


def _check_free(names: PluginNames) -> None:
    """The package's kinds and entry-point name must be free among the installed plugins, whichever
    package has them: a kind registered twice makes both plugins fail ("registered twice"), and a taken
    entry-point name keeps the new plugin from loading. A kind of another category is refused too, so
    that ``kind = "poe"`` keeps one meaning in a recipe."""
    registry = get_registry()
    for kind in (names.kind, names.dataset):
        for category in CATEGORIES:
            reg = getattr(registry, category).get(kind)
            if reg is not None:
                raise MmgenError(f"the kind {kind!r} is already registered by plugin {reg.plugin!r} ({reg.package}); "
                                 "choose another plugin name")
    taken = next((p for p in current().found if p.name == names.kind), None)
    if taken is not None:
        raise MmgenError(f"the plugin name {names.kind!r} is already taken by package {taken.package}; "
                         "choose another plugin name")


def new_plugin(name: str, dest: Path, model: bool = False) -> tuple[PluginNames, Path]:
    """Write the package into ``dest/<dist>``; refuses an existing folder and leaves nothing half-written.
    ``model``: a model family's package instead of a modality's."""
    names = plugin_names(name, model)
    if not dest.is_dir():
        raise MmgenError(f"--dir {dest}: no such folder")
    target = dest / names.dist
    if target.exists():
        raise MmgenError(f"{target} already exists; not overwriting it", hint="choose another NAME or --dir")
    _check_free(names)
    staging = dest / f".{names.dist}-{secrets.token_hex(4)}.partial"
    try:
        staging.mkdir()  # beside the target (same file system) and with the user's umask, unlike mkdtemp
        for rel, text in render(names, model).items():
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        staging.rename(target)  # same folder, so atomic: the package appears whole or not at all
    except OSError as exc:  # a folder that cannot be written, a full disk
        raise MmgenError(f"--dir {dest}: cannot write {target} there: {exc.strerror or exc}; nothing was written",
                         hint="choose a folder you can write to")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return names, target
