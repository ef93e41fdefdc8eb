#!/usr/bin/env bash
# The accelerator checks in one command each, for a lent CUDA machine (its results: docs/gpu.md):
#
#   bash benchmarks/device_check.sh prove SECONDS FAMILY...  # setup, tests/device, training speed of every
#                                                           # recipe, then the board's cells of FAMILY... until
#                                                           # SECONDS after the start
#   bash benchmarks/device_check.sh board SECONDS FAMILY...  # setup, the board's cells of FAMILY... (the cells
#                                                           # already in runs/board-gpu are kept), then its pages
#
# It expects, beside the checkout, what that machine lacks: .whl/ (wheels of pydantic and the CLI's packages),
# .devdata/MNIST/*.gz (MNIST's IDX files) and runs/cache (the judges mmgen eval trains once). The board runs one
# process per (data set, family, seed), 12 at a time on the one GPU, all storing under runs/board-gpu; the same
# `python -m benchmarks.leaderboard --device cuda` then renders the pages from the stored cells. Logs, the
# stored results (weights left out) and the pages go to $OUT.
set -u -o pipefail
phase=${1:?prove or board}
deadline=${2:?seconds}
shift 2
OUT=${OUT:-/tmp/device-out}
mkdir -p "$OUT" /tmp/board-logs /tmp/board-pages
export PYTHONUNBUFFERED=1 MMGEN_DATA_ROOT=/tmp/data MMGEN_CACHE=$PWD/runs/cache PYTHONPATH=/tmp/site

setup() {  # any step failing fails it
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv &&
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
            .whl/*.whl &&
        python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . -e plugins/mmgen-text &&
        mkdir -p /tmp/data/MNIST/raw || return 1
    for f in .devdata/MNIST/*.gz; do gunzip -c "$f" >"/tmp/data/MNIST/raw/$(basename "$f" .gz)" || return 1; done
    python3 -c "import torch, mmgen; print('torch', torch.__version__, torch.cuda.get_device_name(), 'mmgen ok')"
}

speed() {  # every first-party recipe of both data sets, alone on the machine
    local poly=() mnist=() f
    for f in mvae mmvae mopoe_sampled jmvae telbo mvtcae mmjsd mmvaeplus dmvae; do
        poly+=(--recipe "recipes/polymnist_$f.toml")
        mnist+=(--recipe "recipes/mnist_${f%_sampled}.toml")
    done
    timeout 150 python3 benchmarks/conv_speed.py --device cuda --steps 50 "${poly[@]}"
    timeout 40 python3 benchmarks/conv_speed.py --device cuda --steps 50 --recipe recipes/polymnist_mvae.toml \
        train.precision=bf16
    timeout 60 python3 benchmarks/conv_speed.py --device cuda --steps 100 "${mnist[@]}"
}

board() {  # the cells of the families "$@", until the deadline (SECONDS after the start)
    local left=$((deadline - SECONDS))
    if ((left <= 0)); then echo "no time left for the board's cells"; return; fi
    for f in "$@"; do for d in polymnist mnist; do for s in 0 1; do echo "$d $f $s"; done; done; done |
        timeout -s INT "$left" xargs -P 12 -L 1 bash -c 'OMP_NUM_THREADS=1 python3 -m benchmarks.leaderboard \
            --device cuda --datasets $0 --families $1 --seeds $2 --probe-steps 0 --root runs/board-gpu \
            --out-md /tmp/board-pages/$0-$1-$2.md --out-png /tmp/board-pages/$0-$1-$2.png \
            >/tmp/board-logs/$0-$1-$2.log 2>&1; echo "$0 $1 $2: exit $?"'
}

keep_results() {
    tar czf "$OUT/board.tgz" --exclude='*.safetensors' --exclude='*.png' runs/board-gpu /tmp/board-logs 2>/dev/null
}

setup 2>&1 | tee "$OUT/setup.log" || { echo "setup failed: see setup.log"; exit 1; }
case $phase in
prove)  # the CUDA path and one recipe's speed, then as many of the board's cells as the time allows
    timeout 240 python3 -m pytest -q tests/device 2>&1 | tee "$OUT/tests.log" | tail -15
    timeout 90 python3 benchmarks/conv_speed.py --device cuda --steps 50 --recipe recipes/polymnist_mvae.toml \
        --recipe recipes/mnist_mvae.toml 2>&1 | tee "$OUT/speed.log"
    board "$@"
    keep_results ;;
board)  # the remaining cells, the pages, then every recipe's speed while time is left
    for cell in runs/board-gpu/*/*/*/*/seed*; do  # an unfinished or failed cell came back without weights
        [ -d "$cell" ] && ! grep -qsE '"status": "(scored|diverged|no epoch|no recipe)"' "$cell/result.json" &&
            rm -rf "$cell"
    done
    board "$@"
    keep_results
    timeout 120 python3 -m benchmarks.leaderboard --device cuda --no-train --root runs/board-gpu \
        --out-md "$OUT/leaderboard.md" --out-png "$OUT/images/leaderboard.png" 2>&1 | tail -5  # the page's link
    speed 2>&1 | tee "$OUT/speed.log" ;;
esac
echo "device_check $phase: $SECONDS s"
