"""How long the commands a newcomer types first take to start: each in a fresh process, timed from
launch to exit (the median of N runs), with ``python -c "import torch"`` alone for reference.

    python benchmarks/startup.py            # 5 runs each
    python benchmarks/startup.py --runs 9

``mmgen plugins`` and ``mmgen recipes ls`` read the plugin list from its cache
(``$MMGEN_CACHE/plugins.json``, mmgen.plugin.report); one untimed ``mmgen plugins`` first makes sure it
is there, so the numbers are those of every run after the first (the first after an install or an
edit of a plugin works the list out, importing torch, and then takes about as long as before).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "mmgen --help": [sys.executable, "-m", "mmgen", "--help"],
    "mmgen plugins": [sys.executable, "-m", "mmgen", "plugins"],
    "mmgen recipes ls": [sys.executable, "-m", "mmgen", "recipes", "ls"],
    'python -c "import torch"': [sys.executable, "-c", "import torch"],
}


def seconds(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per command (the median is shown)")
    args = parser.parse_args()
    seconds(COMMANDS["mmgen plugins"])  # the plugin list cached, as after any first run
    print(f"{'command':<28} {'median s':>9} {'min s':>7} {'max s':>7}   ({args.runs} fresh processes each)")
    for name, command in COMMANDS.items():
        times = [seconds(command) for _ in range(args.runs)]
        print(f"{name:<28} {statistics.median(times):>9.2f} {min(times):>7.2f} {max(times):>7.2f}")


if __name__ == "__main__":
    main()
