"""Runs: the self-describing run directory (layout, creation, metrics) and a loaded, trained run
(``mmgen.load_run``: encode, sample, decode with ``given={...}``).

Owns what training writes and what every later command reads. May import: mmgen.errors,
mmgen.config, mmgen.storage, mmgen.plugin, mmgen.model, mmgen.recipe.
"""

from mmgen.run.directory import RUNS_ROOT, RunDir
from mmgen.run.loaded import Run

__all__ = ["RUNS_ROOT", "Run", "RunDir"]
