"""When the user knows a little (issue 18): pairwise constraints against k-means on the same features.

For each set, seed and fraction of all n(n-1)/2 pairs (0.1 %, 1 %; drawn uniformly, must-link when the
classes agree), ``deepclust.pipeline.run_clustering`` fits COP-k-means, PCKMeans, ClusterNet and DCC with
those constraints; k-means (the unsupervised baseline, same seed, same features) none. ACC is measured on
the samples no constraint names when at least a tenth of the set is left so, else on all samples (the
record's ``scored_on``). The deep methods run with ``PARAMS`` (smaller networks than their defaults: a CPU
budget, the same for every set, not tuned on labels). One thread (OMP_NUM_THREADS=1), the load average in
every record; records written seed by seed.

    python benchmarks/semisup_pairs_bench.py --out benchmarks/results/semisup-pairs.jsonl
    python benchmarks/semisup_pairs_bench.py --table benchmarks/results/semisup-pairs.jsonl
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
SETS = (("usps", "raw"), ("pendigits", "raw"), ("searchsnippets", "minilm"))
FRACTIONS = (0.001, 0.01)
METHODS = ("cop-kmeans", "pckmeans", "clusternet", "dcc")
NAMES = {"kmeans": "k-means", "cop-kmeans": "COP-k-means", "pckmeans": "PCKMeans", "clusternet": "ClusterNet",
         "dcc": "DCC"}
#: the deep methods' networks in this benchmark (their defaults are DEC's d-500-500-2000-10 autoencoder and a
#: 512-512 MLP): a CPU budget of about 20 s a fit on one idle thread
PARAMS = {"clusternet": {"hidden_dims": [256, 256]}, "dcc": {"hidden_dims": [256, 256]}}


def random_pairs(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``round(fraction · n(n-1)/2)`` distinct pairs drawn uniformly: (must-links, cannot-links) by ``y``."""
    n = len(y)
    m = int(round(fraction * n * (n - 1) / 2))
    rng = np.random.default_rng([seed, int(round(fraction * 1e5)), 7])
    pairs = np.zeros((0, 2), np.int64)
    while len(pairs) < m:
        draw = np.sort(rng.integers(0, n, (2 * (m - len(pairs)) + 16, 2)), axis=1)
        pairs = np.unique(np.r_[pairs, draw[draw[:, 0] != draw[:, 1]]], axis=0)
    pairs = pairs[rng.permutation(len(pairs))[:m]]
    same = y[pairs[:, 0]] == y[pairs[:, 1]]
    return pairs[same], pairs[~same]


def measure(name: str, encoder: str, seeds: list[int], methods: tuple[str, ...] = METHODS) -> list[dict[str, Any]]:
    from deepclust import metrics
    from deepclust.data import load_dataset
    from deepclust.encoders.api import encode_with_info
    from deepclust.errors import DeepclustError
    from deepclust.pipeline import run_clustering
    from deepclust.runtime import machine_load, versions
    from deepclust.supervision import Supervision, scored_mask

    ds = load_dataset(name)
    features = encode_with_info(ds, encoder, cache=True, random_state=0)
    k = ds.meta.n_classes
    records = []
    for seed in seeds:
        base = run_clustering(ds, "kmeans", k, seed=seed, device="cpu", features=features)
        for fraction in FRACTIONS:
            ml, cl = random_pairs(ds.y, fraction, seed)
            sup = Supervision(must_link=ml, cannot_link=cl)
            untouched = scored_mask(sup, len(ds))
            scored_on = "untouched" if untouched.sum() >= len(ds) / 10 else "all"
            rest = untouched if scored_on == "untouched" else np.ones(len(ds), bool)
            rows = [("kmeans", base.labels, base.seconds["fit"], "ok")]
            for method in methods:
                try:
                    res = run_clustering(ds, method, k, seed=seed, device="cpu", features=features, supervision=sup,
                                         params=PARAMS.get(method))
                    rows.append((method, res.labels, res.seconds["fit"], "ok"))
                except DeepclustError as exc:  # COP-k-means: no assignment satisfies every constraint
                    rows.append((method, None, None, f"failed: {exc}"))
            for method, labels, fit_s, status in rows:
                scores = {} if labels is None else {
                    "acc": metrics.accuracy(ds.y[rest], labels[rest]), "nmi": metrics.nmi(ds.y[rest], labels[rest]),
                    "ari": metrics.ari(ds.y[rest], labels[rest]),
                    "violated": sum(sup.violations(labels).values())}
                records.append({
                    "benchmark": "semisup-pairs", "dataset": name, "protocol": ds.meta.protocol, "encoder": encoder,
                    "method": method, "params": PARAMS.get(method, {}), "seed": seed, "pair_fraction": fraction,
                    "n": len(ds), "k": k, "n_must_link": len(ml), "n_cannot_link": len(cl),
                    "n_untouched": int(untouched.sum()), "scored_on": scored_on, "n_scored": int(rest.sum()),
                    "status": status, **scores, "seconds_fit": fit_s,
                    "threads": 1, "device_name": base.device_name, **machine_load(), "versions": versions(),
                    "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
                })
                acc = f"ACC {records[-1]['acc']:.4f}" if labels is not None else status[:80]
                print(f"{name:<15} {encoder:<7} seed {seed} {fraction:>6.1%} {method:<12} {acc} "
                      f"({fit_s or 0:.1f} s)", flush=True)
    return records


def table_of(records: list[dict[str, Any]]) -> str:
    """Mean ± std ACC per set and fraction of pairs: k-means and each constrained method (failed runs
    counted apart), on the samples scored (see ``scored_on``)."""
    groups: dict[tuple, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        groups[(r["dataset"], r["encoder"], r["pair_fraction"])][r["method"]].append(r)
    shown = [m for m in ("kmeans", *METHODS) if any(m in by for by in groups.values())]
    lines = [f"| set | features | pairs | must / cannot-links (first seed) | scored on | {' | '.join(NAMES[m] for m in shown)} "
             "| seeds |", "|---|---|---:|---:|---|" + "---:|" * len(shown) + "---:|"]

    def cell(rs: list[dict[str, Any]], seeds: int) -> str:
        accs = [r["acc"] for r in rs if r["status"] == "ok"]
        failed = len(rs) - len(accs)
        text = f"{np.mean(accs):.3f} ± {np.std(accs):.3f}" if accs else "–"
        notes = [f"{failed} failed"] * bool(failed) + [f"{len(rs)} of {seeds} seeds"] * (len(rs) < seeds)
        return text + (f" ({', '.join(notes)})" if notes else "")

    for (name, encoder, fraction), by in sorted(groups.items()):
        first = by["kmeans"][0]
        scored = sorted({r["scored_on"] for rs in by.values() for r in rs})
        lines.append(f"| {name} | {encoder} | {fraction:.1%} | {first['n_must_link']:,} / {first['n_cannot_link']:,} | "
                     f"{', '.join(scored)} | " + " | ".join(cell(by.get(m, []), len(by["kmeans"])) for m in shown)
                     + f" | {len(by['kmeans'])} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(s for s, _ in SETS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default=",".join(METHODS), help="constrained methods (k-means always runs)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--table", type=Path, nargs="*")
    args = parser.parse_args()
    if args.table:
        from tables import read_jsonl

        print(table_of(read_jsonl(args.table)))
        return 0
    import torch

    torch.set_num_threads(1)
    encoders = dict(SETS)
    for name in args.sets.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:  # records written seed by seed
            records = measure(name, encoders.get(name, "raw"), [seed], tuple(args.methods.split(",")))
            with open(args.out, "a") as fh:
                fh.writelines(json.dumps(r) + "\n" for r in records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
