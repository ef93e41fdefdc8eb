"""Helpers shared by the tests: the repository's paths, tiny models (``toy``), a model with known marginals
(``linear_gaussian``)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
RECIPES_DIR = REPO_ROOT / "recipes"
