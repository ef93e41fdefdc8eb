"""The registry of kinds: what every loaded plugin registered, per category, and from which package.

``get_registry()`` asks every plugin's ``register_*`` hooks once and caches the answer; a kind
registered twice is an error naming both packages.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from mmgen.errors import PluginError
from mmgen.plugin.discovery import PluginInfo, PluginSet, current

CATEGORIES = ("models", "modalities", "fusions", "datasets", "loggers")
SINGULAR = {"models": "model", "modalities": "modality", "fusions": "fusion", "datasets": "dataset",
            "loggers": "logger"}
# The class a kind of each category must derive from, by home module and name. Not imported here: they
# import torch, and listing plugins (``mmgen plugins``) must not. A class derived from one was defined
# after its home was imported, so a home not in sys.modules means a class that does not derive from it.
BASES = {"models": ("mmgen.plugin.model", "Model"), "modalities": ("mmgen.plugin.modality", "Modality"),
         "fusions": ("mmgen.plugin.fusion", "Fusion"), "datasets": ("mmgen.plugin.dataset", "Dataset"),
         "loggers": ("mmgen.plugin.logger", "Logger")}


def derives(cls: object, category: str) -> bool:
    """Whether ``cls`` is a class derived from ``category``'s base (``BASES``), without importing the base."""
    home, name = BASES[category]
    base = getattr(sys.modules.get(home), name, None)
    return isinstance(cls, type) and base is not None and issubclass(cls, base)


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

    models: dict[str, Registration] = field(default_factory=dict)
    modalities: dict[str, Registration] = field(default_factory=dict)
    fusions: dict[str, Registration] = field(default_factory=dict)
    datasets: dict[str, Registration] = field(default_factory=dict)
    loggers: dict[str, Registration] = field(default_factory=dict)
    # Plugins that failed or are disabled: an unknown kind may be theirs, so lookup names them.
    unavailable: list[PluginInfo] = field(default_factory=list)

    def lookup(self, category: str, kind: str) -> type:
        table: dict[str, Registration] = getattr(self, category)
        if kind not in table:
            known = ", ".join(sorted(table)) or "none"
            message = f"unknown {SINGULAR[category]} kind {kind!r} (registered: {known})"
            if self.unavailable:
                message += "; it may come from a plugin that did not load: " + "; ".join(
                    p.explain() for p in self.unavailable
                )
            raise PluginError(message)
        return table[kind].cls


def build_registry(plugins: PluginSet | None = None) -> Registry:
    """Ask every plugin to register its kinds; a duplicate kind is an error naming both packages."""
    plugins = plugins or current()
    plugins.load()
    registry = Registry(unavailable=[p for p in plugins.found if p.status != "loaded"])
    for category in CATEGORIES:
        table: dict[str, Registration] = getattr(registry, category)
        what, base = SINGULAR[category], BASES[category][1]
        for call in plugins.calls(f"register_{category}"):
            pending: list[Registration] = []

            def register(kind: str, cls: type, _table=table, _call=call, _pending=pending, _what=what,
                         _base=base, _category=category) -> None:
                if not isinstance(kind, str) or not kind:
                    raise TypeError(f"a {_what} kind must be a non-empty string, got {kind!r}")
                if not derives(cls, _category):
                    raise TypeError(f"{_what} {kind!r} is {cls!r}, not a subclass of mmgen.{_base}")
                other = _table.get(kind) or next((r for r in _pending if r.kind == kind), None)
                if other is not None:
                    raise PluginError(
                        f"{_what} kind {kind!r} is registered twice: by plugin {other.plugin!r} "
                        f"({other.package}) and by plugin {_call.plugin!r} ({_call.package})"
                    )
                _pending.append(Registration(kind, cls, _call.plugin, _call.package, _call.version))

            failure = call.run(register)
            if failure is not None:  # a hook that raised registers nothing, so no half-registered plugin
                registry.unavailable.append(failure)
                continue
            table.update({reg.kind: reg for reg in pending})
    return registry


_registry: Registry | None = None


def get_registry(refresh: bool = False) -> Registry:
    """The registry of all installed plugins, built once and cached (``refresh`` rebuilds it)."""
    global _registry
    if _registry is None or refresh:
        _registry = build_registry()
    return _registry
