"""When the user knows a little (issue 18): a few labels against k-means on the same features.

For each set, seed and fraction of labels (1 %, 5 %, 10 %, drawn uniformly at random with the seed),
``deepclust.pipeline.run_clustering`` fits seeded-kmeans and constrained-kmeans (Basu et al. 2002)
and transductive-fewshot (Ziko et al. 2021; default λ = 1, 10 neighbours) with those labels;
k-means (the unsupervised baseline, same seed, same features) is fitted once per seed. Every ACC/NMI is measured on the samples left unlabelled at that fraction only, the baseline's
included, so the rows compare like with like. One thread (OMP_NUM_THREADS=1), the load average in
every record.

    python benchmarks/semisup_bench.py --out benchmarks/results/semisup.jsonl
    python benchmarks/semisup_bench.py --table benchmarks/results/semisup.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

os.environ["OMP_NUM_THREADS"] = "1"  # one thread, before torch is imported (the records say so)
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

#: (set, encoder): raw features of the image and table sets, cached MiniLM embeddings of one text set
SETS = (("usps", "raw"), ("pendigits", "raw"), ("optdigits", "raw"), ("searchsnippets", "minilm"))
FRACTIONS = (0.01, 0.05, 0.10)
METHODS = ("seeded-kmeans", "constrained-kmeans", "transductive-fewshot")
NAMES = {"kmeans": "k-means", "seeded-kmeans": "seeded k-means", "constrained-kmeans": "constrained k-means",
         "transductive-fewshot": "transductive few-shot"}


def partial_labels(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """``y`` with all but ``round(fraction · n)`` uniformly drawn samples set to -1 (unlabelled)."""
    rng = np.random.default_rng([seed, int(round(fraction * 1000))])
    out = np.full(len(y), -1, dtype=np.int64)
    idx = rng.choice(len(y), int(round(fraction * len(y))), replace=False)
    out[idx] = y[idx]
    return out


def measure(name: str, encoder: str, seeds: list[int], methods: tuple[str, ...] = METHODS) -> list[dict[str, Any]]:
    from deepclust import metrics
    from deepclust.data import load_dataset
    from deepclust.encoders.api import encode_with_info
    from deepclust.pipeline import run_clustering
    from deepclust.runtime import machine_load, versions
    from deepclust.supervision import Supervision

    ds = load_dataset(name)
    features = encode_with_info(ds, encoder, cache=True, random_state=0)
    k = ds.meta.n_classes
    records = []
    for seed in seeds:
        base = run_clustering(ds, "kmeans", k, seed=seed, device="cpu", features=features)
        for fraction in FRACTIONS:
            y = partial_labels(ds.y, fraction, seed)
            rest = y < 0
            rows = [("kmeans", base.labels, base.seconds["fit"])]
            for method in methods:
                res = run_clustering(ds, method, k, seed=seed, device="cpu", features=features,
                                     supervision=Supervision(y))
                assert res.supervision["n_scored"] == int(rest.sum())
                rows.append((method, res.labels, res.seconds["fit"]))
            for method, labels, fit_s in rows:
                records.append({
                    "benchmark": "semisup", "dataset": name, "protocol": ds.meta.protocol, "encoder": encoder,
                    "method": method, "seed": seed, "label_fraction": fraction, "n": len(ds), "k": k,
                    "n_labelled": int((~rest).sum()), "n_scored": int(rest.sum()),
                    "acc": metrics.accuracy(ds.y[rest], labels[rest]), "nmi": metrics.nmi(ds.y[rest], labels[rest]),
                    "ari": metrics.ari(ds.y[rest], labels[rest]), "seconds_fit": fit_s,
                    "threads": 1, "device_name": base.device_name, **machine_load(), "versions": versions(),
                    "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
                })
                print(f"{name:<15} {encoder:<7} seed {seed} {fraction:>5.0%} {method:<19} ACC {records[-1]['acc']:.4f}",
                      flush=True)
    return records


def table_of(records: list[dict[str, Any]]) -> str:
    """Mean ± std ACC on the unlabelled samples, per set and fraction of labels: k-means and each
    supervised method, and the gain of the best of them over k-means."""
    groups: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        groups[(r["dataset"], r["encoder"], r["label_fraction"])][r["method"]].append(r["acc"])
    shown = [m for m in ("kmeans", *METHODS) if any(m in by for by in groups.values())]
    header = " | ".join(NAMES[m] for m in shown)
    lines = [f"| set | features | labels | {header} | gain (best − k-means) | seeds |",
             "|---|---|---:|" + "---:|" * len(shown) + "---:|---:|"]
    ms = lambda v: f"{np.mean(v):.3f} ± {np.std(v):.3f}" if v else "–"  # noqa: E731
    for (name, encoder, fraction), by in sorted(groups.items()):
        best = max(np.mean(by[m]) for m in METHODS if by.get(m))
        lines.append(f"| {name} | {encoder} | {fraction:.0%} | " + " | ".join(ms(by.get(m, [])) for m in shown)
                     + f" | {100 * (best - np.mean(by['kmeans'])):+.1f} points | {len(by['kmeans'])} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(s for s, _ in SETS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default=",".join(METHODS), help="supervised methods (k-means always runs)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--table", type=Path, nargs="*")
    args = parser.parse_args()
    if args.table:
        print(table_of([json.loads(line) for p in args.table for line in p.read_text().splitlines() if line.strip()]))
        return 0
    import torch

    torch.set_num_threads(1)
    encoders = dict(SETS)
    for name in args.sets.split(","):
        records = measure(name, encoders.get(name, "raw"), [int(s) for s in args.seeds.split(",")],
                          tuple(args.methods.split(",")))
        with open(args.out, "a") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
