"""Progress a person can trust: the run directory first, a time left for the whole run (from the rate
this process measured, validation included), the bar, the rate and the time left whole at 80 columns,
epoch summaries without a logging source, loss terms in one order, and ``mmgen eval``'s stages, the
judge's training included, each with a count and a time left; ``--fast`` and what the default costs."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from mmgen.cli.progress import RichProgress, StageProgress, clock, plural

ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")


def step(global_step: int, **terms) -> dict:
    return {"epoch": 6, "epochs": 10, "step": global_step % 100 or 100, "steps": 100, "global_step": global_step,
            "total_steps": 1000, "beta": 0.25, "samples_per_s": 10.0, "loss": 1.0, **terms}


def rendered(renderable, width: int = 80) -> list[str]:
    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    console.print(renderable)
    return ANSI.sub("", console.file.getvalue()).splitlines()


def moved(bar) -> list[float]:
    now = [0.0]
    bar.progress.get_time = lambda: now[0]  # a clock the test moves
    return now


def test_the_bar_the_rate_and_the_time_left_fit_in_80_columns():
    bar = RichProgress(Console(file=io.StringIO(), width=80))
    now = moved(bar)
    big = {"epoch": 500, "epochs": 500, "step": 469, "steps": 469, "global_step": 234000, "total_steps": 234500,
           "beta": 0.0133, "samples_per_s": 12345.0, "loss": 192.62, "kl": 12.3, "nll/image": 180.1,
           "nll/label": 0.51, "kl/extra": 3.3, "nll/other": 7.7}
    with bar:
        bar.on_step({**big, "global_step": 233000})
        now[0] = 100.0
        bar.on_step(big)  # 1000 steps in 100 s: 500 left, 50 s
        first, second = rendered(bar.progress.get_renderable())
    assert first.startswith("epoch 500/500 ━") and first.endswith("step 469/469 12345 samples/s ETA 0:00:50")
    assert len(first) <= 80 and first.count("━") >= 10  # the bar keeps some width
    assert second.startswith("  loss 192.62") and len(second) <= 80  # the terms are cut, never the bar


def test_the_time_left_covers_the_whole_run_from_this_process_s_rate_validation_included():
    bar = RichProgress(Console(file=io.StringIO(), width=200))
    now = moved(bar)
    with bar:
        bar.on_step(step(500))  # resumed at step 500 of 1000: the origin, not step 0
        assert bar.progress.tasks[0].fields["left"] is None and clock(None) == "-:--:--"
        now[0] = 10.0
        bar.on_step(step(600))  # 10 steps a second
        assert bar.progress.tasks[0].fields["left"] == 40  # 400 steps of the run, not of the epoch
        now[0] = 15.0  # counted down between updates
        assert rendered(bar.progress.get_renderable())[0].endswith("ETA 0:00:35")
        now[0] = 20.0  # then 10 s of validation: 5 steps a second over the whole time
        bar.on_epoch({"epoch": 6, "step": 600, "train/loss": 1.0, "beta": 0.25, "val/loss": 2.0,
                      "samples_per_s": 10.0, "best": False})
    assert "ETA 0:01:20" in bar.console.file.getvalue()


def test_the_epoch_summary_has_no_logging_source_and_says_at_which_beta_each_loss_is():
    bar = RichProgress(Console(file=io.StringIO(), width=80))
    with bar:
        bar.on_step(step(100))
        bar.on_epoch({"epoch": 1, "step": 100, "train/loss": 191.36, "beta": 0.0133, "val/loss": 207.99,
                      "val/elbo(image,label)": -97.54, "val/elbo(image)": -97.37, "samples_per_s": 1456.0,
                      "best": True})
    text = bar.console.file.getvalue()
    assert "progress.py" not in text and ".py:" not in text
    summary = next(line for line in text.splitlines() if "epoch 1/10" in line)
    assert "loss 191.36 at β=0.0133, val/loss 207.99 at β=1  (best)" in summary and len(summary) <= 80
    assert "\n  1456 samples/s  ETA -:--:--  val/elbo(image,label) -97.54\n  val/elbo(image) -97.37\n" in text


def test_loss_terms_keep_one_order_after_a_resume():
    fresh, resumed = RichProgress(Console(file=io.StringIO())), RichProgress(Console(file=io.StringIO()))
    with fresh, resumed:
        fresh.on_step(step(100, **{"nll/image": 3.0, "nll/label": 2.0, "kl": 1.0}))
        # a resumed partial epoch reads its running sums back sorted, the loss no longer first
        resumed.on_step({**dict(sorted({"kl": 1.0, "nll/label": 2.0, "nll/image": 3.0, "loss": 1.0}.items())),
                         **{k: v for k, v in step(100).items() if k != "loss"}})
        terms = [bar.progress.tasks[0].fields["terms"] for bar in (fresh, resumed)]
    assert terms[0] == terms[1] == "loss 1.00  kl 1.00  nll/image 3.00  nll/label 2.00  β 0.250"


def test_counts_are_plural_only_when_more_than_one():
    assert (plural(1, "sample"), plural(2, "sample"), plural(0, "example")) == ("1 sample", "2 samples", "0 examples")
    assert plural(10000, "example") == "10,000 examples"


def test_train_prints_the_run_directory_on_its_first_line(cli, tiny_recipe, tmp_path):
    result = cli("train", tiny_recipe, "--out", tmp_path / "run", "--device", "cpu")
    assert result.exit_code == 0, result.output
    lines = ANSI.sub("", result.stderr).splitlines()
    assert lines[0] == f"run directory: {tmp_path / 'run'}"
    assert any(re.match(r"\d\d:\d\d:\d\d epoch 1/1: loss .* at β=.*, val/loss .* at β=1", line) for line in lines)


def test_without_out_the_first_line_names_the_new_run_under_runs(tiny_recipe, workdir):
    from mmgen.cli.train import planned_run_dir
    from mmgen.recipe.load import load_recipe

    planned = planned_run_dir(tiny_recipe, [], resume=False)
    assert planned.parent.name == "runs" and planned.name.startswith(load_recipe(tiny_recipe, []).name + "-")
    assert planned_run_dir(Path("runs/x"), [], resume=True) == Path("runs/x")
    assert planned_run_dir(tiny_recipe, ["train.epochs=-1"], resume=False) is None  # train says what is wrong


# ---- mmgen eval ------------------------------------------------------------------------------------
def test_an_eval_stage_shows_its_count_and_time_left_in_80_columns():
    console = Console(file=io.StringIO(), width=80, force_terminal=True)
    stages = StageProgress(console)
    now = moved(stages)
    with stages:
        stages.stage("IWAE estimates with K=1000 on 10000 examples")
        stages.work(0, 10000, "examples")
        now[0] = 60.0
        stages.work(2500, 10000, "examples")  # 2500 a minute: 3 minutes left
        (line,) = rendered(stages.progress.get_renderable())
    assert line.endswith("2500/10000 examples ETA 0:03:00 0:01:00") and len(line) <= 80
    assert line.startswith("⠋ IWAE estimates with K…") and line.count("━") >= 3  # a bar a quarter full


def test_an_eval_stage_in_a_log_file_is_a_line_now_and_then_with_the_time_left():
    console = Console(file=io.StringIO(), width=80)  # not a terminal: no live bar
    stages = StageProgress(console, every=30.0)
    now = moved(stages)
    with stages:
        stages.stage("training the classifier")
        stages.work(0, 300, "steps")
        for t, done in [(10.0, 100), (40.0, 200), (50.0, 250), (60.0, 300)]:
            now[0] = t
            stages.work(done, 300, "steps")
    assert console.file.getvalue().splitlines() == [
        "training the classifier", "  200/300 steps, ETA 0:00:20", "  300/300 steps, ETA 0:00:00"]


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MMGEN_CACHE", str(tmp_path / "cache"))  # the judge is trained here, not read


def test_eval_shows_the_judge_s_training_and_every_stage(cli, trained_run, tmp_path, fresh_cache):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    result = cli("eval", run, "-K", "3", "--limit", "10", "--per-class", "3", "--device", "cpu")
    assert result.exit_code == 0, result.output
    lines = ANSI.sub("", result.stderr).splitlines()
    training = next(i for i, line in enumerate(lines) if line.startswith("training the classifier that judges image"))
    assert re.fullmatch(r"  (\d+)/\1 steps, ETA 0:00:00", lines[training + 1])  # the judge's last step
    for stage in ("loading the test split", "IWAE estimates with K=3 on 10 examples", "  10/10 examples, ETA",
                  "cross-modal accuracy, coherence and diversity", "pictures"):
        assert any(line.startswith(stage) for line in lines), stage
    again = cli("eval", run, "-K", "3", "--limit", "10", "--per-class", "3", "--device", "cpu", "--no-pictures")
    assert "training the classifier" not in again.stderr  # cached: nothing to train


def test_fast_eval_says_so_in_eval_json_and_an_option_given_wins(cli, trained_run, tmp_path):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    result = cli("eval", run, "--fast", "--per-class", "3", "--device", "cpu", "--no-pictures")
    assert result.exit_code == 0, result.output
    report = json.loads((run / "eval.json").read_text())
    assert next(iter(report)) == "evaluation" and report["evaluation"].startswith("fast (--fast): K=50 on the first")
    assert "not the paper's protocol" in report["evaluation"] and report["K"] == 50
    assert report["examples"] == 100  # the tiny test split is under --fast's 1000
    assert "not the paper's protocol" in " ".join(result.stdout.split())
    plain = cli("eval", run, "-K", "3", "--limit", "10", "--per-class", "3", "--device", "cpu", "--no-pictures")
    assert "evaluation" not in json.loads((run / "eval.json").read_text()), plain.output


def test_eval_help_states_what_the_default_costs_and_offers_fast(cli):
    text = " ".join(ANSI.sub("", cli("eval", "--help").stdout).replace("│", " ").split())
    assert "K=1000 on every test example" in text and "14-37 minutes on a 2-core CPU" in text
    assert "judge: about 2 minutes once, then cached" in text and "--fast" in text and "under a minute" in text
