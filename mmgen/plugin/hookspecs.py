"""The hooks a mmgen plugin may implement.

Each hook hands the plugin a ``register`` callback and returns nothing, so a single plugin
module can register several things and the registry knows which plugin registered what.
Hooks evolve by appending arguments; plugins may accept a prefix of them.
"""

from pluggy import HookimplMarker, HookspecMarker

hookspec = HookspecMarker("mmgen")
hookimpl = HookimplMarker("mmgen")


@hookspec
def register_modalities(register):
    """Register modality kinds: ``register(kind: str, cls: type[mmgen.Modality])``.

    ``kind`` is the name recipes use (``[modalities.image] kind = "image"``).
    """


@hookspec
def register_fusions(register):
    """Register fusion kinds: ``register(kind: str, cls: type[mmgen.Fusion])``.

    ``kind`` is the name recipes use (``[model.fusion] kind = "poe"``).
    """


@hookspec
def register_models(register):
    """Register model families: ``register(kind: str, cls: type[mmgen.Model])``.

    ``kind`` is the name recipes use (``[model] kind = "mvae"``; a recipe without it means ``mvae``).
    """


@hookspec
def register_datasets(register):
    """Register dataset kinds: ``register(kind: str, cls: type[mmgen.Dataset])``.

    ``kind`` is the name recipes use (``[data] kind = "mnist"``).
    """


@hookspec
def register_loggers(register):
    """Register logger kinds: ``register(kind: str, cls: type[mmgen.Logger])``.

    ``kind`` is the name recipes use (``[train] loggers = ["jsonl", "tensorboard"]``).
    """


@hookspec
def register_recipes(register):
    """Register recipe files the plugin ships: ``register(path: pathlib.Path)``, a TOML file or a folder of them.

    ``mmgen recipes ls`` lists them by name, and ``mmgen recipes cp NAME DEST`` copies one for editing.
    """
