"""Self-labelling at k in the hundreds to 1,000 (issue 20 part 3) on generated data, CPU.

No real set with hundreds of classes is in ``../shared/data``, so this probe answers a narrower
question than accuracy on real data: at k = 250, 500 and 1,000, do SCAN and SeLa keep every
cluster (the label-free collapse checks: no empty cluster, none above 5 × n/k), how close do they
come to k-means, and what do they cost?

Data (seeded, ``mixture``): k cluster centres drawn uniformly on the unit sphere of R^d (d = 64),
``per`` samples each, sample = centre + Gaussian noise of standard deviation ``sigma`` per
coordinate (noise norm ≈ sigma · √d = 0.8 at the default, against centre norm 1), then L2-normalised,
as sentence embeddings are. Labels only score. One record per (k, method, seed), appended to
``--out``; a run already there is skipped.

    PYTHONPATH=src python benchmarks/large_k_generated.py --ks 250,500,1000 --seeds 0,1,2
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from deepclust import metrics
from deepclust.methods import make_method
from deepclust.runtime import machine_load, versions

METHODS = {  # label → (catalogue name, parameters)
    "kmeans": ("kmeans", {}),
    "scan[n_heads=1]": ("scan", {"n_heads": 1}),
    "scan": ("scan", {}),
    "sela": ("sela", {}),
}


def mixture(k: int, per: int, dim: int, sigma: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``k × per`` unit vectors around ``k`` random unit centres (see the module notes) and their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    y = np.repeat(np.arange(k), per)
    X = centres[y] + sigma * rng.normal(size=(len(y), dim))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    order = rng.permutation(len(y))
    return X[order].astype(np.float32), y[order]


def table_of(records: list[dict]) -> str:
    """Mean ± std over seeds per (k, method): ACC, NMI, the fewest non-empty clusters, the largest
    cluster over n/k, seconds and their multiple of k-means' in the same runs."""
    from deepclust.bench import mean_std  # noqa: PLC0415

    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["k"], r["label"]), []).append(r)
    seconds = {g: mean_std([r["seconds"] for r in rs])[0] for g, rs in groups.items()}
    ms = lambda rs, key, digits: "{:.{d}f} ± {:.{d}f}".format(*mean_std([r[key] for r in rs]), d=digits)  # noqa: E731
    lines = ["| k | n | method | seeds | ACC | NMI | non-empty (min) | largest ÷ n/k (max) | seconds | × k-means |",
             "|---:|---:|---|---:|---|---|---:|---:|---|---:|"]
    for (k, label), rs in sorted(groups.items(), key=lambda g: (g[0][0], list(METHODS).index(g[0][1]))):
        lines.append(f"| {k} | {rs[0]['n']:,} | {label} | {len(rs)} | {ms(rs, 'acc', 3)} | {ms(rs, 'nmi', 3)} | "
                     f"{min(r['non_empty'] for r in rs)} | {max(r['largest_over_mean'] for r in rs):.2f} | "
                     f"{ms(rs, 'seconds', 1)} | {seconds[k, label] / seconds[k, 'kmeans']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ks", default="250,500,1000")
    ap.add_argument("--per", type=int, default=40, help="samples per cluster")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--sigma", type=float, default=0.1)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="benchmarks/results/large-k-generated.jsonl")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    done = set()
    if out.exists():
        done = {(r["k"], r["label"], r["seed"]) for r in map(json.loads, out.read_text().splitlines())}
    for k in map(int, args.ks.split(",")):
        for seed in map(int, args.seeds.split(",")):
            X, y = mixture(k, args.per, args.dim, args.sigma, seed)
            for label in args.methods.split(","):
                if (k, label, seed) in done:
                    continue
                name, params = METHODS[label]
                load = machine_load()
                t0 = time.perf_counter()
                model = make_method(name, n_clusters=k, random_state=seed, device="cpu", **params).fit(X)
                seconds = time.perf_counter() - t0
                sizes = np.bincount(model.labels_, minlength=k)
                rec = {"label": label, "method": name, "params": params, "k": k, "n": len(y), "dim": args.dim,
                       "sigma": args.sigma, "seed": seed, "acc": metrics.accuracy(y, model.labels_),
                       "nmi": metrics.nmi(y, model.labels_), "non_empty": int((sizes > 0).sum()),
                       "largest_over_mean": float(sizes.max() / (len(y) / k)), "seconds": round(seconds, 2),
                       "timings": {a: round(b, 2) for a, b in (getattr(model, "timings_", None) or {}).items()},
                       "device": "cpu (1 thread)", **load, "versions": versions(),
                       "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S")}
                with out.open("a") as f:
                    f.write(json.dumps(rec) + "\n")
                print(json.dumps({a: rec[a] for a in ("k", "label", "seed", "acc", "nmi", "non_empty",
                                                      "largest_over_mean", "seconds")}), flush=True)


if __name__ == "__main__":
    main()
