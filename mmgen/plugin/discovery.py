"""Plugin discovery: reads the ``mmgen`` entry-point group into a pluggy manager, one entry point at a time.

Built-in modalities, fusions and datasets arrive through this very path; the core never
imports them by name. Entry points load one at a time, so a plugin that fails to import is
reported (a warning naming its package) and skipped while the others keep working.
``MMGEN_PLUGINS`` and ``MMGEN_PLUGINS_BLOCK`` choose which plugins load (docs/writing-plugins.md).
A failure to import an mmgen name is explained from the table of moved names (mmgen.plugin.moved),
whose import also installs the deprecated aliases before any plugin loads.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import sys
import sysconfig
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import pluggy

from mmgen.errors import PluginError
from mmgen.plugin import hookspecs, moved

ENTRY_POINT_GROUP = "mmgen"
ALLOW_VAR = "MMGEN_PLUGINS"  # comma-separated entry-point or package names: only these load
BLOCK_VAR = "MMGEN_PLUGINS_BLOCK"  # comma-separated entry-point or package names: these never load
NOT_INSTALLED = "(not installed)"

log = logging.getLogger("mmgen.plugin")  # also the logger of mmgen.plugin.recipes


@dataclass(frozen=True)
class PluginInfo:
    """One entry point of the group and what became of it: ``loaded``, ``failed`` or ``disabled``."""

    name: str  # the entry-point name, also the pluggy plugin name
    package: str  # the distribution that declares it
    version: str
    status: str
    reason: str = ""  # why it failed or is disabled

    def explain(self) -> str:
        what = {"failed": "failed to load", "disabled": "is disabled"}.get(self.status, self.status)
        return f"plugin {self.name!r} ({self.package} {self.version}) {what}: {self.reason}"


@dataclass(frozen=True)
class HookCall:
    """One plugin's implementation of one hook, with the package it came from."""

    hook: str
    plugin: str
    package: str
    version: str
    function: Callable
    argnames: tuple[str, ...]

    def run(self, register: Callable) -> PluginInfo | None:
        """Call the implementation with ``register``; a failure comes back as a PluginInfo (and a warning)."""
        available = {"register": register}
        try:
            self.function(*[available[name] for name in self.argnames])
        except PluginError:
            raise  # a duplicate kind: an error by design, naming both packages
        except Exception as exc:
            info = PluginInfo(self.plugin, self.package, self.version, "failed", f"{self.hook} raised {_why(exc)}")
            log.warning("mmgen: %s; skipping what it registers there", info.explain())
            return info
        return None


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return f"{exc.__class__.__name__}: {text[:limit]}" if text else exc.__class__.__name__


def _why(exc: BaseException) -> str:
    """The error in one line, and for an mmgen name that moved or is not public, where it went: a bare
    ModuleNotFoundError does not tell a plugin's author what to import instead."""
    explained = moved.explain(exc, mmgen_version())
    return f"{_one_line(exc)}; {explained}" if explained else _one_line(exc)


def _norm(name: str) -> str:
    """Entry-point and package names compare like package names: case and -_. do not matter."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def _names(value: str) -> set[str]:
    return {_norm(n) for n in value.split(",") if n.strip()}


def _disabled_reason(name: str, package: str, environ: Mapping[str, str]) -> str:
    """'' when the plugin may load, else why not (the variable and its value)."""
    mine = {_norm(name), _norm(package)}
    allow = environ.get(ALLOW_VAR)
    if allow is not None and not mine & _names(allow):
        return f"not named in {ALLOW_VAR}={allow!r}"
    block = environ.get(BLOCK_VAR, "")
    if mine & _names(block):
        return f"named in {BLOCK_VAR}={block!r}"
    return ""


def _distribution(ep: importlib.metadata.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "(unknown package)", ""
    return dist.metadata["Name"] or "(unknown package)", dist.version or ""


def hook_names() -> list[str]:
    return sorted(n for n in dir(hookspecs) if n.startswith("register_"))


def _stray_hooks(module: object) -> list[str]:
    """Functions marked ``@mmgen.hookimpl`` whose name is no mmgen hook (a typo registers nothing)."""
    marker = f"{ENTRY_POINT_GROUP}_impl"  # the attribute pluggy's HookimplMarker sets
    return sorted(n for n in dir(module) if hasattr(getattr(module, n, None), marker) and n not in hook_names())


class PluginSet:
    """A pluggy manager plus what discovery found, kept together so that tests can build their own."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.found: list[PluginInfo] = []
        self.loaded = False

    def load(self, environ: Mapping[str, str] | None = None) -> pluggy.PluginManager:
        """Register every allowed entry point once (idempotent), each on its own."""
        if self.loaded:
            return self.pm
        self.loaded = True
        environ = os.environ if environ is None else environ
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            self.found.append(self._load_one(ep, environ))
        self._check_names(environ)
        return self.pm

    def _load_one(self, ep: importlib.metadata.EntryPoint, environ: Mapping[str, str]) -> PluginInfo:
        package, version = _distribution(ep)
        reason = _disabled_reason(ep.name, package, environ)
        if reason:
            return PluginInfo(ep.name, package, version, "disabled", reason)
        taken = next((p for p in self.found if p.name == ep.name and p.status == "loaded"), None)
        if taken is not None:
            reason = f"the entry-point name {ep.name!r} is already taken by package {taken.package}"
        else:
            try:
                module = ep.load()
                self.pm.register(module, name=ep.name)
            except Exception as exc:  # ImportError, a syntax error, a hook with wrong arguments...
                reason = f"{ep.value}: {_why(exc)}"
        if reason:
            info = PluginInfo(ep.name, package, version, "failed", reason)
            log.warning("mmgen: %s; the other plugins still work (%s=%s silences this)",
                        info.explain(), BLOCK_VAR, ep.name)
            return info
        stray = _stray_hooks(module)
        if stray:
            log.warning("mmgen: plugin %r (%s) marks %s with @hookimpl, which is no mmgen hook (hooks: %s)",
                        ep.name, package, ", ".join(stray), ", ".join(hook_names()))
        return PluginInfo(ep.name, package, version, "loaded")

    def _check_names(self, environ: Mapping[str, str]) -> None:
        """A name in the variables that matches no installed plugin is most likely a typo: say so."""
        installed = {_norm(p.name) for p in self.found} | {_norm(p.package) for p in self.found}
        for var in (ALLOW_VAR, BLOCK_VAR):
            unknown = sorted(_names(environ.get(var, "")) - installed)
            if unknown:
                log.warning("mmgen: %s names %s, which is no installed plugin or package (installed: %s)",
                            var, ", ".join(unknown), ", ".join(sorted({p.name for p in self.found})) or "none")

    def distribution_of(self, plugin: object) -> tuple[str, str]:
        """(package, version) of a registered plugin; ad-hoc ones (``pm.register``) are not installed."""
        name = self.pm.get_name(plugin)
        for info in self.found:
            if info.name == name and info.status == "loaded":
                return info.package, info.version
        return NOT_INSTALLED, ""

    def calls(self, hook: str) -> Iterator[HookCall]:
        """Each plugin's implementation of ``hook``, in registration order."""
        self.load()
        for impl in reversed(getattr(self.pm.hook, hook).get_hookimpls()):
            package, version = self.distribution_of(impl.plugin)
            yield HookCall(hook, impl.plugin_name, package, version, impl.function, tuple(impl.argnames))


_plugins = PluginSet()


def current() -> PluginSet:
    """The process's plugins (tests swap in a fresh set to rerun discovery)."""
    return _plugins


def load_plugins() -> pluggy.PluginManager:
    """Load every installed (and allowed) plugin once (idempotent)."""
    return current().load()


def plugin_infos(plugins: PluginSet | None = None) -> list[PluginInfo]:
    """Every entry point of the group: loaded, failed (with the reason) or disabled by the variables."""
    plugins = plugins or current()
    plugins.load()
    return list(plugins.found)


def plugin_versions() -> dict[str, dict[str, str]]:
    """``{plugin name: {"package": ..., "version": ...}}`` for the run directory's versions file."""
    load_plugins()
    out = {}
    for name, plugin in current().pm.list_name_plugin():
        if plugin is None:
            continue
        package, version = current().distribution_of(plugin)
        out[name] = {"package": package, "version": version}
    return out


def fingerprint(environ: Mapping[str, str] | None = None) -> str | None:
    """A digest of what discovery's outcome depends on, read without importing any plugin (so without
    torch): mmgen's version and the interpreter, the selecting variables, each entry point and the
    distribution declaring it, the source files of the packages the entry points name and of mmgen
    itself (an editable install's edits), and the site-packages folders (an install or uninstall).

    What a plugin imports from another package is covered only through the site-packages folders.
    None when a package's files cannot be found: then nothing can be cached.
    """
    environ = os.environ if environ is None else environ
    parts: list = [mmgen_version(), sys.version, sys.prefix, environ.get(ALLOW_VAR), environ.get(BLOCK_VAR)]
    sites = sorted({sysconfig.get_paths()[k] for k in ("purelib", "platlib")})
    parts += [(site, _stat(site)) for site in sites]
    tops = {"mmgen"}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        parts.append((ep.name, ep.value, *_distribution(ep)))
        tops.add(ep.value.partition(":")[0].strip().partition(".")[0])
    for top in sorted(tops):
        state = _source_state(top)
        if state is None:
            return None
        parts.append((top, state))
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _stat(path: str) -> list[int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_mtime_ns, info.st_size]


def _source_state(top: str) -> list | None:
    """Count, newest mtime and total size of a top-level package's ``.py`` files (a module: its file)."""
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    roots = list(spec.submodule_search_locations or []) or ([spec.origin] if spec.origin else [])
    if not roots:
        return None
    count = newest = size = 0
    for file in (f for root in roots for f in _py_files(root)):
        info = _stat(file)
        if info is not None:
            count, newest, size = count + 1, max(newest, info[0]), size + info[1]
    return [roots, count, newest, size]


def _py_files(root: str) -> Iterator[str]:
    if os.path.isfile(root):
        yield root
        return
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [d for d in subfolders if d != "__pycache__"]
        yield from (os.path.join(folder, name) for name in names if name.endswith(".py"))


def mmgen_version() -> str:
    try:
        return importlib.metadata.version("mmgen")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        return os.environ.get("MMGEN_VERSION", "0+unknown")
