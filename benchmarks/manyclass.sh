#!/usr/bin/env bash
# Issue 20 part 4: BANKING77 and CLINC150 (all-MiniLM-L6-v2 through the encoder path, cached) at the
# true k, one torch thread a run → benchmarks/results/manyclass-MODE.jsonl; table in BENCHMARKS.md.
# Usage: benchmarks/manyclass.sh classical|scan|scan-v2|scan-v3|scan-v4|sela|depict [SEEDS]   (PYTHON: the interpreter, default python)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=benchmarks/results/manyclass-$1.jsonl
SEEDS=${2:-0,1,2,3,4}
bench() { PYTHONPATH=src OMP_NUM_THREADS=1 nice "${PYTHON:-python}" -m deepclust.cli bench --encoder minilm \
            --threads 1 --out "$OUT" "$@"; }
BOTH=banking77,clinc150
case "$1" in
  classical)
    bench --datasets $BOTH --methods kmeans --seeds "$SEEDS"
    bench --datasets $BOTH --methods gmm --param covariance_type=diag --seeds "$SEEDS"  # full: O(n·k·d²) a step
    bench --datasets $BOTH --methods agglomerative --seeds 0 ;;                         # deterministic
  scan)
    # the stopping rule (tol) against the full 50 + 200 epochs (tol=0, as before it), same machine, seed 0
    bench --datasets banking77 --methods scan --param tol=0 --seeds 0
    bench --datasets banking77 --methods scan --seeds 0
    # one head: the paper's 10 cost 10 × the SCAN step, which a shared CPU cannot carry for 5 seeds
    bench --datasets $BOTH --methods scan --param n_heads=1 --seeds "$SEEDS"
    bench --datasets clinc150 --methods scan --seeds 0 ;;
  scan-v2|scan-v4)  # SCAN's speed (v2: batches 8 × the paper's, bf16 products in the SCAN step; v4: in
    # self-labelling too): k-means, SCAN with one head and with the default ten, seed by seed and set by set,
    # so that each ratio to k-means is taken at about the same load
    for s in ${SEEDS//,/ }; do
      for d in banking77 clinc150; do
        bench --datasets $d --methods kmeans --seeds "$s"
        bench --datasets $d --methods scan --param n_heads=1 --seeds "$s"
        bench --datasets $d --methods scan --seeds "$s"
      done
    done ;;
  scan-v3)  # neighbour mining by bfloat16 products re-ranked in float32 (cosine_knn on a CPU with bfloat16
    # instructions) against faiss' exact search (what "auto" chose before), side by side with k-means
    for s in ${SEEDS//,/ }; do
      for d in banking77 clinc150; do
        bench --datasets $d --methods kmeans --seeds "$s"
        bench --datasets $d --methods scan --param n_heads=1 --param knn_backend=faiss --seeds "$s"
        bench --datasets $d --methods scan --param n_heads=1 --seeds "$s"
        bench --datasets $d --methods scan --seeds "$s"
      done
    done ;;
  depict)  # DEPICT on the embedding (its MLP autoencoder, K-dimensional embedding, AC-PIC start), every default
    bench --datasets $BOTH --methods depict --seeds "$SEEDS" ;;
  sela)  # shortened schedule (the defaults' 400 epochs / 100 Sinkhorn updates do not fit a CPU session)
    bench --datasets $BOTH --methods sela --param epochs=40 --param n_label_updates=10 --param sinkhorn_iters=300 \
          --seeds "$SEEDS" ;;
esac
