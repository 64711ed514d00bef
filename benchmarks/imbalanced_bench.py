"""Long-tailed clustering: k-means, SeLa, P²OT and SP²OT side by side on the same features.

Long-tailed subsets are built as CIFAR-100-LT is (Cao et al., NeurIPS 2019; the P²OT paper's
protocol): with K classes in a seeded random order, class i keeps ``n_max · R^(-i/(K-1))`` samples,
drawn at random, where n_max is the smallest class's size in the full set and R = n_max / n_min the
imbalance ratio. The rule is the committed record of the indices: ``long_tail_indices(y, R,
seed=subset_seed)`` gives them back exactly (subset seed 0 for every run here).

Scores: ACC, NMI; head / medium / tail accuracy (the classes split in thirds by size, each class's
samples counted right when their cluster is the one matched to their class by the Hungarian
matching of the whole clustering); and the size error: half the L1 distance between the sorted
found cluster sizes and the sorted true class sizes, as a share of n. Labels are used only to score.

    PYTHONPATH=src python benchmarks/imbalanced_bench.py --datasets pendigits,optdigits --ratios 10,100 \
        --methods kmeans,sela,p2ot,sp2ot --seeds 0,1,2 --out benchmarks/results/imbalanced.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from deepclust import metrics
from deepclust.data import load_dataset
from deepclust.encoders.api import encode_with_info
from deepclust.methods import make_method
from deepclust.runtime import versions


def long_tail_indices(y: np.ndarray, ratio: float, *, seed: int = 0) -> np.ndarray:
    """Sorted indices of a long-tailed subset of ``y`` (see the module notes)."""
    rng = np.random.default_rng(seed)
    classes = rng.permutation(np.unique(y))
    n_max = min(int((y == c).sum()) for c in classes)
    K = len(classes)
    keep = []
    for i, c in enumerate(classes):
        n_c = max(1, int(n_max * ratio ** (-i / max(K - 1, 1))))
        keep.append(rng.choice(np.flatnonzero(y == c), n_c, replace=False))
    return np.sort(np.concatenate(keep))


def group_accuracy(y: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Head / medium / tail accuracy under the whole clustering's Hungarian matching."""
    m, classes, clusters = metrics.contingency_matrix(y, labels)
    rows, cols = metrics._match(m)
    match = {classes[r]: clusters[c] for r, c in zip(rows, cols)}
    order = sorted(classes, key=lambda c: -int((y == c).sum()))
    thirds = np.array_split(np.array(order), 3)
    out = {}
    for name, group in zip(("head", "medium", "tail"), thirds):
        mask = np.isin(y, group)
        mapped = np.array([match.get(c, -10**9) for c in y[mask]])
        out[name] = float((labels[mask] == mapped).mean())
    return out


def size_error(y: np.ndarray, labels: np.ndarray) -> float:
    true = np.sort(np.bincount(np.unique(y, return_inverse=True)[1]))[::-1]
    found = np.sort(np.bincount(np.unique(labels, return_inverse=True)[1]))[::-1]
    k = max(len(true), len(found))
    true, found = np.pad(true, (0, k - len(true))), np.pad(found, (0, k - len(found)))
    return float(np.abs(true - found).sum() / 2 / len(y))


FEATURES = {"pendigits": "standardized", "optdigits": "standardized", "satimage": "standardized",
            "letter": "standardized"}


def features(name: str) -> tuple[np.ndarray, np.ndarray, str]:
    ds = load_dataset(name)
    enc = FEATURES.get(name, "minilm")
    if enc == "standardized":
        X = np.asarray(ds.X, dtype=np.float32).reshape(len(ds.X), -1)
        std = X.std(0)
        return (X - X.mean(0)) / np.where(std > 0, std, 1), np.asarray(ds.y), enc
    Z, _ = encode_with_info(ds, enc, device="cpu")
    return Z, np.asarray(ds.y), enc


def table(records: list[dict]) -> str:
    """Markdown table: mean ± std over seeds per data set and method."""
    cols = ("acc", "nmi", "head", "medium", "tail", "size_error")
    lines = ["| data set | n | method | seeds | " + " | ".join(cols) + " | seconds |",
             "|---|---:|---|---:|" + "---:|" * (len(cols) + 1)]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["dataset"], r["method"]), []).append(r)
    for (ds, method), rs in groups.items():
        cells = [f"{np.mean([r[c] for r in rs]):.3f} ± {np.std([r[c] for r in rs]):.3f}" for c in cols]
        lines.append(f"| {ds} | {rs[0]['n']} | {method} | {len(rs)} | " + " | ".join(cells)
                     + f" | {np.mean([r['seconds'] for r in rs]):.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="pendigits,optdigits")
    ap.add_argument("--ratios", default="10,100")
    ap.add_argument("--methods", default="kmeans,sela,p2ot,sp2ot")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="benchmarks/results/imbalanced.jsonl")
    ap.add_argument("--table", action="store_true", help="print the table of --out and stop")
    args = ap.parse_args()
    if args.table:
        print(table([json.loads(line) for line in Path(args.out).read_text().splitlines() if line.strip()]))
        return
    torch.set_num_threads(1)
    out = Path(args.out)
    for name in args.datasets.split(","):
        X_all, y_all, enc = features(name)
        for ratio in [float(r) for r in args.ratios.split(",")]:
            idx = long_tail_indices(y_all, ratio, seed=0)
            X, y = X_all[idx], y_all[idx]
            k = len(np.unique(y))
            for method in args.methods.split(","):
                for seed in [int(s) for s in args.seeds.split(",")]:
                    t0 = time.perf_counter()
                    labels = make_method(method, n_clusters=k, random_state=seed, device="cpu").fit(X).labels_
                    rec = {"method": method, "dataset": f"{name}-LT{int(ratio)}", "encoder": enc, "seed": seed,
                           "subset_seed": 0, "imbalance_ratio": ratio, "n": int(len(y)), "k": k,
                           "acc": metrics.accuracy(y, labels), "nmi": metrics.nmi(y, labels),
                           **group_accuracy(y, labels), "size_error": size_error(y, labels),
                           "seconds": round(time.perf_counter() - t0, 2), "device": "cpu (1 thread)",
                           "versions": versions()}
                    print(json.dumps({k_: rec[k_] for k_ in ("method", "dataset", "seed", "acc", "tail", "seconds")}),
                          flush=True)
                    with out.open("a") as f:
                        f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
