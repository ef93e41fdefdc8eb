"""The recipe files plugins register (``register_recipes``), each with the plugin and package it came from.

A recipe's name is its file name without ``.toml``. When two plugins ship the same name, both
are listed under the qualified name ``PLUGIN:NAME`` (``mmgen.recipe.catalog`` then refuses the
bare name as ambiguous). Recipes in the current folder are not listed: they are ordinary files.
"""

from __future__ import annotations

import logging
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mmgen.plugin.discovery import PluginInfo, PluginSet, current

log = logging.getLogger("mmgen.plugin")


@dataclass(frozen=True)
class ShippedRecipe:
    """A recipe file a plugin registered, and where it came from."""

    name: str  # what `mmgen recipes cp` takes: the file stem, or PLUGIN:STEM when two plugins ship that stem
    stem: str
    path: Path
    plugin: str
    package: str
    version: str

    @property
    def qualified(self) -> str:
        return f"{self.plugin}:{self.stem}"

    def description(self) -> str:
        """The recipe's ``description`` key, or why it cannot be read (listing must not stop at one bad file)."""
        try:
            value = tomllib.loads(self.path.read_text()).get("description", "")
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            return f"(unreadable: {' '.join(str(exc).split())})"
        return value if isinstance(value, str) else repr(value)


def _files(path: Path) -> list[Path] | None:
    """A registered path -> its recipe files (a folder's ``*.toml``, not recursive); None if it is missing."""
    if path.is_dir():
        return sorted(path.glob("*.toml"))
    return [path] if path.is_file() else None


def collect(plugins: PluginSet | None = None) -> tuple[list[ShippedRecipe], list[PluginInfo]]:
    """Every shipped recipe, sorted by name, and the plugins whose ``register_recipes`` failed.

    A registered path that does not exist, or a stem one plugin registers twice from two
    folders, is a warning naming the plugin's package; listing goes on without it. One file
    registered twice (a folder and a file in it, or a symlink to another plugin's recipe) is
    listed once, under the plugin that registered the real file rather than a link to it.
    """
    plugins = plugins or current()
    by_file: dict[Path, ShippedRecipe] = {}
    failures: list[PluginInfo] = []
    for call in plugins.calls("register_recipes"):
        paths: list[Path] = []

        def register(path, _paths=paths) -> None:
            _paths.append(Path(path))

        failure = call.run(register)
        if failure is not None:
            failures.append(failure)
            continue
        for path in paths:
            files = _files(path)
            if files is None:
                log.warning("mmgen: plugin %r (%s) registers recipes at %s, which does not exist; skipped",
                            call.plugin, call.package, path)
                continue
            for file in files:
                real, kept = file.resolve(), by_file.get(file.resolve())
                if kept is not None and (file.is_symlink() or not kept.path.is_symlink()):
                    continue  # the same file again: the real file's registration wins over a link's
                twin = next((r for r in by_file.values() if r.plugin == call.plugin and r.stem == file.stem
                             and r.path.resolve() != real), None)
                if twin is not None:
                    log.warning("mmgen: plugin %r (%s) registers two recipes named %r: %s and %s; keeping the first",
                                call.plugin, call.package, file.stem, twin.path, file)
                    continue
                by_file[real] = ShippedRecipe(file.stem, file.stem, file, call.plugin, call.package, call.version)
    counts = Counter(r.stem for r in by_file.values())
    named = [r if counts[r.stem] == 1 else _renamed(r, r.qualified) for r in by_file.values()]
    return sorted(named, key=lambda r: r.name), failures


def _renamed(recipe: ShippedRecipe, name: str) -> ShippedRecipe:
    return ShippedRecipe(name, recipe.stem, recipe.path, recipe.plugin, recipe.package, recipe.version)


def shipped_recipes(plugins: PluginSet | None = None) -> list[ShippedRecipe]:
    return collect(plugins)[0]
