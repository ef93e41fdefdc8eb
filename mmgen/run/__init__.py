"""Runs: the self-describing run directory (layout, creation, metrics) and a loaded, trained run
(``mmgen.load_run``: encode, sample, decode with ``given={...}``), from a run directory, an export's
folder, or ``hf://ORG/NAME`` on the Hugging Face Hub.

Owns what training writes and what every later command reads, exports included. May import: mmgen.errors,
mmgen.config, mmgen.storage, mmgen.plugin, mmgen.model, mmgen.recipe.
"""

from mmgen.run.directory import RUNS_ROOT, RunDir
from mmgen.run.loaded import Run

__all__ = ["RUNS_ROOT", "Run", "RunDir"]
