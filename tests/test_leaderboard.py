"""The leaderboard (benchmarks/leaderboard): every registered family gets a row, trained once per protocol and code,
on the tiny MNIST with a tiny protocol (3 steps, a small evaluation). Beside two shipped families, a test plugin
registers three of its own: one whose forward raises (its recipe shipped by the plugin, as a third party
would), one whose loss explodes, and one with no recipe at all."""

from __future__ import annotations

import dataclasses
import json
import signal
import types
from pathlib import Path

import pytest

import mmgen
from benchmarks.leaderboard import cells, protocol
from benchmarks.leaderboard.board import family_cells, main
from mmgen.plugin.registry import get_registry
from mmgen.recipe import load_recipe
from mmgen.testing import registered_plugin
from mmgen_plugins.families.mvae import MultimodalVAE

RECIPE = """\
# A third party's own recipe for its family, registered through register_recipes.
name = "mnist_broken"

[model]
kind = "{kind}"
latent_dim = 4

[modalities.image]
kind = "image"
encoder_hidden = [16]
decoder_hidden = [16]

[modalities.label]
kind = "label"
encoder_hidden = [16]
decoder_hidden = [16]

[data]
kind = "mnist"

[train]
epochs = 10
anneal_epochs = 2
"""


class Broken(MultimodalVAE):
    def forward(self, batch, beta=1.0, present=None):
        raise RuntimeError("the broken family's forward always fails")


class Exploding(MultimodalVAE):
    def forward(self, batch, beta=1.0, present=None):
        out = super().forward(batch, beta, present)
        return dataclasses.replace(out, loss=out.loss * 1e12)  # above train.max_loss: divergence


def test_plugin(folder: Path) -> types.ModuleType:
    """A plugin registering three families, with recipes (in ``folder``) for two of them."""
    folder.mkdir(parents=True, exist_ok=True)
    for kind in ("broken", "exploding"):
        (folder / f"mnist_{kind}.toml").write_text(RECIPE.format(kind=kind))
    plugin = types.ModuleType("mmgen-test-board")

    @mmgen.hookimpl
    def register_models(register):
        register("broken", Broken)
        register("exploding", Exploding)
        register("orphan", MultimodalVAE)

    @mmgen.hookimpl
    def register_recipes(register):
        register(folder)

    plugin.register_models, plugin.register_recipes = register_models, register_recipes
    return plugin


test_plugin.__test__ = False  # a helper, not a test
FAMILIES = "mvae,mopoe,broken,exploding,orphan"


def board_args(tmp: Path, data: Path, *extra: str) -> list[str]:
    return ["--datasets", "mnist", "--families", FAMILIES, "--seeds", "0,1", "--steps", "3", "--minutes", "5",
            "--override", f"data.root={data.as_posix()}", "--override", "data.download=false",
            "--override", "data.val_size=50", "--eval-K", "5", "--eval-limit", "30", "--eval-per-class", "2",
            "--probe-train", "50", "--probe-steps", "0", "--root", str(tmp / "root"),
            "--out-md", str(tmp / "board.md"), "--out-png", str(tmp / "images" / "board.png"), *extra]


@pytest.fixture(scope="module")
def board(tiny_mnist_root, tmp_path_factory):
    """The board run once; ``board.run(*extra)`` runs it again and returns how many trainings it started."""
    tmp = tmp_path_factory.mktemp("board")
    with registered_plugin("mmgen-test-board", test_plugin(tmp / "plugin_recipes")), pytest.MonkeyPatch.context() as mp:
        trained = []
        real = cells.train_recipe

        def counting(*args, **kwargs):
            trained.append(args[0])
            return real(*args, **kwargs)

        mp.setattr(cells, "train_recipe", counting)

        def run(*extra: str) -> int:
            before = len(trained)
            assert main(board_args(tmp, tiny_mnist_root, *extra)) == 0
            return len(trained) - before

        first = run()
        yield types.SimpleNamespace(tmp=tmp, md=tmp / "board.md", png=tmp / "images" / "board.png", run=run,
                                    first=first)


def row(markdown: str, family: str, section: int = 0) -> str:
    """The ranked table's row of ``family`` (the first table of the markdown's data set)."""
    table = markdown.split("## MNIST image + label")[1].split("Each seed:")[section]
    rows = [line for line in table.splitlines() if line.startswith("|") and f"`{family}`" in line]
    assert len(rows) == 1, table
    return rows[0]


def test_the_board_writes_a_ranked_row_per_family_and_the_plot(board):
    markdown = board.md.read_text()
    for family in FAMILIES.split(","):
        row(markdown, family)
    mvae, mopoe = row(markdown, "mvae"), row(markdown, "mopoe")
    assert {mvae.split("|")[1].strip(), mopoe.split("|")[1].strip()} == {"1", "2"}  # the two scored ones rank
    assert " ± " in mvae.split("|")[4] and "−" in mvae.split("|")[4]  # log p(x): mean ± spread over two seeds
    assert "seed 0: 3 steps; seed 1: 3 steps" in mvae
    assert "`mnist_mopoe` (model kind mvae, fusion mopoe)" in mopoe  # the shipped recipe, found by convention
    assert "−90.62 / −90.86 / −88.57 [" in mvae  # the paper, in its own column
    assert "python -m benchmarks.leaderboard --datasets mnist" in markdown and "commit " in markdown
    assert board.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert board.first == 8  # two seeds of mvae, of mopoe, and of the two plugin families that fail


def test_a_second_run_trains_nothing_and_keeps_every_result(board):
    results = sorted((board.tmp / "root").rglob("result.json"))
    evals = sorted((board.tmp / "root").rglob("eval.json"))
    stamps = {p: p.stat().st_mtime_ns for p in [*results, *evals]}
    assert len(evals) == 4
    assert board.run() == 2  # only the failed family is tried again: a failure may come from the machine
    assert {p: p.stat().st_mtime_ns for p in [*evals, *(p for p in results if "broken" not in str(p))]} == {
        p: t for p, t in stamps.items() if "broken" not in str(p)}
    assert " ± " in row(board.md.read_text(), "mvae").split("|")[4]


def test_a_changed_protocol_trains_again(board):
    assert board.run("--steps", "6") == 8  # a new protocol key: every family trains anew (two epochs of 3)
    assert "seed 0: 6 steps" in row(board.md.read_text(), "mvae")
    assert board.run("--eval-K", "4") == 8  # the evaluation is part of the protocol too
    assert len(list((board.tmp / "root").glob("*/mnist"))) == 3  # every protocol's results are kept


def test_no_train_writes_the_pages_from_what_is_stored_and_trains_nothing(board):
    assert board.run("--no-train") == 0  # the same protocol: a failure stored keeps its reason
    assert "RuntimeError: the broken family's forward always fails" in row(board.md.read_text(), "broken")
    assert board.run("--no-train", "--steps", "9") == 0  # a protocol never run: every cell says so
    assert "**not run**: no stored result, and --no-train" in row(board.md.read_text(), "mvae")
    board.run()  # the pages of the fixture's protocol again, for the tests after this one


def test_a_family_that_fails_or_diverges_gets_a_row_that_says_why(board):
    markdown = board.md.read_text()
    broken = row(markdown, "broken")
    assert "**failed**: " in broken and "RuntimeError: the broken family's forward always fails" in broken
    assert broken.split("|")[1].strip() == "—" and "`mnist_broken`" in broken  # the plugin's own recipe
    exploding = row(markdown, "exploding")
    assert "seed 0: diverged: training diverged at epoch 1" in exploding and "train.max_loss" in exploding


def test_a_family_without_a_recipe_gets_a_no_recipe_row(board):
    orphan = row(board.md.read_text(), "orphan")
    assert "**no recipe**: no recipes/mnist_orphan.toml and no registered recipe of that name" in orphan
    assert orphan.split("|")[1].strip() == "—"


def test_a_time_cap_before_the_first_epoch_ends_is_a_row_that_says_so(board):
    assert board.run("--minutes", "0.00001") == 8
    mvae = row(board.md.read_text(), "mvae")
    assert "**no epoch**: the 1e-05-minute cap came before the first epoch ended (3 of 3 steps)" in mvae


def test_the_cap_stops_at_an_epoch_end_when_the_next_epoch_would_end_past_it(tmp_path):
    proto = dataclasses.replace(protocol.DEFAULTS["mnist"], minutes=1.0)
    cell = cells.Cell(proto, "mvae", 0, path=tmp_path, epochs=5)
    clock = cells.Clock(cell, spent=30.0, say=lambda _msg: None)  # 30 s spent by an earlier invocation

    def epoch_took(seconds: float) -> None:
        clock.started -= seconds
        clock.last_epoch -= seconds

    epoch_took(12.0)  # 42 s so far; the next epoch, as long, would end at 54 s
    clock.on_epoch({"epoch": 1, "step": 10})
    epoch_took(12.0)  # 54 s so far; the next would end at 66 s, past the minute
    with pytest.raises(cells.TimeCap, match="after epoch 2"):
        clock.on_epoch({"epoch": 2, "step": 20})
    assert (tmp_path / "progress.json").is_file()


def test_a_family_plugin_recipe_wins_over_the_repository_one_and_the_code_version_follows_its_source(tmp_path):
    plugin = types.ModuleType("mmgen-test-own-mvae")
    (tmp_path / "mnist_mvae.toml").write_text(RECIPE.format(kind="mvae"))

    @mmgen.hookimpl
    def register_recipes(register):
        register(tmp_path)

    plugin.register_recipes = register_recipes
    mvae = get_registry(refresh=True).models["mvae"]
    assert protocol.find_recipe("mnist", mvae) == protocol.RECIPES / "mnist_mvae.toml"
    with registered_plugin("mmgen-test-own-mvae", plugin):
        own = dataclasses.replace(mvae, plugin="mmgen-test-own-mvae")  # as if the family's plugin shipped it
        assert protocol.find_recipe("mnist", own) == tmp_path / "mnist_mvae.toml"
        assert protocol.find_recipe("mnist", mvae) == protocol.RECIPES / "mnist_mvae.toml"
    recipe = load_recipe(protocol.RECIPES / "mnist_mvae.toml")
    files = {p.relative_to(protocol.REPO).as_posix() for p in protocol.source_files(recipe)}
    assert {"plugins/families/mvae/model.py", "plugins/families/mvae/config.py", "plugins/image.py",
            "mmgen/train/trainer.py"} <= files
    assert not any(f.startswith("plugins/families/mopoe/") for f in files)  # another family's edits do not count


def test_an_interrupted_training_resumes_where_it_stopped(tiny_mnist_root, tmp_path, monkeypatch):
    calls = []
    real_train, real_on_epoch = cells.train_recipe, cells.Clock.on_epoch

    def recording(*args, **kwargs):
        calls.append(args)
        return real_train(*args, **kwargs)

    def ctrl_c_after_the_first_epoch(clock, row):
        real_on_epoch(clock, row)
        if row["epoch"] == 1:
            signal.raise_signal(signal.SIGINT)  # as Ctrl-C: the trainer stops after this epoch's commit

    monkeypatch.setattr(cells, "train_recipe", recording)
    monkeypatch.setattr(cells.Clock, "on_epoch", ctrl_c_after_the_first_epoch)
    args = [*board_args(tmp_path, tiny_mnist_root, "--steps", "9"), "--families", "mvae", "--seeds", "0"]
    assert main(args) == 130
    (seed,) = (tmp_path / "root").rglob("seed0")
    assert not (seed / "result.json").exists() and len((seed / "run" / "metrics.jsonl").read_text().splitlines()) == 1
    monkeypatch.setattr(cells.Clock, "on_epoch", real_on_epoch)
    assert main(args) == 0
    assert calls[-1][0] == seed / "run" and calls[-1][4] is True  # mmgen train RUN --resume
    result = json.loads((seed / "result.json").read_text())
    assert (result["status"], result["steps"], result["epochs"]) == ("scored", 9, 3)


def test_a_protocol_names_the_recipe_of_a_family_whose_default_recipe_trains_another_model(tmp_path):
    poly = protocol.DEFAULTS["polymnist"]
    mopoe = get_registry(refresh=True).models["mopoe"]
    made, _ = family_cells(poly, mopoe, [0], tmp_path, {})
    assert made[0].recipe == protocol.RECIPES / "polymnist_mopoe_sampled.toml" and not made[0].trains
    plain = dataclasses.replace(poly, recipes=())
    made, _ = family_cells(plain, mopoe, [0], tmp_path, {})
    assert made[0].recipe == protocol.RECIPES / "polymnist_mopoe.toml" and "fusion mopoe" in made[0].trains
