"""Counted fuzz of the torchrun environment (hypothesis), the family of tests/cli/test_fuzz.py.

A valid launch environment (1 to 64 processes) is drawn, then made bad by one fault: a variable
that is not a whole number, out of its range, past another (RANK >= WORLD_SIZE, LOCAL_RANK >=
LOCAL_WORLD_SIZE, ...), missing although WORLD_SIZE > 1, or a MASTER_ADDR that names no host.
``mmgen train`` must exit 1 with one ``error:`` line that starts with that variable, before any
data is read and without a run directory. At least 200 bad environments per run of the suite.
Host names are resolved by a stand-in (``*.invalid`` resolves to nothing), so no resolver is asked.
"""

from __future__ import annotations

import json
import socket
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmgen.train.distributed import MAX_WORLD, WHOLE, Distributed
from tests.conftest import error_line, run_cli

FUZZ = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
DRAWN: Counter[str] = Counter()  # bad environments tried: max_examples is a ceiling, this is the count
VARIABLES = ["RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
             "TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_RESTART_COUNT"]


@pytest.fixture(scope="module", autouse=True)
def at_least_200():
    yield
    assert not DRAWN or DRAWN["torchrun environments"] >= 200, f"fewer than 200 bad environments were tried: {DRAWN}"


def resolve(host, *args, **kwargs):
    """A resolver that needs no network: ``*.invalid`` names nothing, every other name one address."""
    if host.endswith(".invalid"):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 0))]


# Text an environment can hold (no NUL, no lone surrogate) that is not a whole number.
not_whole = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8).filter(
    lambda s: not WHOLE.fullmatch(s.strip())) | st.sampled_from(["1.5", "1e3", "0x10", "1_0", "\u0662", "", " "])


@st.composite
def valid_launches(draw) -> dict[str, str]:
    """What torchrun would set for one of its processes."""
    world = draw(st.integers(1, 64))
    local_world = draw(st.integers(1, world))
    env = {"WORLD_SIZE": str(world), "RANK": str(draw(st.integers(0, world - 1))),
           "LOCAL_WORLD_SIZE": str(local_world), "LOCAL_RANK": str(draw(st.integers(0, local_world - 1)))}
    if world > 1:
        env["MASTER_ADDR"] = draw(st.sampled_from(["127.0.0.1", "localhost", "node0.cluster", "::1"]))
        env["MASTER_PORT"] = str(draw(st.integers(1, 65535)))
    return env


@st.composite
def bad_launches(draw) -> tuple[dict[str, str], str]:
    """A valid launch with one fault, and the variable the error line must start with."""
    env = draw(valid_launches())
    world, local_world = int(env["WORLD_SIZE"]), int(env["LOCAL_WORLD_SIZE"])
    faults = {
        "RANK": st.integers(-10**20, -1) | st.integers(world, world + 10**6),
        "WORLD_SIZE": st.integers(-10**6, 0) | st.integers(MAX_WORLD + 1, 2**70),
        "LOCAL_RANK": st.integers(-10**20, -1) | st.integers(local_world, local_world + 10**6),
        "LOCAL_WORLD_SIZE": st.integers(-10**6, 0) | st.integers(world + 1, world + 10**6),
    }
    if world > 1:
        faults["MASTER_PORT"] = st.integers(-10**6, 0) | st.integers(65536, 2**70)
        faults["MASTER_ADDR"] = st.sampled_from(["", " ", "\t"]) | st.from_regex(r"[a-z0-9-]{1,20}\.invalid",
                                                                                  fullmatch=True)
    name = draw(st.sampled_from(sorted(faults)))
    how = draw(st.sampled_from(["value", "text", "unset"] if world > 1 else ["value", "text"]))
    if how == "unset" and name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        del env[name]  # WORLD_SIZE > 1 needs each of them
    elif how == "text" and name != "MASTER_ADDR":
        env[name] = draw(not_whole)
    else:
        env[name] = str(draw(faults[name]))
    return env, name


@FUZZ
@given(bad=bad_launches())
def test_bad_torchrun_environments(tiny_recipe, bad):
    env, name = bad
    DRAWN["torchrun environments"] += 1
    with pytest.MonkeyPatch.context() as mp, tempfile.TemporaryDirectory() as tmp:
        for variable in VARIABLES:
            mp.delenv(variable, raising=False)
        for variable, value in env.items():
            mp.setenv(variable, value)
        mp.setattr(socket, "getaddrinfo", resolve)
        no_data = f"data.root={json.dumps(str(Path(tmp) / 'no-data'))}"  # read past the check: a DataError
        result = run_cli("train", tiny_recipe, no_data, "--out", Path(tmp) / "run")
        line = error_line(result)
        assert result.exit_code == 1
        assert line.startswith((f"error: {name}=", f"error: WORLD_SIZE={env.get('WORLD_SIZE')} needs {name} ")), (
            env, line)
        assert not (Path(tmp) / "run").exists()


@settings(max_examples=100, deadline=None, database=None)
@given(env=valid_launches())
def test_valid_torchrun_environments_are_read_as_they_are(env):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket, "getaddrinfo", resolve)
        ranks = Distributed.from_env(env)
    assert (ranks.rank, ranks.world, ranks.local_rank) == (int(env["RANK"]), int(env["WORLD_SIZE"]),
                                                           int(env["LOCAL_RANK"]))
    assert ranks.meeting_point == (f"{env['MASTER_ADDR']}:{env['MASTER_PORT']}" if ranks.world > 1 else "")
