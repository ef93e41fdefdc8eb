"""``python -m benchmarks.leaderboard``: see the package's docstring."""

import sys

from benchmarks.leaderboard.board import main

if __name__ == "__main__":
    sys.exit(main())
