"""Property-based fuzzing of bad input (hypothesis): every bad recipe, override, --given value, size,
--seed, --device, destination and broken run file gives a non-zero exit, one ``error:`` line, no
traceback, and a recipe error leaves no run directory. At least 200 bad inputs of each kind but the
broken run files per run of the suite.

Inputs are generated to be bad by construction (an unknown key, a value of the wrong type for a
known key, a value out of its range, text that is not TOML...), so the property holds for each.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import shutil
import string
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import TINY_RECIPE, error_line, run_cli

FUZZ = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
DRAWN: Counter[str] = Counter()  # bad inputs tried, per fuzz test: max_examples is a ceiling, this is the count


@pytest.fixture(scope="module", autouse=True)
def at_least_200_of_each_kind():
    yield
    short = {kind: n for kind, n in DRAWN.items() if n < 200}
    assert not short, f"fewer than 200 bad inputs were tried: {short}"

INT_KEYS = ["seed", "model.latent_dim", "model.subsets", "model.samples", "train.epochs", "train.batch_size",
            "train.log_every", "train.eval_batch_size", "train.crossmodal_every", "data.val_size",
            "modalities.label.num_classes", "data.pairing_seed"]
POSITIVE_INT_KEYS = ["model.latent_dim", "model.samples", "train.epochs", "train.batch_size", "train.log_every",
                     "data.val_size"]
FLOAT_KEYS = ["train.lr", "train.anneal_epochs", "modalities.image.weight", "modalities.label.weight",
              "data.paired_fraction", "train.max_loss"]
BOOL_KEYS = ["data.download", "modalities.image.binarize"]
CHOICE_KEYS = ["model.terms", "model.objective", "model.reconstruct", "train.device", "model.fusion.kind",
               "modalities.image.kind", "data.kind", "train.compile_backend"]
LIST_KEYS = ["modalities.image.encoder_hidden", "modalities.image.decoder_hidden", "modalities.image.shape"]
TABLES = ["model", "train", "data", "modalities.image", "modalities.label", "model.fusion"]

identifiers = st.text(string.ascii_lowercase + "_", min_size=1, max_size=12).filter(
    lambda s: s not in {"kind", "weight", "name", "seed", "description"})
words = st.text(string.ascii_letters + string.digits + "-_ ", min_size=1, max_size=12)
toml_strings = words.map(lambda s: json.dumps(s))  # a quoted TOML string
huge = st.integers(min_value=2**63, max_value=2**80).map(str)
nonfinite = st.sampled_from(["inf", "-inf", "nan", "1e999", "-1e999"])
fractions = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).filter(lambda x: x != int(x)).map(repr)
bad_cuda = st.one_of(  # cuda:N that torch cannot take: past its 8 bits, a leading zero, digits that are not ASCII
    st.integers(128, 10**30).map(lambda i: f"cuda:{i}"),
    st.integers(0, 127).map(lambda i: f"cuda:0{i}"),
    st.text("٠١٢٣٤٥٦٧٨٩०१२३४५", min_size=1, max_size=3).map(lambda d: f"cuda:{d}"),
)


def bad_overrides():
    """``key=value`` strings that no recipe may accept."""
    return st.one_of(
        st.tuples(st.sampled_from(TABLES), identifiers).map(lambda t: f"{t[0]}.{t[1]}=1"),  # unknown key
        st.tuples(st.sampled_from(INT_KEYS), st.one_of(st.sampled_from(["true", "false"]), toml_strings,
                                                       fractions, huge, nonfinite, st.just("[1]"))).map("=".join),
        st.tuples(st.sampled_from(POSITIVE_INT_KEYS), st.integers(-10**6, 0).map(str)).map("=".join),
        st.tuples(st.sampled_from(FLOAT_KEYS), st.one_of(st.sampled_from(["true", "false"]), toml_strings,
                                                         nonfinite, st.just("{a=1}"))).map("=".join),
        st.tuples(st.sampled_from(BOOL_KEYS), st.one_of(toml_strings, st.integers(-5, 5).map(str),
                                                        fractions)).map("=".join),
        st.tuples(st.sampled_from(CHOICE_KEYS), words.filter(str.strip).map(lambda w: f'"zz{w}"')).map("=".join),
        st.tuples(st.sampled_from(LIST_KEYS), st.one_of(
            st.lists(st.integers(-100, 0), min_size=1, max_size=3).map(lambda xs: json.dumps(xs)),
            st.lists(st.sampled_from(["true", '"a"', "1.5"]), min_size=1, max_size=3).map(
                lambda xs: f"[{','.join(xs)}]"),
        )).map("=".join),
        st.sampled_from(['name=""', 'name="../x"', 'name="a/b"', 'name=" "']),
        bad_cuda.map(lambda d: f"train.device={json.dumps(d)}"),
        st.text(string.ascii_letters + ".", min_size=1, max_size=10).map(lambda s: s.strip(".") or "x"),  # no '='
    )


def check_failed(result, workdir: Path) -> str:
    line = error_line(result)
    assert not (workdir / "run").exists() and not (workdir / "runs").exists(), "a recipe error left a run behind"
    return line


@pytest.fixture(scope="module")
def recipe_file(tiny_mnist_root, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fuzz") / "tiny.toml"
    path.write_text(TINY_RECIPE.format(root=tiny_mnist_root.as_posix()))
    return path


@FUZZ
@given(override=bad_overrides())
def test_bad_overrides(recipe_file, override):
    DRAWN["overrides"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        check_failed(run_cli("train", recipe_file, override, "--out", Path(tmp) / "run"), Path(tmp))


def mutated_recipes(base: str):
    """Recipe texts that are bad: not TOML, a required table removed, junk or wrong types inserted."""
    lines = base.splitlines()

    def drop_tables(names: tuple[str, ...]) -> str:
        out, skipping = [], False
        for line in lines:
            if line.startswith("["):
                skipping = line.strip()[1:-1] in names
            if not skipping:
                out.append(line)
        return "\n".join(out)

    return st.one_of(
        st.binary(min_size=0, max_size=200).map(lambda b: b.decode("latin-1") + "\n= ["),  # never TOML
        st.sampled_from([("data",), ("modalities.image", "modalities.label")]).map(drop_tables),  # required
        st.tuples(st.sampled_from(TABLES[:5]), identifiers).map(lambda t: base + f"\n[{t[0]}.{t[1]}]\nx = 1\n"),
        st.integers(17, 60).map(lambda d: base + "\nbad = " + "[" * d + "]" * d + "\n"),
        st.sampled_from(["", "name = 1\n", "[modalities]\n", base.replace('kind = "image"', 'kind = 3')]),
    )


@FUZZ
@given(data=st.data())
def test_bad_recipe_files(recipe_file, data):
    text = data.draw(mutated_recipes(recipe_file.read_text()))
    DRAWN["recipe files"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bad.toml"
        path.write_text(text, encoding="latin-1")
        check_failed(run_cli("train", path, "--out", Path(tmp) / "run"), Path(tmp))


def is_class_index(text: str) -> bool:
    try:
        return 0 <= int(text.strip()) < 10
    except ValueError:
        return False


def bad_given(tmp: Path):
    garbage = tmp / "garbage.png"
    garbage.write_bytes(bytes(range(256)) * 3)
    text = tmp / "notes.png"
    text.write_text("not an image")
    return st.one_of(
        st.one_of(st.integers(10, 10**30), st.integers(-10**30, -1)).map(lambda k: f"label={k}"),
        words.filter(lambda w: not is_class_index(w)).map(lambda w: f"label={w}"),
        st.sampled_from([f"image={garbage}", f"image={text}", f"image={tmp}", f"image={tmp / 'missing.png'}",
                         "image=", "label=", "=3", "label", "image"]),
        st.tuples(identifiers.filter(lambda s: s not in {"image", "label"}), words).map(lambda t: f"{t[0]}={t[1]}"),
    )


@FUZZ
@given(data=st.data())
def test_bad_given_values(trained_run, tmp_path_factory, data):
    tmp = tmp_path_factory.getbasetemp() / "fuzz-given"
    tmp.mkdir(exist_ok=True)
    value = data.draw(bad_given(tmp))
    DRAWN["--given values"] += 1
    error_line(run_cli("sample", trained_run, "--given", value, "-n", "2", "--out", tmp / "out.npy"))
    assert not (tmp / "out.npy").exists()


HUGE = st.integers(10**13, 2**63 - 1)  # petabytes of weights or more: past any machine's memory


def sizes_that_cannot_fit():
    """Overrides whose model or cross-modal probe needs more memory than any machine has."""
    hidden = ["modalities.image.encoder_hidden", "modalities.image.decoder_hidden",
              "modalities.label.encoder_hidden", "modalities.label.decoder_hidden"]
    return st.one_of(
        st.tuples(st.sampled_from(["model.latent_dim", "modalities.label.num_classes"]), HUGE).map(
            lambda t: [f"{t[0]}={t[1]}"]),
        st.tuples(st.sampled_from(hidden), HUGE).map(lambda t: [f"{t[0]}=[{t[1]}]"]),
        HUGE.map(lambda n: [f"modalities.image.shape=[1,{n},1]"]),
        HUGE.map(lambda n: ["train.crossmodal_every=1", f"train.crossmodal_examples={n}"]),
    )


@FUZZ
@given(overrides=sizes_that_cannot_fit())
def test_sizes_that_cannot_fit(recipe_file, overrides):
    DRAWN["sizes"] += 1
    line = error_line(run_cli("recipes", "validate", recipe_file, *overrides))
    assert "needs about" in line or "more than any memory holds" in line, line


@FUZZ
@given(seed=st.one_of(st.integers(2**63, 2**200), st.integers(-(2**200), -1)))
def test_seeds_past_64_bits(trained_run, tmp_path_factory, seed):
    DRAWN["--seed values"] += 1
    out = tmp_path_factory.getbasetemp() / "fuzz-seed.npy"
    assert error_line(run_cli("sample", trained_run, "--seed", seed, "-n", "2", "--out", out)).startswith(
        f"error: --seed {seed}: ")
    assert not out.exists()


DEVICE = re.compile(r"auto|cpu|mps|cuda(:(0|[1-9][0-9]?|1[01][0-9]|12[0-7]))?")  # what --device takes


@FUZZ
@given(device=st.one_of(bad_cuda, words.filter(lambda w: not DEVICE.fullmatch(w))))
def test_bad_device_options(recipe_file, device):
    DRAWN["--device values"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        check_failed(run_cli("train", recipe_file, "--device", device, "--out", Path(tmp) / "run"), Path(tmp))


def bad_destinations(command: str, a_file: Path):
    """Where ``command`` cannot write: an empty name, a path through a file, the file itself, and (for the
    commands that write at once, not after training's data and model) a folder of /proc."""
    names = words.map(lambda w: w.strip() or "x")
    choices = [st.text(" \t", max_size=3), names.map(lambda w: f"{a_file}/{w}")]
    if command != "recipes cp":  # cp to a file that exists is the refusal of an existing file
        choices.append(st.just(str(a_file)))
    if command != "train":
        choices.append(names.map(lambda w: f"/proc/{w}"))
    return st.one_of(*choices)


@FUZZ
@given(data=st.data())
def test_bad_destinations(recipe_file, data):
    command = data.draw(st.sampled_from(["recipes cp", "new-plugin", "train"]))
    DRAWN["destinations"] += 1
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        a_file = Path(tmp) / "notes.toml"
        a_file.write_text("mine\n")
        dest = data.draw(bad_destinations(command, a_file))
        args = {"recipes cp": ["recipes", "cp", "mnist_mvae", dest],
                "new-plugin": ["new-plugin", "wave", "--dir", dest],
                "train": ["train", recipe_file, "--out", dest]}[command]
        error_line(run_cli(*args))
        assert [p.name for p in Path(tmp).iterdir()] == ["notes.toml"] and a_file.read_text() == "mine\n"


RUN_FILES = ["best.safetensors", "last.safetensors", "trainer_state.safetensors", "recipe.json"]


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(name=st.sampled_from(RUN_FILES), how=st.sampled_from(["truncate", "random", "empty", "flip"]),
       seed=st.integers(0, 2**32 - 1))
def test_broken_run_files(trained_run, tmp_path_factory, name, how, seed):
    """Corrupt, truncated, zero-length or bit-flipped files of a run: sample, eval and resume fail in one line."""
    run = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp())) / "run"
    shutil.copytree(trained_run, run)
    path, rng = run / name, random.Random(seed)
    data = bytearray(path.read_bytes())
    if how == "truncate":
        data = data[: rng.randrange(len(data))]
    elif how == "random":
        data = bytearray(rng.randbytes(rng.randrange(1, 4096)))
    elif how == "empty":
        data = bytearray()
    else:  # flip bytes in the header, where a flip is never harmless
        for _ in range(8):
            data[rng.randrange(min(len(data), 200))] ^= 0xFF
    path.write_bytes(bytes(data))
    commands = {"best.safetensors": [("sample", run, "-n", "2"), ("eval", run, "-K", "2", "--no-pictures")],
                "last.safetensors": [("sample", run, "-n", "2", "--weights", "last")],
                "trainer_state.safetensors": [("train", run, "--resume", "train.epochs=2")],
                "recipe.json": [("sample", run, "-n", "2"), ("train", run, "--resume")]}[name]
    for command in commands:
        result = run_cli(*command)
        if result.exit_code == 0:  # a flip can land in JSON whitespace or a tensor's bytes and change nothing
            assert how == "flip", (command, result.output)
            continue
        assert name in error_line(result), (command, result.stderr)
