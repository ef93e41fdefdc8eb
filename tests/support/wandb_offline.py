"""Read back an offline W&B run without the network, with wandb's own reader of local runs:
``wandb leet inspect`` (``--summary --json``: state, config and summary; ``--json``: every record)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def inspect(folder: Path, *options: str) -> str:
    done = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", *options, str(folder)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@dataclass
class OfflineRun:
    """One ``offline-run-*`` folder: its run id, state, config, summary and history rows."""

    run_id: str
    state: str
    config: dict[str, Any]
    summary: dict[str, Any]
    history: list[dict[str, Any]]

    @classmethod
    def read(cls, folder: Path) -> OfflineRun:
        state = json.loads(inspect(folder, "--summary"))
        records = [json.loads(line) for line in inspect(folder).splitlines() if line.strip()]
        history = [r["history"]["item"] for r in records if r["type"] == "history"]
        return cls(state["run_id"], state["state"], state["config"], state["summary"], history)
