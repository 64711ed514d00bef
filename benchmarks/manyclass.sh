#!/usr/bin/env bash
# Issue 20 part 4: BANKING77 and CLINC150 (all-MiniLM-L6-v2 through the encoder path, cached) at the
# true k, one torch thread a run → benchmarks/results/manyclass-MODE.jsonl; table in BENCHMARKS.md.
# Usage: benchmarks/manyclass.sh classical|scan|sela [SEEDS]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=benchmarks/results/manyclass-$1.jsonl
SEEDS=${2:-0,1,2,3,4}
bench() { PYTHONPATH=src OMP_NUM_THREADS=1 nice "${PYTHON:-python}" -m deepclust.cli bench --datasets banking77,clinc150 \
            --encoder minilm --threads 1 --out "$OUT" "$@"; }
case "$1" in
  classical)
    bench --methods kmeans --seeds "$SEEDS"
    bench --methods gmm --param covariance_type=diag --seeds "$SEEDS"  # full: O(n·k·d²) a step, d = 384
    bench --methods agglomerative --seeds 0 ;;                          # deterministic: one seed
  scan)  # tol=0: the full 50 + 200 epochs, as before the stopping rule (side by side, seed 0)
    bench --methods scan --param tol=0 --seeds 0
    bench --methods scan --seeds "$SEEDS" ;;
  sela)  # shortened schedule (the defaults' 400 epochs / 100 Sinkhorn updates do not fit a CPU session)
    bench --methods sela --param epochs=40 --param n_label_updates=10 --param sinkhorn_iters=300 --seeds "$SEEDS" ;;
esac
