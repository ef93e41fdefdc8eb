"""The ``mmgen`` command line: thin typer commands over the library, one module per command group.

Owns arguments, output and exit codes; computes nothing itself. May import every layer.
A command's module is imported when the command runs (mmgen.cli.app.LazyGroup), so that
`mmgen --help`, `mmgen plugins` and `mmgen recipes ls` start without importing torch.
"""

from typing import TYPE_CHECKING

from mmgen.cli.app import Lazy, app, declare, main, recipes_app

if TYPE_CHECKING:  # imported by the table below, when a command runs; here for the graph of imports
    from mmgen.cli import evaluate, plugin_commands, recipe_commands, recipe_edit, sample, share, train  # noqa: F401

# Each command module registers its commands on `app` (or `recipes_app`) when imported, which is
# when one of them runs or shows its help: they import torch, and `mmgen --help` need not.
# In the order `mmgen --help` lists them; `recipes` (a group) follows.
declare(app, {
    "train": Lazy("mmgen.cli.train",
                  "Train the model a recipe describes, validating every epoch, into a run directory."),
    "sample": Lazy("mmgen.cli.sample",
                   "Draw z from q(z | given) (or p(z), or a post-hoc sampler), decode it, and write or print the "
                   "result."),
    "eval": Lazy("mmgen.cli.evaluate",
                 "Honest IWAE likelihoods, cross-modal accuracy and coherence, FID, latent probes and "
                 "pictures; writes eval.json."),
    "export": Lazy("mmgen.cli.share",
                   "Write a run as a self-contained folder: weights, recipe, versions, eval.json, samples and a model "
                   "card."),
    "push": Lazy("mmgen.cli.share",
                 "Upload an export (a run is exported first) to a model repository on the Hugging Face Hub."),
    "plugins": Lazy("mmgen.cli.plugin_commands",
                    "List the plugins: package, version, and what each registers (or why it did not load)."),
    "new-plugin": Lazy("mmgen.cli.plugin_commands",
                       "Write a working plugin package: a modality or (--model) a model family, a toy dataset, "
                       "a recipe, tests."),
})
declare(recipes_app, {
    "ls": Lazy("mmgen.cli.recipe_commands",
               "List the recipes installed plugins ship: name, package (plugin), path, description."),
    "cp": Lazy("mmgen.cli.recipe_edit", "Copy a shipped recipe to edit; never overwrites a file."),
    "validate": Lazy("mmgen.cli.recipe_edit",
                     "Validate a recipe and build its model, without reading data or training; prints a summary."),
})

__all__ = ["app", "main"]
