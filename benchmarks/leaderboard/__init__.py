"""The leaderboard (issue 24): every registered model family, first-party or installed, trained under one
protocol per data set, two seeds, scored by one ``mmgen eval`` configuration; writes docs/leaderboard.md (the
tables) and docs/images/leaderboard.png (the key metric per family, each seed shown).

    MMGEN_DATA_ROOT=../shared/data OMP_NUM_THREADS=1 nice -n 19 python -m benchmarks.leaderboard
    python -m benchmarks.leaderboard --plan          # the plan and its cost, timed from 2 steps a family; no training
    python -m benchmarks.leaderboard --families mvae,mopoe --datasets mnist --seeds 0 --steps 500 --minutes 3 \\
        --root /tmp/lb --out-md /tmp/lb/board.md --out-png /tmp/lb/board.png

MNIST image + label: log p(x), log p(x,y), log p(x|y) (with standard errors and K), accuracy, coherence,
diversity, joint coherence, FID and a latent probe. PolyMNIST-style: conditional coherence given 1 to 4
modalities, joint coherence, FID and latent probes. The protocol (``protocol.DEFAULTS``): a number of optimizer
steps (whole epochs) and a wall-time cap per training, whichever comes first; the same batch size, seeds and
data overrides for every family, each family's own recipe otherwise (``recipes/<data set>_<family>.toml``, or
the recipe its plugin registers under that name; a family without one gets a "no recipe" row). Results are
stored under ``--root`` (``cells.py`` says how) and never trained twice at the same key; an interrupted
training resumes on the next invocation. Published numbers sit in their own columns, never ranked.
"""
