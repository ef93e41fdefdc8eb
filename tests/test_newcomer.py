"""A newcomer's first commands, as the README gives them, in a fresh clone: the main job after the install
(train the quick recipe, then ``mmgen eval --fast``) and the short-run commands that use its run.

The install itself is what ``.ci/run`` does before the suite (``tests/test_docs.py`` checks that it is
the README's); this test runs the rest of the first command word for word in a ``git clone`` of the
repository, on a tiny MNIST and at a smaller budget (the only words it adds: one epoch, the tiny data's
split and batch size, a few test examples for eval).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

README = REPO_ROOT / "README.md"
SMALLER = {"train": ["train.epochs=1", "data.val_size=50", "train.batch_size=50", "--device", "cpu"],
           "eval": ["--limit", "40", "--per-class", "4", "--device", "cpu"],
           "sample": ["--device", "cpu"]}


def first_commands() -> list[list[str]]:
    """The mmgen commands of the README's first command line, after its install part."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.DOTALL)
    install = blocks[1].strip()  # after the data root's block (tests/test_docs.py checks the same)
    parts = [shlex.split(part) for part in install.split(" && ")]
    return [words for words in parts if words[:1] == ["mmgen"]]


def short_run_commands() -> list[list[str]]:
    """The README's commands that use the quick run, in order."""
    return [shlex.split(line.split("#")[0]) for line in README.read_text().splitlines()
            if line.startswith("mmgen sample runs/quick")]


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout to clone")
    target = tmp_path_factory.mktemp("newcomer") / "mmgen"
    done = subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(target)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return target


def run(words: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    args = [*words[1:], *SMALLER.get(words[1], [])]
    return subprocess.run([sys.executable, "-m", "mmgen", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def test_the_readmes_first_commands_work_in_a_fresh_clone(clone, tiny_mnist_root):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MMGEN_DATA_ROOT": str(tiny_mnist_root)}
    commands = first_commands()
    assert [w[:2] for w in commands] == [["mmgen", "train"], ["mmgen", "eval"]], commands
    for words in commands:
        done = run(words, clone, env)
        assert done.returncode == 0, (words, done.stderr[-2000:])
        if words[1] == "train":
            assert done.stderr.lstrip().startswith("run directory: runs/quick")  # the first line says where
    report = json.loads((clone / "runs/quick/eval.json").read_text())
    assert report["evaluation"].startswith("fast") and report["log p(image)"]["value"] < 0
    assert (clone / "runs/quick/samples-given-label.png").is_file()
    for words in short_run_commands():
        done = run(words, clone, env)
        assert done.returncode == 0, (words, done.stderr[-2000:])
    assert (clone / "threes.png").is_file() and (clone / "samples.npy").is_file()
