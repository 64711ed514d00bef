"""Does DEPICT's initial partition decide its result? The same pretrained autoencoder (the cache),
the same seed, started once from k-means and once from AC-PIC (issue 15's GPU finding: MNIST-full,
started from k-means, ended at ACC 0.84 where the paper reports 0.965).

    DEEPCLUST_CACHE=/tmp/depict-cache PYTHONPATH=src DEEPCLUST_DATA=../shared/data \\
        python benchmarks/depict_init_bench.py --dataset mnist-test --out benchmarks/results/depict-init.jsonl

One record per start (``deepclust.bench.run_one``'s, with the init); labels only score. The first
fit pretrains and caches the autoencoder, the second reuses it (``fit.pretrain`` 0).
"""

from __future__ import annotations

import argparse
import json
import os

import torch

from deepclust.bench import run_one
from deepclust.data import load_dataset


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist-test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--inits", default="kmeans,pic")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if not os.environ.get("DEEPCLUST_CACHE"):
        p.error("set DEEPCLUST_CACHE: the starts must share one pretrained autoencoder")
    torch.set_num_threads(args.threads)
    ds = load_dataset(args.dataset)
    for init in args.inits.split(","):
        rec = run_one("depict", ds, args.seed, params={"init": init})
        rec.update(benchmark="depict-init", init=init, load_avg=list(os.getloadavg()))
        with open(args.out, "a") as fh:
            fh.write(json.dumps(rec, default=str) + "\n")
        print(f"{args.dataset} init={init}: ACC {rec['acc']:.3f} NMI {rec['nmi']:.3f} "
              f"({rec['seconds']['fit']:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
