"""The protocol of the leaderboard: the budget and evaluation per data set, the published numbers beside ours,
which recipe trains a family, and the keys (protocol, recipe, code) its results are stored under."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

import mmgen
from mmgen.config import Recipe
from mmgen.plugin.recipes import shipped_recipes
from mmgen.plugin.registry import Registration, get_registry

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes"


@dataclass(frozen=True)
class EvalConfig:
    """One ``mmgen eval`` configuration: the same for every family of a data set (test split, best weights)."""

    K: int
    limit: int
    per_class: int
    probe_train: int = 500  # MoPoE's num_training_samples_lr, mmgen eval's default

    def command(self, run: str = "RUN") -> str:
        return (f"mmgen eval {run} -K {self.K} --limit {self.limit} --per-class {self.per_class} "
                f"--probe-train {self.probe_train} --no-pictures")


@dataclass(frozen=True)
class Protocol:
    """How every family is trained and scored on one data set. ``overrides`` go to every family's recipe."""

    dataset: str  # the recipes' prefix: recipes/<dataset>_<family>.toml
    title: str
    steps: int  # optimizer steps, rounded up to whole epochs (the trainer keeps weights at epoch ends only)
    minutes: float  # wall-time cap of one training; whichever of the two comes first stops it
    batch_size: int
    eval: EvalConfig
    overrides: tuple[str, ...] = ()
    device: str = "cpu"
    recipes: tuple[tuple[str, str], ...] = ()  # (family, recipe stem) where it is not <dataset>_<family>

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def key(self) -> str:
        return digest({k: v for k, v in self.to_dict().items() if k != "title"})


# MNIST: chosen so that data set runs in about an hour on this project's 2-core CPU VM (the plan, which times
# every family where it runs, said 1.1 h for 8 families x 2 seeds at 2,500 steps and K = 1000).
# PolyMNIST-style: at 120 steps on 5,120 examples (the first board) every family stayed at chance (coherence
# 0.11-0.12), so it ranked nothing; runs of about 1,200 steps with 16-32-64 channels left chance. Hence 1,200
# steps, rounded up to 6 whole epochs of the 59,000 training examples (1,386 steps), with every family's
# channels narrowed to 16-32-64, and MoPoE with the sampled estimator. On this VM, one thread a cell, MVTCAE
# trained in 8 min and MMVAE+ in 21; their evaluations took 22 min (fitting the mixture sampler to 512-wide
# latents) and 3. That puts 9 families x 2 seeds at roughly 6-7 CPU-hours, MNIST's 1.1 h beside it; the
# board of 2026-12-04 ran on a lent GPU instead (docs/leaderboard.md, docs/models.md).
NARROW = tuple(f"modalities.m{i}.channels=[16,32,64]" for i in range(5))
DEFAULTS = {
    "mnist": Protocol("mnist", "MNIST image + label", steps=2500, minutes=10, batch_size=100,
                      eval=EvalConfig(K=1000, limit=1000, per_class=100)),
    "polymnist": Protocol("polymnist", "PolyMNIST-style (five textured views of a digit)", steps=1200, minutes=45,
                          batch_size=256, eval=EvalConfig(K=10, limit=500, per_class=10),
                          overrides=("data.val_size=1000", *NARROW),
                          # polymnist_mopoe.toml trains the MVAE family with the mopoe fusion and the stratified
                          # estimator (31 subsets decoded a step: 22-54 s here); MoPoE's own family with the
                          # sampled estimator is what the MoPoE authors' code trains, at ~0.6 s a step
                          recipes=(("mopoe", "polymnist_mopoe_sampled"),)),
}


@dataclass(frozen=True)
class Published:
    """A published number, shown beside ours in its own column and never ranked with them."""

    family: str
    dataset: str
    values: dict[str, float]  # column -> value, in eval.json's units (coherence as a fraction)
    source: str
    caveat: str = ""


REAL_POLY = "real PolyMNIST, other budget"
PAPER_MNIST = "MNIST, the paper's budget"
PUBLISHED = [
    Published("mopoe", "polymnist", {"1": 0.66, "2": 0.77, "3": 0.81, "4": 0.83},
              "Sutter et al. 2021 (MoPoE), conditional coherence by number of given modalities", REAL_POLY),
    Published("mvtcae", "polymnist", {"1": 0.59, "2": 0.77, "3": 0.83, "4": 0.86},
              "Hwang et al. 2021 (MVTCAE paper)", REAL_POLY),
    Published("mvtcae", "polymnist", {"1": 0.64, "2": 0.82, "3": 0.88, "4": 0.91},
              "MultiVae's PolyMNIST benchmark of MVTCAE", REAL_POLY),
    Published("mmjsd", "polymnist", {"1": 0.69, "2": 0.57, "3": 0.64, "4": 0.67},
              "mmJSD on PolyMNIST as quoted in issue 24", REAL_POLY),
    Published("mmvaeplus", "polymnist", {"mean": 0.869},
              "Palumbo et al. 2023 (MMVAE+), coherence 86.9 % as quoted in issue 24", REAL_POLY),
    Published("jmvae", "mnist", {"log p(x)": -86.86}, "Suzuki et al. 2016 (JMVAE-kl), binarized MNIST", PAPER_MNIST),
    Published("jmvae", "mnist", {"log p(x)": -86.85}, "MultiVae's JMVAE reproduction", PAPER_MNIST),
    Published("mvae", "mnist", {"log p(x)": -90.62, "log p(x,y)": -90.86, "log p(x|y)": -88.57},
              "Wu & Goodman 2018 (MVAE), Table 2", PAPER_MNIST),
]


def digest(data: Any) -> str:
    """A short, stable hash of JSON-able data."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]


# ---- which recipe trains a family ------------------------------------------------------------------
def families() -> dict[str, Registration]:
    """Every registered model family, first-party or installed, by kind."""
    return dict(sorted(get_registry().models.items()))


def find_recipe(dataset: str, family: Registration, stem: str = "") -> Path | None:
    """The recipe named ``stem`` (by default ``<dataset>_<kind>``): the one the family's own plugin registers,
    else the repository's ``recipes/<stem>.toml``, else the only registered one; None when there is none."""
    stem = stem or f"{dataset}_{family.kind}"
    shipped = [r for r in shipped_recipes() if r.stem == stem]
    own = [r.path for r in shipped if r.plugin == family.plugin]
    repo = RECIPES / f"{stem}.toml"
    if own:
        return own[0]
    if repo.is_file():
        return repo
    return shipped[0].path if len(shipped) == 1 else None


# ---- the overrides every family gets ---------------------------------------------------------------
def budget_overrides(protocol: Protocol, recipe: Recipe, epochs: int, seed: int) -> list[str]:
    """The protocol's overrides for one recipe: seed, batch, epochs and device, the data overrides, and the
    recipe's own schedule (β warm-up, learning-rate warm-up and step period, in epochs) compressed by the same
    factor as its epochs, so each family keeps the shape of its schedule within the budget."""
    t = recipe.train
    factor = epochs / t.epochs
    return [f"seed={seed}", f"train.batch_size={protocol.batch_size}", f"train.epochs={epochs}",
            f"train.device={protocol.device}", f"train.anneal_epochs={t.anneal_epochs * factor:.6g}",
            f"train.warmup_epochs={t.warmup_epochs * factor:.6g}", f"train.step_epochs={t.step_epochs * factor:.6g}",
            *protocol.overrides]


def epochs_for(steps: int, n_train: int, batch_size: int) -> tuple[int, int]:
    """(epochs, steps per epoch) that cover ``steps`` optimizer steps in whole epochs."""
    per_epoch = math.ceil(n_train / batch_size)
    return max(1, math.ceil(steps / per_epoch)), per_epoch


# ---- the code version --------------------------------------------------------------------------------
SKIP_MODULES = {"builtins", "abc", "typing", "collections", "torch", "pydantic", "mmgen"}


def source_files(recipe: Recipe) -> list[Path]:
    """mmgen's own source, and the source of every plugin the recipe uses: the modules that define its family,
    modalities, fusion and data set and their base classes and configs, each with the other modules of its
    folder (a family's model.py and config.py together)."""
    registry = get_registry()
    classes = [registry.lookup("models", recipe.model.kind), registry.lookup("datasets", recipe.data.kind),
               *(registry.lookup("modalities", m.kind) for m in recipe.modalities.values())]
    fusion = getattr(recipe.model, "fusion", None)
    if fusion is not None:
        classes.append(registry.lookup("fusions", fusion.kind))
    files = set(Path(mmgen.__file__).resolve().parent.rglob("*.py"))  # resolved: the same names from a linked copy
    lineage = [c for cls in classes for c in (*cls.__mro__, *getattr(cls, "Config", object).__mro__)]
    for name in {c.__module__ for c in lineage}:
        file = getattr(sys.modules.get(name), "__file__", None)
        file = file and str(Path(file).resolve())
        if name.split(".")[0] in SKIP_MODULES or not file:
            continue
        files |= set(Path(file).parent.glob("*.py")) if "." in name else {Path(file)}
    return sorted(files)


def code_version(recipe: Recipe) -> str:
    """A hash of ``source_files`` (their contents, by name) and torch's version: the code a result depends on."""
    h = hashlib.sha256(torch.__version__.encode())
    for path in source_files(recipe):
        name = path.relative_to(REPO) if path.is_relative_to(REPO) else Path(path.name)
        h.update(f"{name.as_posix()}\0".encode() + path.read_bytes())
    return h.hexdigest()[:12]


def git_commit() -> str:
    """The checkout's commit, and whether it has uncommitted changes (recorded beside the source hashes)."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                                  timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
    return commit + (" with uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else "")
