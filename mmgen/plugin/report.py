"""What ``mmgen plugins`` shows: every plugin, its package and version, its status and what it registers.

Entry points that failed to load or are disabled (``MMGEN_PLUGINS``, ``MMGEN_PLUGINS_BLOCK``)
are listed too, with the reason, so a missing kind can be traced to its package.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mmgen.plugin.discovery import PluginSet, current, plugin_infos
from mmgen.plugin.recipes import collect
from mmgen.plugin.registry import CATEGORIES, SINGULAR, build_registry, get_registry


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
    """One row per plugin, sorted by package then plugin name.

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
    return sorted([*loaded.values(), *idle], key=lambda r: (r.package, r.plugin))
