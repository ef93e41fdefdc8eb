"""The recipes plugins ship (``register_recipes``): listed by ``mmgen recipes ls``, copied by ``cp``.

A recipe's name is its file name without ``.toml``. When two plugins ship the same name, both
are listed under the qualified name ``PLUGIN:NAME`` and the bare name is refused as ambiguous;
the qualified name works for every recipe. Recipes in the current folder are not listed: they
are ordinary files, which ``mmgen train`` and ``mmgen recipes validate`` take by path.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mmgen.errors import MmgenError, RecipeError
from mmgen.plugins import PluginInfo, PluginSet, current

log = logging.getLogger(__name__)
LS_HINT = "`mmgen recipes ls` lists the recipes plugins ship"


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


def find_recipe(name: str, plugins: PluginSet | None = None) -> ShippedRecipe:
    """A shipped recipe by name (``mnist_mvae``, ``mnist_mvae.toml`` or ``PLUGIN:mnist_mvae``)."""
    recipes = shipped_recipes(plugins)
    wanted = name.removesuffix(".toml")
    for recipe in recipes:
        if wanted in (recipe.name, recipe.qualified):
            return recipe
    clashes = [r.qualified for r in recipes if r.stem == wanted]
    if clashes:
        raise RecipeError(f"recipe {wanted!r} is shipped by {len(clashes)} plugins: name one of {', '.join(clashes)}",
                          hint=LS_HINT)
    known = ", ".join(r.name for r in recipes) or "none"
    raise RecipeError(f"no plugin ships a recipe named {wanted!r} (shipped: {known})", hint=LS_HINT)


def recipe_path(recipe: str | Path) -> Path:
    """The file a command-line RECIPE names: an existing path as it is, else a shipped recipe's name.

    Anything that looks like a path (a slash, ``.toml``) stays a path, so a mistyped file name is
    reported as a missing file rather than as an unknown recipe name.
    """
    path = Path(recipe)
    text = str(recipe)
    if path.exists() or "/" in text or os.sep in text or text.endswith(".toml"):
        return path
    return find_recipe(text).path


def copy_recipe(name: str, dest: str | Path, plugins: PluginSet | None = None) -> tuple[ShippedRecipe, Path]:
    """Copy a shipped recipe to ``dest``, a file or a folder (existing, or written with a trailing slash)
    to put ``NAME.toml`` in; ``.toml`` is added to a file name without it. Never overwrites a file."""
    recipe = find_recipe(name, plugins)
    folder = Path(dest).is_dir() or str(dest).endswith(("/", os.sep))
    target = Path(dest) / f"{recipe.stem}.toml" if folder else Path(dest)
    if target.suffix != ".toml":
        target = target.with_name(target.name + ".toml")
    if not target.parent.is_dir():
        raise MmgenError(f"cannot copy to {target}: the folder {target.parent} does not exist")
    try:
        with target.open("x") as f:  # "x": fails if the file exists, even when it appears meanwhile
            f.write(recipe.path.read_text())
    except FileExistsError:
        raise MmgenError(f"{target} already exists; not overwriting it", hint="choose another DEST or delete that file")
    return recipe, target


def summarize(recipe, model=None) -> list[tuple[str, str]]:
    """``(what, value)`` rows describing a validated recipe (and its built model) for ``recipes validate``."""
    from mmgen.plugins import get_registry

    fields = get_registry().datasets[recipe.data.kind].cls.fields
    rows = [("name", recipe.name)]
    if recipe.description:
        rows.append(("description", recipe.description))
    for name, cfg in recipe.modalities.items():
        size = ""
        if model is not None:
            size = f", {sum(p.numel() for p in model.modalities[name].parameters()):,} parameters"
        rows.append((f"modality {name}", f"kind {cfg.kind!r}, λ = {cfg.weight:g}{size}"))
    total = "" if model is None else f", {sum(p.numel() for p in model.parameters()):,} parameters in all"
    rows.append(("model", f"latent {recipe.model.latent_dim}, fusion {recipe.model.fusion.kind!r}{total}"))
    rows.append(("data", f"kind {recipe.data.kind!r}, fields {', '.join(fields)} (not read by validate)"))
    t = recipe.train
    rows.append(("train", f"{t.epochs} epochs, batch {t.batch_size}, lr {t.lr:g}, β over {t.anneal_epochs:g} epochs, "
                 f"device {t.device}"))
    return rows
