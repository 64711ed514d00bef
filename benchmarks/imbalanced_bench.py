"""Long-tailed clustering: k-means, GMM, SeLa, SCAN, P²OT and SP²OT side by side on the same features.

Long-tailed subsets are built as CIFAR-100-LT is (Cao et al., NeurIPS 2019; the P²OT paper's
protocol): with K classes in a seeded random order, class i keeps ``n_max · R^(-i/(K-1))`` samples,
drawn at random, where n_max is the smallest class's size in the full set and R = n_max / n_min the
imbalance ratio. The rule is the committed record of the indices: ``long_tail_indices(y, R,
seed=subset_seed)`` gives them back exactly (subset seed 0 for every run here).

Features (``--datasets`` items ``NAME`` or ``NAME:ENCODER``): the UCI tables z-scored column by
column (``standardized``), the short-text sets by MiniLM (from the project's embedding cache), the
images as raw pixels (``raw``, flattened, in [0, 1]) or any encoder name (``efficientnet-lite0``).
Every set is encoded whole, then subset, so the cache is the one of the full set.

Methods, each with its catalogue defaults: ``kmeans``, ``gmm`` (full covariance up to 64 features,
diagonal above: a full one on 384-1280 features is neither cheap nor well-posed at these n),
``sela`` (equal sizes), ``sela-prior`` (SeLa given the true class proportions, see
:func:`true_prior`: an upper reference that **uses label information**, marked so in the records and
the table),
``scan``, ``p2ot``, ``sp2ot`` (both start from k-means: head and prior, the defaults), ``p2ot-paper``
(P²OT from the paper's start: a random head and a uniform prior), ``p2ot-uniform`` (the k-means head with the
paper's uniform prior).

Scores: ACC, NMI; head / medium / tail accuracy (the classes split in thirds by size, each class's
samples counted right when their cluster is the one matched to their class by the Hungarian
matching of the whole clustering); and the size error: half the L1 distance between the sorted
found cluster sizes and the sorted true class sizes, as a share of n. Labels are used only to score
(and, for ``sela-prior`` only, to give the sizes).

One record per run, appended as it finishes; a run whose (data set, encoder, method, seed) is in
``--out`` already is skipped, so an interrupted call resumes and more seeds can be added later.

    PYTHONPATH=src python benchmarks/imbalanced_bench.py --datasets searchsnippets,mnist-test:raw \
        --ratios 100,50,10 --methods kmeans,gmm,sela,sela-prior,scan,p2ot,sp2ot --seeds 0,1,2 \
        --out benchmarks/results/imbalanced-v2.jsonl
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from deepclust import metrics
from deepclust.data import load_dataset
from deepclust.encoders.api import encode_with_info
from deepclust.methods import make_method
from deepclust.runtime import versions
from deepclust.targets import kmeans_target


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


TABLES = ("pendigits", "optdigits", "satimage", "letter")

USES_LABELS = ("sela-prior",)


def default_encoder(name: str) -> str:
    if name in TABLES:
        return "standardized"
    return "raw" if load_dataset(name).meta.modality == "image" else "minilm"


def features(spec: str) -> tuple[np.ndarray, np.ndarray, str, str]:
    """(X, y, data set name, encoder) of ``NAME`` or ``NAME:ENCODER``: the whole set, encoded."""
    name, _, enc = spec.partition(":")
    enc = enc or default_encoder(name)
    ds = load_dataset(name)
    if enc == "standardized":
        X = np.asarray(ds.X, dtype=np.float32).reshape(len(ds.X), -1)
        std = X.std(0)
        return (X - X.mean(0)) / np.where(std > 0, std, 1), np.asarray(ds.y), name, enc
    Z, _ = encode_with_info(ds, enc, device="cpu")
    return np.asarray(Z, dtype=np.float32).reshape(len(Z), -1), np.asarray(ds.y), name, enc


def true_prior(X: np.ndarray, y: np.ndarray, k: int, seed: int) -> list[float]:
    """The upper reference's prior: the true class proportions, given to the clusters of SeLa's own
    k-means start (on the L2-normalised rows, same seed) by rank of size, so the biggest class's share
    goes to the cluster the start made biggest (in a fixed order the transport would fight the start)."""
    z = torch.nn.functional.normalize(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)), dim=1) * X.shape[1] ** 0.5
    start = kmeans_target(z, k, seed=seed)[0].numpy()
    rank = np.argsort(-np.bincount(start, minlength=k), kind="stable")
    sizes = np.sort(np.bincount(np.unique(y, return_inverse=True)[1]))[::-1]
    prior = np.empty(k)
    prior[rank] = sizes / sizes.sum()
    return prior.tolist()


def build(method: str, k: int, seed: int, X: np.ndarray, y: np.ndarray):
    """The estimator of ``method`` (see the module notes) for these data."""
    if method == "gmm":
        return make_method("gmm", n_clusters=k, random_state=seed, device="cpu",
                           covariance_type="full" if X.shape[1] <= 64 else "diag")
    if method == "p2ot-paper":  # the paper's start: a random head and a uniform prior
        return make_method("p2ot", n_clusters=k, random_state=seed, device="cpu", init="random", prior=None)
    if method == "p2ot-uniform":  # the k-means head with the paper's uniform prior
        return make_method("p2ot", n_clusters=k, random_state=seed, device="cpu", init="kmeans", prior=None)
    if method == "sela-prior":
        return make_method("sela", n_clusters=k, random_state=seed, device="cpu", prior=true_prior(X, y, k, seed))
    return make_method(method, n_clusters=k, random_state=seed, device="cpu")


COLS = ("acc", "nmi", "head", "medium", "tail", "size_error")


def _label(method: str) -> str:
    return f"{method} (true prior: uses labels)" if method in USES_LABELS else method


METHOD_ORDER = ("kmeans", "gmm", "sela", "scan", "p2ot-paper", "p2ot-uniform", "p2ot", "sp2ot", "sela-prior")


def _order(method: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def _groups(records: list[dict]) -> dict[tuple, list[dict]]:
    """Records by (ratio, data set, features, method), largest ratio first, methods in METHOD_ORDER."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["imbalance_ratio"], r["dataset"], r.get("encoder", ""), r["method"]), []).append(r)
    return dict(sorted(groups.items(), key=lambda kv: (-kv[0][0], kv[0][1], kv[0][2], _order(kv[0][3]))))


def table_of(records: list[dict], full: bool = False) -> str:
    """Markdown. Compact (default): one row per (data set, features), one column per method holding
    ACC mean ± std over seeds / tail accuracy; ``full``: one row per method with every score. Then
    :func:`summary_of`."""
    groups = _groups(records)
    if full:
        lines = ["| data set | features | n | method | seeds | " + " | ".join(COLS) + " | seconds |",
                 "|---|---|---:|---|---:|" + "---:|" * (len(COLS) + 1)]
        for (_, ds, enc, method), rs in groups.items():
            cells = [f"{np.mean([r[c] for r in rs]):.3f} ± {np.std([r[c] for r in rs]):.3f}" for c in COLS]
            lines.append(f"| {ds} | {enc} | {rs[0]['n']} | {_label(method)} | {len(rs)} | " + " | ".join(cells)
                         + f" | {np.mean([r['seconds'] for r in rs]):.1f} |")
        return "\n".join(lines) + "\n\n" + summary_of(records)
    methods = sorted({key[3] for key in groups}, key=_order)
    rows: dict[tuple, dict[str, list[dict]]] = {}
    for (ratio, ds, enc, method), rs in groups.items():
        rows.setdefault((ds, enc), {})[method] = rs
    lines = ["| data set | features | n | seeds | " + " | ".join(_label(m) for m in methods) + " |",
             "|---|---|---:|---:|" + "---|" * len(methods)]
    for (ds, enc), by in rows.items():
        any_rs = next(iter(by.values()))
        seeds = sorted({len(rs) for rs in by.values()})
        cells = [(f"{np.mean([r['acc'] for r in by[m]]):.3f} ± {np.std([r['acc'] for r in by[m]]):.3f} / "
                  f"{np.mean([r['tail'] for r in by[m]]):.2f}") if m in by else "–" for m in methods]
        lines.append(f"| {ds} | {enc} | {any_rs[0]['n']} | {'-'.join(map(str, seeds))} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + summary_of(records)


def summary_of(records: list[dict]) -> str:
    """Per imbalance ratio: each method's ACC, tail accuracy and size error averaged over the (set,
    features) pairs on which every method of that ratio has records (seed means first). A method run on
    fewer than half of that ratio's pairs is left out of its summary (and named below the table)."""
    key = lambda r: (r["dataset"], r.get("encoder", ""))  # noqa: E731
    lines = ["| R | pairs | method | mean ACC | mean tail | mean size error |", "|---:|---:|---|---:|---:|---:|"]
    left_out = []
    for ratio in sorted({r["imbalance_ratio"] for r in records}, reverse=True):
        rs = [r for r in records if r["imbalance_ratio"] == ratio]
        all_pairs = {key(r) for r in rs}
        cover = {m: {key(r) for r in rs if r["method"] == m} for m in {r["method"] for r in rs}}
        methods = sorted((m for m in cover if 2 * len(cover[m]) >= len(all_pairs)), key=_order)
        left_out += [f"{m} at R = {int(ratio)} ({len(cover[m])} of {len(all_pairs)} pairs)"
                     for m in sorted(set(cover) - set(methods), key=_order)]
        pairs = sorted(set.intersection(*(cover[m] for m in methods))) if methods else []
        for m in methods if pairs else []:
            per = [[r for r in rs if key(r) == p and r["method"] == m] for p in pairs]
            means = {c: np.mean([np.mean([r[c] for r in g]) for g in per]) for c in ("acc", "tail", "size_error")}
            lines.append(f"| {int(ratio)} | {len(pairs)} | {_label(m)} | {means['acc']:.3f} | {means['tail']:.3f} | "
                         f"{means['size_error']:.3f} |")
    return "\n".join(lines) + (f"\n\nLeft out of the summary: {'; '.join(left_out)}." if left_out else "")


def _done(out: Path) -> set[tuple]:
    if not out.is_file():
        return set()
    return {(r["dataset"], r.get("encoder"), r["method"], r["seed"])
            for r in map(json.loads, filter(str.strip, out.read_text().splitlines()))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="pendigits,optdigits", help="NAME or NAME:ENCODER, comma-separated")
    ap.add_argument("--ratios", default="100,10")
    ap.add_argument("--methods", default="kmeans,gmm,sela,sela-prior,scan,p2ot,sp2ot")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="benchmarks/results/imbalanced-v2.jsonl")
    ap.add_argument("--table", action="store_true", help="print the table of --out (comma-separated files) and stop")
    ap.add_argument("--full", action="store_true", help="with --table: every score of every method")
    args = ap.parse_args()
    if args.table:
        print(table_of([json.loads(line) for path in args.out.split(",") for line in Path(path).read_text().splitlines()
                        if line.strip()], full=args.full))
        return
    out = Path(args.out)
    torch.set_num_threads(1)
    done = _done(out)
    for spec in args.datasets.split(","):
        X_all, y_all, name, enc = features(spec)
        for ratio in [float(r) for r in args.ratios.split(",")]:
            idx = long_tail_indices(y_all, ratio, seed=0)
            X, y = X_all[idx], y_all[idx]
            k = len(np.unique(y))
            for method in args.methods.split(","):
                for seed in [int(s) for s in args.seeds.split(",")]:
                    dataset = f"{name}-LT{int(ratio)}"
                    if (dataset, enc, method, seed) in done:
                        continue
                    load = os.getloadavg()
                    t0 = time.perf_counter()
                    labels = build(method, k, seed, X, y).fit(X).labels_
                    rec = {"method": method, "dataset": dataset, "encoder": enc, "seed": seed,
                           "uses_labels": method in USES_LABELS, "subset_seed": 0, "imbalance_ratio": ratio,
                           "n": int(len(y)), "d": int(X.shape[1]), "k": k,
                           "acc": metrics.accuracy(y, labels), "nmi": metrics.nmi(y, labels),
                           **group_accuracy(y, labels), "size_error": size_error(y, labels),
                           "seconds": round(time.perf_counter() - t0, 2), "device": "cpu (1 thread)", "threads": 1,
                           "load_avg": list(load), "cpu_count": os.cpu_count(), "versions": versions()}
                    print(json.dumps({k_: rec[k_] for k_ in ("method", "dataset", "encoder", "seed", "acc", "tail",
                                                              "seconds")}), flush=True)
                    with out.open("a") as f:
                        f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
