"""What ``mmgen plugins`` shows: every plugin, its package and version, its status and what it registers.

Entry points that failed to load or are disabled (``MMGEN_PLUGINS``, ``MMGEN_PLUGINS_BLOCK``)
are listed too, with the reason, so a missing kind can be traced to its package.

Knowing what a plugin registers means importing it, and mmgen's own plugins import torch, which
takes seconds. So ``listing()`` keeps a clean listing (every plugin loaded or disabled, no
warning) in ``$MMGEN_CACHE/plugins.json`` (default ``~/.cache/mmgen``) under discovery's
fingerprint and the state of the recipe folders the plugins registered; while neither changes,
``mmgen plugins`` and ``mmgen recipes ls`` import no plugin. A listing with a failure or a
warning is never kept, so it is worked out, and its warnings shown, every time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mmgen.plugin.discovery import PluginSet, current, fingerprint, plugin_infos
from mmgen.plugin.recipes import ShippedRecipe, collect
from mmgen.plugin.registry import CATEGORIES, SINGULAR, build_registry, get_registry

CACHE_FORMAT = 1
log = logging.getLogger("mmgen.plugin")


@dataclass
class PluginRow:
    plugin: str
    package: str
    version: str
    status: str = "loaded"  # loaded, failed or disabled
    reason: str = ""
    registers: dict[str, list[str]] = field(default_factory=dict)  # "modality" -> kinds, "recipe" -> names

    def to_dict(self) -> dict:
        return {"plugin": self.plugin, "package": self.package, "version": self.version, "status": self.status,
                "reason": self.reason, "registers": self.registers}


def plugin_rows(plugins: PluginSet | None = None) -> list[PluginRow]:
    """One row per plugin, sorted by package then plugin name (see ``rows_and_recipes``)."""
    return rows_and_recipes(plugins)[0]


def rows_and_recipes(plugins: PluginSet | None = None) -> tuple[list[PluginRow], list[ShippedRecipe]]:
    """One row per plugin, sorted by package then plugin name, and the recipes the plugins ship.

    A hook that raised marks its plugin ``failed`` while what its other hooks registered stays
    listed; an entry point that did not load gets its own row even when another package's
    entry point of the same name did.
    """
    registry = get_registry() if plugins is None else build_registry(plugins)
    plugins = plugins or current()
    loaded = {name: PluginRow(name, *plugins.distribution_of(plugin))  # entry points and ad-hoc plugins alike
              for name, plugin in plugins.pm.list_name_plugin() if plugin is not None}
    idle = [PluginRow(info.name, info.package, info.version, info.status, info.reason)
            for info in plugin_infos(plugins) if info.status != "loaded"]
    recipes, recipe_failures = collect(plugins)
    for failure in [*registry.unavailable, *recipe_failures]:
        row = loaded.get(failure.name)
        if row is not None and row.package == failure.package:  # a hook that raised
            row.status = "failed"
            row.reason = "; ".join(filter(None, [row.reason, failure.reason]))
    for category in CATEGORIES:
        for reg in getattr(registry, category).values():
            loaded[reg.plugin].registers.setdefault(SINGULAR[category], []).append(reg.kind)
    for recipe in recipes:
        loaded[recipe.plugin].registers.setdefault("recipe", []).append(recipe.name)
    return sorted([*loaded.values(), *idle], key=lambda r: (r.package, r.plugin)), recipes


@dataclass
class Listing:
    """What ``mmgen plugins`` and ``mmgen recipes ls`` show; ``cached`` when no plugin was imported for it."""

    rows: list[PluginRow]
    recipes: list[ShippedRecipe]
    cached: bool = False


def listing() -> Listing:
    """The process's plugins and their recipes: from the cache when it is still true, else worked out
    (importing every plugin) and, when clean, kept. Plugins already loaded, or registered by hand
    (tests), are always listed as they are."""
    plugins = current()
    key = fingerprint() if not plugins.loaded and not plugins.pm.get_plugins() else None
    kept = _read_cache(key) if key is not None else None
    if kept is not None:
        return kept
    with _noted_warnings() as noted:
        rows, recipes = rows_and_recipes()
        folders = _recipe_paths(plugins)
    if key is not None and folders is not None and not noted and all(r.status != "failed" for r in rows):
        _write_cache(key, rows, recipes, folders)
    return Listing(rows, recipes)


def cache_file() -> Path:
    return Path(os.environ.get("MMGEN_CACHE") or Path.home() / ".cache" / "mmgen") / "plugins.json"


@contextlib.contextmanager
def _noted_warnings() -> Iterator[list]:
    """Notes the warnings discovery logs or a plugin's import warns (a moved name), and still shows them."""
    noted: list = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = noted.append
    log.addHandler(handler)
    caught: list = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            yield noted
    finally:
        log.removeHandler(handler)
        for w in caught:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno, w.file, w.line)
        noted.extend(caught)


def _recipe_paths(plugins: PluginSet) -> list[str] | None:
    """The paths plugins register recipes at (asked again: ``collect`` keeps only the files it found)."""
    paths: list[str] = []
    for call in plugins.calls("register_recipes"):
        if call.run(lambda path, _paths=paths: _paths.append(str(path))) is not None:
            return None
    return paths


def _mtime(path: str) -> int | None:
    """A folder's mtime changes when a file in it is added, removed or renamed."""
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _read_cache(key: str) -> Listing | None:
    try:
        data = json.loads(cache_file().read_text())
        if data["format"] != CACHE_FORMAT or data["key"] != key:
            return None
        if any(_mtime(path) != mtime for path, mtime in data["watch"].items()):
            return None
        rows = [PluginRow(**row) for row in data["rows"]]
        recipes = [ShippedRecipe(r["name"], r["stem"], Path(r["path"]), r["plugin"], r["package"], r["version"])
                   for r in data["recipes"]]
    except (OSError, ValueError, KeyError, TypeError):  # none yet, unreadable or from another version: work it out
        return None
    return Listing(rows, recipes, cached=True)


def _write_cache(key: str, rows: list[PluginRow], recipes: list[ShippedRecipe], folders: list[str]) -> None:
    data = {"format": CACHE_FORMAT, "key": key, "watch": {path: _mtime(path) for path in folders},
            "rows": [row.to_dict() for row in rows],
            "recipes": [{**asdict(r), "path": str(r.path)} for r in recipes]}
    path, tmp = cache_file(), None
    try:  # atomically: another mmgen may be reading it
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".plugins-", suffix=".json")
        with os.fdopen(fd, "w") as file:
            file.write(json.dumps(data))
        os.replace(tmp, path)
    except OSError:  # a read-only home: list without a cache
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
