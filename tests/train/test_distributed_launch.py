"""Start-up under torchrun, or a launcher that only looks like it: RANK, WORLD_SIZE, LOCAL_RANK,
LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT are checked before the data is loaded, every problem
in one line that names the variable; a rendezvous that not every rank joins stops within
``train.rendezvous_timeout`` with one line that names it.

Every process prints its own line (rank 1 too: rank 0 may be the process that is missing). The
rendezvous tests start one real process of two, with a one-second timeout, so none can hang.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mmgen.train.distributed import LAUNCH_HINT, Distributed, LaunchError

VARIABLES = ["RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
             "TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_RESTART_COUNT"]
HINT = f" (hint: {LAUNCH_HINT})"
TIMEOUT_HINT = (" (hint: start all WORLD_SIZE processes with the same MASTER_ADDR and MASTER_PORT (torchrun does), "
                "or raise train.rendezvous_timeout when some start late (each loads the data first))")
PAIR = {"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}  # a valid meeting point for 2

CASES = {
    "rank 2 of 2": ({**PAIR, "RANK": "2"}, "RANK=2 must be below WORLD_SIZE=2: ranks count from 0"),
    "rank -1": ({"RANK": "-1"}, "RANK=-1 is negative"),
    "rank 1 of 1": ({"RANK": "1", "WORLD_SIZE": "1"}, "RANK=1 must be below WORLD_SIZE=1: ranks count from 0"),
    "rank 1, no world": ({"RANK": "1"}, "RANK=1 must be below WORLD_SIZE (not set: 1 process): ranks count from 0"),
    "world 0": ({"WORLD_SIZE": "0"}, "WORLD_SIZE=0 must be at least 1"),
    "world -3": ({"WORLD_SIZE": "-3"}, "WORLD_SIZE=-3 must be at least 1"),
    "world not a number": ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not a whole number"),
    "world past c10d": ({"WORLD_SIZE": str(2**31), "RANK": "0"},
                        "WORLD_SIZE=2147483648 is above torch.distributed's limit of 2147483647"),
    "rank empty": ({"RANK": ""}, "RANK='' is not a whole number"),
    "no rank": ({**PAIR}, "WORLD_SIZE=2 needs RANK (this process's rank, from 0), which is not set"),
    "local rank -1": ({"LOCAL_RANK": "-1"}, "LOCAL_RANK=-1 is negative"),
    "local rank 1.5": ({"LOCAL_RANK": "1.5"}, "LOCAL_RANK='1.5' is not a whole number"),
    "local rank 2 of 2 here": ({**PAIR, "WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "2"},
                               "LOCAL_RANK=2 must be below LOCAL_WORLD_SIZE=2: local ranks count from 0"),
    "local rank 2 of 2": ({**PAIR, "RANK": "1", "LOCAL_RANK": "2"},
                          "LOCAL_RANK=2 must be below WORLD_SIZE=2: local ranks count from 0"),
    "more here than in all": ({**PAIR, "RANK": "1", "LOCAL_WORLD_SIZE": "3"},
                              "LOCAL_WORLD_SIZE=3 is above WORLD_SIZE=2"),
    "no address": ({**PAIR, "RANK": "0", "MASTER_ADDR": None},
                   "WORLD_SIZE=2 needs MASTER_ADDR (the host of rank 0), which is not set"),
    "empty address": ({**PAIR, "RANK": "0", "MASTER_ADDR": " "},
                      "MASTER_ADDR=' ' is empty: it must name the host of rank 0"),
    "no port": ({**PAIR, "RANK": "0", "MASTER_PORT": None},
                "WORLD_SIZE=2 needs MASTER_PORT (a free port on the host of rank 0), which is not set"),
    "port 0": ({**PAIR, "RANK": "1", "MASTER_PORT": "0"},
               "MASTER_PORT=0 is not a port: it must be a whole number from 1 to 65535"),
    "port 65536": ({**PAIR, "RANK": "1", "MASTER_PORT": "65536"},
                   "MASTER_PORT=65536 is not a port: it must be a whole number from 1 to 65535"),
    "port -1": ({**PAIR, "RANK": "1", "MASTER_PORT": "-1"},
                "MASTER_PORT=-1 is not a port: it must be a whole number from 1 to 65535"),
    "port a word": ({**PAIR, "RANK": "1", "MASTER_PORT": "http"},
                    "MASTER_PORT='http' is not a port: it must be a whole number from 1 to 65535"),
    "all at once": ({"WORLD_SIZE": "2", "RANK": "-1", "MASTER_PORT": "x"},
                    "RANK=-1 is negative; WORLD_SIZE=2 needs MASTER_ADDR (the host of rank 0), which is not set; "
                    "MASTER_PORT='x' is not a port: it must be a whole number from 1 to 65535"),
}


@pytest.fixture
def launched(monkeypatch):
    """``launched({"RANK": "1", ...})``: this process's environment holds those variables alone (None: unset)."""
    def set_env(values: dict[str, str | None]) -> None:
        for name in VARIABLES:
            monkeypatch.delenv(name, raising=False)
        for name, value in values.items():
            if value is not None:
                monkeypatch.setenv(name, value)
    return set_env


@pytest.mark.parametrize("case", CASES)
def test_a_bad_launch_environment_stops_before_the_data_with_one_line(case, cli, cli_error, tiny_recipe, tmp_path,
                                                                      launched):
    env, expected = CASES[case]
    launched(env)
    no_data = f"data.root={json.dumps(str(tmp_path / 'no-data'))}"  # read past the check, it would be a DataError
    result = cli("train", tiny_recipe, no_data, "--out", tmp_path / "run")
    assert cli_error(result) == f"error: {expected}{HINT}"
    assert result.exit_code == 1
    assert not (tmp_path / "run").exists()


def test_an_address_that_does_not_resolve_is_named(cli, cli_error, tiny_recipe, tmp_path, launched, monkeypatch):
    def no_such_host(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)  # no resolver is asked: tests stay offline
    launched({**PAIR, "RANK": "1", "MASTER_ADDR": "node0.invalid"})
    result = cli("train", tiny_recipe, "--out", tmp_path / "run")
    assert cli_error(result) == ("error: MASTER_ADDR='node0.invalid' does not resolve to an address (Name or service "
                                 f"not known){HINT}")
    assert result.exit_code == 1


def test_one_process_reads_no_rendezvous_variables():
    assert Distributed.from_env({"WORLD_SIZE": "1", "MASTER_ADDR": "", "MASTER_PORT": "x"}) == Distributed()
    assert Distributed.from_env({}) == Distributed()


def test_a_valid_environment_is_read_as_it_is():
    env = {**PAIR, "WORLD_SIZE": "8", "RANK": "5", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}
    assert Distributed.from_env(env) == Distributed(5, 8, 1, "127.0.0.1:29500")


def test_a_local_rank_without_a_gpu_is_named(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(LaunchError) as caught:
        Distributed(3, 4, 2, "127.0.0.1:29500").start(torch.device("cuda"))
    assert str(caught.value) == "LOCAL_RANK=2 has no GPU: this machine has 2"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("rank", [0, 1])
def test_a_rendezvous_the_other_rank_never_joins_stops_at_the_timeout(rank, launched):
    # Rank 0 hosts the store and waits for rank 1; rank 1 finds no store to connect to. Both give up after 1 s.
    port = free_port()
    launched({**PAIR, "RANK": str(rank), "MASTER_PORT": str(port)})
    began = time.monotonic()
    with pytest.raises(LaunchError) as caught:
        Distributed.from_env().start(torch.device("cpu"), rendezvous_timeout=1)
    assert time.monotonic() - began < 30
    assert re.fullmatch(rf"rank {rank} of 2: not every rank joined the rendezvous at 127\.0\.0\.1:{port} within "
                        r"train\.rendezvous_timeout=1 s \(.*time.*\)", str(caught.value), re.IGNORECASE), caught.value


def test_the_recipe_key_sets_the_timeout_and_the_line_names_it(tiny_recipe, tmp_path):
    """The whole command, as one process of two that no other joins: one line, exit 1, within seconds."""
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if k not in VARIABLES}, **PAIR, "RANK": "0",
           "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "mmgen", "train", str(tiny_recipe), "--out", str(tmp_path / "run"),
                           "train.rendezvous_timeout=1.5"], env=env, capture_output=True, text=True, timeout=60)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert done.returncode == 1, done.stderr[-3000:]
    assert len(errors) == 1, done.stderr[-3000:]
    assert re.fullmatch(rf"error: rank 0 of 2: not every rank joined the rendezvous at 127\.0\.0\.1:{port} within "
                        r"train\.rendezvous_timeout=1\.5 s \(.*\)" + re.escape(TIMEOUT_HINT), errors[0]), errors[0]
    assert not (tmp_path / "run").exists()  # the run directory is made only once the ranks have met


def test_the_timeout_must_be_positive(cli, cli_error, tiny_recipe, tmp_path, launched):
    launched({})
    result = cli("train", tiny_recipe, "--out", tmp_path / "run", "train.rendezvous_timeout=0")
    assert cli_error(result) == (
        "error: override train.rendezvous_timeout=0: Input should be greater than 0 (got 0) (hint: override values "
        'are TOML: 3, 1e-3, true, "text", [1, 2], ["a", "b"]; `mmgen train --help` shows more)')
    assert result.exit_code == 1


def test_the_rendezvous_timeout_is_documented():
    text = (Path(__file__).parents[2] / "docs" / "training-at-scale.md").read_text()
    assert "train.rendezvous_timeout" in text and "MASTER_PORT" in text
