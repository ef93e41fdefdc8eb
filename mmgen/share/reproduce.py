"""The commands that reproduce an exported model: its training, from the shipped recipe of its name with
the overrides that make it this run's recipe (or from the export's own recipe.json), and its evaluation,
from the settings eval.json records."""

from __future__ import annotations

import json
import shlex
from typing import Any

from mmgen.errors import MmgenError
from mmgen.eval.comparison import ComparisonSettings
from mmgen.recipe.catalog import find_recipe
from mmgen.recipe.load import load_recipe
from mmgen.run.exported import flat, shareable

MAX_OVERRIDES = 6  # more than this, and the export's own recipe.json is the clearer command


def override(key: str, value: Any) -> str:
    """One ``key=value`` override (values are TOML; JSON's numbers, strings, bools and lists are TOML's too),
    quoted for the shell when it has to be."""
    return shlex.quote(f"{key}={json.dumps(value, separators=(',', ':'), ensure_ascii=False)}")


def shipped_overrides(recipe: dict[str, Any]) -> tuple[str, list[str]] | None:
    """``(name, overrides)`` when a shipped recipe of the run's name becomes ``recipe`` (an export's) through
    a few overrides of keys it has; None when there is no such recipe."""
    try:
        shipped = find_recipe(recipe["name"])
        theirs = flat(shareable(load_recipe(shipped.path).to_dict()))
    except MmgenError:  # not shipped here, or it no longer validates
        return None
    ours = flat(recipe)
    changed = sorted(k for k in ours if ours[k] != theirs.get(k, object()))
    if set(theirs) - set(ours) or any(ours[k] is None or k not in theirs for k in changed):
        return None  # a key only one of them has, or a value TOML cannot write: not an override
    if len(changed) > MAX_OVERRIDES:
        return None
    return shipped.name, [override(k, ours[k]) for k in changed]


def train_commands(recipe: dict[str, Any], out: str) -> list[str]:
    """``mmgen train`` lines that train this recipe into ``out``, the shipped recipe's first when there is one."""
    folder = f"mmgen train THIS_FOLDER --out {out}   # this folder's recipe.json: every setting of the run"
    shipped = shipped_overrides(recipe)
    if shipped is None:
        return [folder]
    name, overrides = shipped
    return [" ".join(["mmgen train", name, *overrides, "--out", out]) + "   # the shipped recipe", folder]


def eval_command(report: dict[str, Any], run: str) -> str:
    """The ``mmgen eval`` line that computes ``report`` (eval.json) again for ``run``: the settings it records
    as flags, --fast too when it was a quick look (which the flags given then override, so the note stays)."""
    settings = report.get("settings")
    if not isinstance(settings, dict):
        return " ".join(["mmgen eval", run, *older_flags(report)])
    words = ["mmgen eval", run, "--split", str(settings["split"]), "-K", str(settings["K"])]
    if settings.get("K_rest") is not None:
        words += ["--K-rest", str(settings["K_rest"])]
    for name in settings.get("proposal") or []:
        words += ["--proposal", shlex.quote(name)]
    if settings.get("limit") is not None:
        words += ["--limit", str(settings["limit"])]
    if settings.get("per_class") is not None and (settings["per_class"] != DEFAULT_PER_CLASS or fast(report)):
        words += ["--per-class", str(settings["per_class"])]
    words += field_flags(settings)
    if fast(report):
        words.append("--fast")
    return " ".join(words)


def field_flags(settings: dict[str, Any]) -> list[str]:
    """The flags of FID, the latent samplers and the probes, where eval.json records other than the defaults."""
    default, words = ComparisonSettings(), []
    if settings.get("fid") is False:
        words.append("--no-fid")
    if settings.get("fid_features", default.fid_features) != default.fid_features:
        words += ["--fid-features", shlex.quote(settings["fid_features"])]
    if settings.get("inception_weights"):
        words += ["--inception-weights", shlex.quote(settings["inception_weights"])]
    if tuple(settings.get("samplers", default.samplers)) != default.samplers:
        words += [w for kind in settings["samplers"] for w in ("--sampler", shlex.quote(kind))]
    if settings.get("probe") is False:
        words.append("--no-probe")
    if settings.get("probe_train", default.probe_train) != default.probe_train:
        words += ["--probe-train", str(settings["probe_train"])]
    return words


DEFAULT_PER_CLASS = 100  # mmgen eval's --per-class when not given


def fast(report: dict[str, Any]) -> bool:
    return str(report.get("evaluation", "")).startswith("fast")


def older_flags(report: dict[str, Any]) -> list[str]:
    """The flags an eval.json written before it recorded its settings still tells: the split, K, K of the rest
    when one was given, the proposal, and the examples (a prefix of the split). Not --per-class."""
    words = ["--split", str(report.get("split", "test")), "-K", str(report.get("K", 1000))]
    if isinstance(report.get("K rest"), int):
        words += ["--K-rest", str(report["K rest"])]
    proposal = str(report.get("proposal", ""))
    if proposal.startswith("q(z|"):  # one proposal for every estimate, named by --proposal
        for name in proposal.removeprefix("q(z|").removesuffix(")").split(","):
            words += ["--proposal", shlex.quote(name)]
    if isinstance(report.get("examples"), int):
        words += ["--limit", str(report["examples"])]
    if fast(report):
        words.append("--fast")
    return words
