"""Helpers shared by the tests: the repository's paths, tiny models (``toy``), a model with known marginals
(``linear_gaussian``), a stand-in for the Hugging Face Hub at the network boundary (``fake_hub``)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
RECIPES_DIR = REPO_ROOT / "recipes"
