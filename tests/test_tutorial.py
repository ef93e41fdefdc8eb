"""docs/writing-plugins.md cannot rot: every code block in it is written out, run or compared here.

Each fenced block follows a marker comment: ``<!-- tutorial: write PATH -->`` (the block is
written to PATH in a temporary package; several blocks for one PATH are joined in order),
``<!-- tutorial: run -->`` (each line is run as a shell command would be) or ``<!-- tutorial:
layout -->`` (the files the blocks write). The end-to-end test installs the package offline,
runs every command, the package's own tests and its wheel build, and uninstalls it.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

TUTORIAL = Path(__file__).resolve().parent.parent / "docs" / "writing-plugins.md"
MARKER = re.compile(r"^<!-- tutorial: (layout|run|write \S+) -->$")
LANGUAGES = {".py": "python", ".toml": "toml"}
PACKAGE = "mmgen-cbimage"  # the tutorial's package folder and distribution
OFFLINE = ["--no-index", "--no-build-isolation"]  # what the test adds to the tutorial's pip commands
TINY_DATA = ["data.download=false", "data.val_size=50", "train.batch_size=50", "--device", "cpu"]


@dataclass
class Block:
    action: str  # layout, run or write
    path: str  # for write
    language: str
    text: str
    line: int


def read_blocks(text: str) -> tuple[list[Block], list[int]]:
    """The marked blocks, and the line numbers of fences without a marker before them."""
    blocks, unmarked = [], []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("```"):
            i += 1
            continue
        start, language = i, lines[i][3:].strip()
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        marker = MARKER.match(lines[start - 1]) if start > 0 else None
        if marker is None:
            unmarked.append(start + 1)
        else:
            action, _, path = marker.group(1).partition(" ")
            blocks.append(Block(action, path, language, "\n".join(lines[start + 1 : end]) + "\n", start + 1))
        i = end + 1
    return blocks, unmarked


def package_files(blocks: list[Block]) -> dict[str, str]:
    """``{path: text}`` of the tutorial's package; blocks for one path join with two blank lines."""
    files: dict[str, list[str]] = {}
    for block in blocks:
        if block.action == "write":
            files.setdefault(block.path, []).append(block.text)
    return {path: "\n\n".join(parts) for path, parts in files.items()}


def write_package(root: Path) -> tuple[Path, list[Block]]:
    blocks, _ = read_blocks(TUTORIAL.read_text())
    target = root / PACKAGE
    for rel, text in package_files(blocks).items():
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / rel).write_text(text)
    return target, blocks


# ---- fast checks ---------------------------------------------------------------------------------
def test_every_code_block_is_marked_and_consistent():
    blocks, unmarked = read_blocks(TUTORIAL.read_text())
    assert not unmarked, f"fences without a <!-- tutorial: ... --> marker at lines {unmarked}"
    assert {b.action for b in blocks} == {"layout", "run", "write"}
    for block in blocks:
        if block.action == "write":
            assert block.language == LANGUAGES[Path(block.path).suffix], f"line {block.line}"
        elif block.action == "run":
            assert block.language == "bash", f"line {block.line}"
    (layout,) = [b for b in blocks if b.action == "layout"]
    listed = [line.strip() for line in layout.text.splitlines()[1:]]
    assert layout.text.splitlines()[0] == f"{PACKAGE}/"
    assert sorted(listed) == sorted(package_files(blocks)), "the layout block lists other files than the tutorial"


def test_the_tutorial_code_compiles_and_is_ruff_clean(tmp_path):
    target, _ = write_package(tmp_path)
    for path in target.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (it comes with mmgen[dev])")
    result = subprocess.run([ruff, "check", "--no-cache", "--line-length", "120", "--select", "E,F,W,I,B,UP,SIM",
                             "."], cwd=target, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


# ---- running it ----------------------------------------------------------------------------------
BATCH = """\
import json, sys
from typer.testing import CliRunner
from mmgen.cli import app
results = []
for argv in json.loads(sys.argv[1]):
    r = CliRunner().invoke(app, argv)
    results.append({"code": r.exit_code, "stdout": r.stdout, "stderr": r.stderr})
print(json.dumps(results))
"""


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


class Shell:
    """Runs the tutorial's command lines: cd, pip, pytest, and mmgen (optionally after VAR=value)."""

    def __init__(self, cwd: Path, env: dict[str, str]):
        self.cwd, self.env, self.outcomes = cwd, env, {}

    def process(self, argv: list[str], env: dict[str, str] | None = None) -> Outcome:
        done = subprocess.run(argv, cwd=self.cwd, env={**self.env, **(env or {})}, capture_output=True, text=True,
                              timeout=300)
        return Outcome(done.returncode, done.stdout, done.stderr)

    def mmgen_batch(self, lines: list[str], argvs: list[list[str]]) -> None:
        """Consecutive mmgen commands in one interpreter: the same app, one torch import instead of several."""
        done = self.process([sys.executable, "-c", BATCH, json.dumps(argvs)])
        assert done.code == 0, done.stderr
        for line, result in zip(lines, json.loads(done.stdout), strict=True):
            self.outcomes[line] = Outcome(result["code"], result["stdout"], result["stderr"])

    def run_block(self, text: str) -> None:
        lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
        pending: tuple[list[str], list[list[str]]] = ([], [])
        for line in [*lines, ""]:
            words = shlex.split(line)
            if words[:1] == ["mmgen"]:
                args = words[1:] + (TINY_DATA if words[1] == "train" else [])
                pending[0].append(line)
                pending[1].append(args)
                continue
            if pending[0]:
                self.mmgen_batch(*pending)
                pending = ([], [])
            if line:
                self.outcomes[line] = self.run_line(words)

    def run_line(self, words: list[str]) -> Outcome:
        env = {}
        while words and re.match(r"^[A-Z_]+=", words[0]):
            key, _, value = words.pop(0).partition("=")
            env[key] = value
        if words[0] == "cd":
            self.cwd = self.cwd / words[1]
            return Outcome(0, "", "")
        if words[0] == "mmgen":
            return self.process([sys.executable, "-m", "mmgen", *words[1:]], env)
        if words[:3] == ["python3", "-m", "pip"]:
            extra = OFFLINE + (["--no-deps"] if words[3] == "install" else [])
            return self.process([sys.executable, "-m", "pip", words[3], *extra, *words[4:]], env)
        if words[:3] == ["python3", "-m", "pytest"]:
            return self.process([sys.executable, "-m", "pytest", *words[3:], "-p", "no:cacheprovider"], env)
        raise AssertionError(f"the tutorial runs {' '.join(words)!r}, which this test does not know how to run")


@pytest.fixture
def tutorial_lock():
    """The tutorial names its distribution; two test runs at once must not install and remove it together."""
    with open(Path(tempfile.gettempdir()) / "mmgen-tutorial-test.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def test_the_tutorial_plugin_installs_trains_tests_and_builds(tmp_path, tiny_mnist_root, tutorial_lock):
    target, blocks = write_package(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMGEN_PLUGINS")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MMGEN_DATA_ROOT=str(tiny_mnist_root))
    shell = Shell(tmp_path, env)
    try:
        for block in blocks:
            if block.action == "run":
                shell.run_block(block.text)
        failed = {line: o for line, o in shell.outcomes.items() if o.code != 0}
        assert not failed, {line: (o.stdout + o.stderr)[-2000:] for line, o in failed.items()}
        out = {line: o.stdout for line, o in shell.outcomes.items()}

        assert "cb_image" in out["mmgen plugins"] and PACKAGE in out["mmgen plugins"]
        validated = out["mmgen recipes validate cb_mnist_mvae"]
        assert validated.startswith("OK ") and "modality image: kind 'cb_image'" in validated
        shipped = target / "src/mmgen_cbimage/recipes/cb_mnist_mvae.toml"
        assert (target / "cb_mnist_mvae.toml").read_text() == shipped.read_text()
        assert (target / "runs/cb/last.safetensors").is_file() and (target / "threes.png").is_file()
        blocked = next(line for line in out["MMGEN_PLUGINS_BLOCK=cb_image mmgen plugins"].splitlines()
                       if "cb_image" in line)
        assert "disabled" in blocked
        written = sum((target / "tests" / f).read_text().count("\ndef test_") for f in ("test_cb_image.py",
                                                                                     "test_private.py"))
        assert re.search(rf"\b{written} passed", out["python3 -m pytest -q"]) and written >= 7
        # The model family of section 11: trained, sampled and scored by eval through the interface.
        assert (target / "runs/private/last.safetensors").is_file() and (target / "private3.png").is_file()
        scored = json.loads((target / "runs/private/eval.json").read_text())
        # A continuous Bernoulli is a density on [0, 1]^784: its log-density may be positive, but it is finite.
        assert scored["log p(image)"]["n"] == 50 and math.isfinite(scored["log p(image)"]["value"])
        assert scored["log p(label)"]["value"] < 0 and 0 <= scored["accuracy image->label"] <= 1
        with zipfile.ZipFile(target / "dist/mmgen_cbimage-0.1.0-py3-none-any.whl") as wheel:
            assert {"mmgen_cbimage/__init__.py", "mmgen_cbimage/private.py",
                    "mmgen_cbimage/recipes/cb_mnist_mvae.toml"} <= set(wheel.namelist())
    finally:
        removed = subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", PACKAGE], capture_output=True,
                                 text=True, env=env, cwd=tmp_path)
    assert removed.returncode == 0, removed.stderr
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution(PACKAGE)
