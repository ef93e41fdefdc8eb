"""Plugin discovery: reads the ``mmgen`` entry-point group and builds the registry of kinds.

Built-in modalities, fusions and datasets arrive through this very path; the core never
imports them by name.
"""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass, field

import pluggy

from mmgen import hookspecs
from mmgen.errors import PluginError

ENTRY_POINT_GROUP = "mmgen"
CATEGORIES = ("modalities", "fusions", "datasets")
SINGULAR = {"modalities": "modality", "fusions": "fusion", "datasets": "dataset"}


@dataclass(frozen=True)
class Registration:
    """One registered kind and where it came from."""

    kind: str
    cls: type
    plugin: str  # the pluggy plugin name (entry-point name, or the name given to pm.register)
    package: str  # the distribution that ships it, or "(not installed)" for ad-hoc plugins
    version: str


@dataclass
class Registry:
    """Registered kinds per category: ``registry.modalities["image"].cls``."""

    modalities: dict[str, Registration] = field(default_factory=dict)
    fusions: dict[str, Registration] = field(default_factory=dict)
    datasets: dict[str, Registration] = field(default_factory=dict)

    def lookup(self, category: str, kind: str) -> type:
        table: dict[str, Registration] = getattr(self, category)
        if kind not in table:
            known = ", ".join(sorted(table)) or "none"
            raise PluginError(f"unknown {SINGULAR[category]} kind {kind!r} (registered: {known})")
        return table[kind].cls


pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
pm.add_hookspecs(hookspecs)
_loaded = False
_registry: Registry | None = None


def load_plugins() -> pluggy.PluginManager:
    """Load every installed plugin once (idempotent)."""
    global _loaded
    if not _loaded:
        _loaded = True
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        except Exception as exc:  # a broken plugin must name itself, not crash mmgen silently
            raise PluginError(f"a plugin in entry-point group {ENTRY_POINT_GROUP!r} failed to load: {exc}")
    return pm


def _distribution_of(plugin: object) -> tuple[str, str]:
    for loaded, dist in pm.list_plugin_distinfo():
        if loaded is plugin:
            return dist.project_name if hasattr(dist, "project_name") else dist.metadata["name"], dist.version
    return "(not installed)", ""


def build_registry() -> Registry:
    """Ask every plugin to register its kinds; a duplicate kind is an error naming both packages."""
    load_plugins()
    registry = Registry()
    for category in CATEGORIES:
        hook = getattr(pm.hook, f"register_{category}")
        for impl in reversed(hook.get_hookimpls()):  # registration order
            plugin_name = impl.plugin_name
            package, version = _distribution_of(impl.plugin)
            table: dict[str, Registration] = getattr(registry, category)

            def register(kind: str, cls: type, _table=table, _plugin=plugin_name, _pkg=package, _ver=version,
                         _what=SINGULAR[category]):
                if kind in _table:
                    other = _table[kind]
                    raise PluginError(
                        f"{_what} kind {kind!r} is registered twice: by plugin {other.plugin!r} "
                        f"({other.package}) and by plugin {_plugin!r} ({_pkg})"
                    )
                _table[kind] = Registration(kind, cls, _plugin, _pkg, _ver)

            available = {"register": register}
            impl.function(*[available[name] for name in impl.argnames])
    return registry


def get_registry(refresh: bool = False) -> Registry:
    """The registry of all installed plugins, built once and cached (``refresh`` rebuilds it)."""
    global _registry
    if _registry is None or refresh:
        _registry = build_registry()
    return _registry


def plugin_versions() -> dict[str, dict[str, str]]:
    """``{plugin name: {"package": ..., "version": ...}}`` for the run directory's versions file."""
    load_plugins()
    out = {}
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        package, version = _distribution_of(plugin)
        out[name] = {"package": package, "version": version}
    return out


def mmgen_version() -> str:
    try:
        return importlib.metadata.version("mmgen")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        return os.environ.get("MMGEN_VERSION", "0+unknown")
