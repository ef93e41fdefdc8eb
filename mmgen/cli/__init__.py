"""The ``mmgen`` command line: thin typer commands over the library, one module per command group.

Owns arguments, output and exit codes; computes nothing itself. May import every layer.
"""

# Imported for their effect, in the order `mmgen --help` lists them: each registers its commands on `app`.
from mmgen.cli import train, sample, evaluate, plugin_commands, recipe_commands  # noqa: F401, I001
from mmgen.cli.app import app, main

__all__ = ["app", "main"]
