"""When the user knows a little (issue 18): a few labels against the unsupervised best on the same features.

For each set, seed and fraction of labels (1 %, 5 %, 10 %, drawn uniformly at random with the seed),
``deepclust.pipeline.run_clustering`` fits seeded-kmeans and constrained-kmeans (Basu et al. 2002)
transductive-fewshot (Ziko et al. 2021; default λ = 1, 10 neighbours) and umap-spreading (label spreading,
Zhou et al. 2004, over the K-NN graph of the label-free UMAP layout; its defaults) with those labels;
the unsupervised baselines on the same features are fitted once per seed: k-means and the pipelines
of ``deepclust run``'s search at the true k (UMAP + k-means, UMAP + GMM; ``UNSUPERVISED``).
Every ACC/NMI is measured on the samples left unlabelled at that fraction only, the baselines'
included, so the rows compare like with like. One thread (OMP_NUM_THREADS=1), the load average in
every record.

    python benchmarks/semisup_bench.py --out benchmarks/results/semisup.jsonl   # the first records (seeds 0-2)
    python benchmarks/semisup_bench.py --methods umap-spreading --out benchmarks/results/semisup-v2.jsonl
    python benchmarks/semisup_bench.py --seeds 3,4 --fractions 0.01 --out benchmarks/results/semisup-v2.jsonl
    python benchmarks/semisup_bench.py --methods tim --no-baselines --out benchmarks/results/semisup-tim.jsonl
    python benchmarks/semisup_bench.py --methods few-labels --fractions 0.01 --seeds 0,1,2,3,4 \
        --out benchmarks/results/semisup-auto-v2.jsonl   # few-labels with TIM among its candidates
    python benchmarks/semisup_bench.py --methods few-labels --fractions 0.01 --seeds 0,1,2,3,4 \
        --out benchmarks/results/semisup-auto-v3.jsonl   # ... and cluster-then-label (3 folds; v4: 5 folds)
    python benchmarks/semisup_bench.py --ceiling --out benchmarks/results/semisup-ceiling.jsonl   # every label
    python benchmarks/semisup_bench.py --table benchmarks/results/semisup.jsonl benchmarks/results/semisup-v2.jsonl
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

#: (set, encoder): raw features of the image and table sets, the autoencoder embedding of the two pixel
#: image sets (what ``deepclust run`` also tries there), cached MiniLM embeddings of the four text sets
SETS = (("usps", "raw"), ("usps", "autoencoder"), ("mnist-test", "raw"), ("mnist-test", "autoencoder"),
        ("pendigits", "raw"), ("optdigits", "raw"), ("searchsnippets", "minilm"), ("agnews-8k", "minilm"),
        ("stackoverflow", "minilm"), ("biomedical", "minilm"))
#: the UMAP pipelines of ``deepclust run``'s search (one shared layout), fitted at the true k; "unsupervised
#: best" is the best of them and k-means by mean ACC (an oracle choice: a high bar). Ward, the search's
#: fourth candidate, is left out for time (O(n²); it was below UMAP + k-means on every set where it ran).
UNSUPERVISED = ("umap+kmeans", "umap+gmm")
FRACTIONS = (0.01, 0.05, 0.10)
#: ``@umap``: the method run on the UMAP layout of the unsupervised pipelines (label-free; the representation the
#: unsupervised best clusters) instead of the features themselves
SINGLE = ("seeded-kmeans", "constrained-kmeans", "transductive-fewshot", "transductive-fewshot@umap", "umap-spreading",
          "tim")
#: ``few-labels``: the one of them chosen by 3-fold cross-validation on the given labels (not run by default)
METHODS = (*SINGLE, "few-labels")
NAMES = {"kmeans": "k-means", "unsupervised": "unsupervised best", "seeded-kmeans": "seeded k-means",
         "constrained-kmeans": "constrained k-means", "transductive-fewshot": "transductive few-shot",
         "transductive-fewshot@umap": "transductive few-shot on the UMAP layout",
         "umap-spreading": "label spreading on the UMAP layout", "tim": "TIM",
         "few-labels": "few-labels (chosen by CV)"}


def partial_labels(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """``y`` with all but ``round(fraction · n)`` uniformly drawn samples set to -1 (unlabelled)."""
    rng = np.random.default_rng([seed, int(round(fraction * 1000))])
    out = np.full(len(y), -1, dtype=np.int64)
    idx = rng.choice(len(y), int(round(fraction * len(y))), replace=False)
    out[idx] = y[idx]
    return out


def unsupervised(X: np.ndarray, k: int, seed: int) -> tuple[list[tuple[str, np.ndarray, float]], np.ndarray]:
    """(name, labels, seconds) of the ``UNSUPERVISED`` pipelines on one UMAP layout of ``X`` (as the search),
    and that layout."""
    from deepclust.search import LAYOUT, Candidate, _fit_labels
    from deepclust.reduction import umap_layout

    X = np.asarray(X, dtype=np.float32).reshape(len(X), -1)
    layout = umap_layout(X, random_state=seed, **LAYOUT)
    out = []
    for name in UNSUPERVISED:
        t0 = time.perf_counter()
        c = Candidate(name, "umap", {"clusterer": name.split("+")[1], **LAYOUT})
        out.append((name, _fit_labels(c, X, layout, k, seed, "cpu"), time.perf_counter() - t0))
    return out, layout


def measure(name: str, encoder: str, seeds: list[int], methods: tuple[str, ...] = SINGLE,
            fractions: tuple[float, ...] = FRACTIONS, baselines: bool = True) -> list[dict[str, Any]]:
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
        unsup, layout = unsupervised(features[0], k, seed) if baselines else ([], None)
        on_layout = (layout, {"name": "umap-layout", "dim": 10})
        for fraction in fractions:
            y = partial_labels(ds.y, fraction, seed)
            rest = y < 0
            rows = [("kmeans", base.labels, base.seconds["fit"], {}), *((*u, {}) for u in unsup)] if baselines else []
            for method in methods:
                if method.endswith("@umap") and layout is None:
                    continue
                res = run_clustering(ds, method.removesuffix("@umap"), k, seed=seed, device="cpu",
                                     features=on_layout if method.endswith("@umap") else features,
                                     supervision=Supervision(y))
                assert res.supervision["n_scored"] == int(rest.sum())
                chooser = {"chosen": res.model.chosen_, "cv_scores": res.model.cv_scores_,
                           "cv_margin": getattr(res.model, "cv_margin_", None),
                           "cv_seconds": res.model.cv_seconds_} if method == "few-labels" else {}
                rows.append((method, res.labels, res.seconds["fit"], chooser))
            for method, labels, fit_s, chooser in rows:
                records.append({
                    "benchmark": "semisup", "dataset": name, "protocol": ds.meta.protocol, "encoder": encoder,
                    "method": method, "seed": seed, "label_fraction": fraction, "n": len(ds), "k": k,
                    "n_labelled": int((~rest).sum()), "n_scored": int(rest.sum()),
                    "acc": metrics.accuracy(ds.y[rest], labels[rest]), "nmi": metrics.nmi(ds.y[rest], labels[rest]),
                    "ari": metrics.ari(ds.y[rest], labels[rest]), "seconds_fit": fit_s, **chooser,
                    "threads": 1, "device_name": base.device_name, **machine_load(), "versions": versions(),
                    "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
                })
                print(f"{name:<15} {encoder:<7} seed {seed} {fraction:>5.0%} {method:<26} ACC {records[-1]['acc']:.4f}",
                      flush=True)
    return records


def ceiling(name: str, encoder: str) -> dict[str, Any]:
    """What every label would reach on these features: stratified 5-fold cross-validated accuracy of a
    logistic regression and of a 15-NN vote on the features, and of a 15-NN vote on the label-free UMAP
    layout of ``deepclust run`` (seed 0), each trained on 4/5 of *all* the labels. A bound on what a
    method can reach from 1 % of them, beside which the issue's "+5 over the unsupervised best" is read."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    from deepclust.data import load_dataset
    from deepclust.encoders.api import encode_with_info
    from deepclust.reduction import umap_layout
    from deepclust.runtime import machine_load, versions
    from deepclust.search import LAYOUT

    ds = load_dataset(name)
    X = np.asarray(encode_with_info(ds, encoder, cache=True, random_state=0)[0], dtype=np.float32)
    X = X.reshape(len(X), -1)
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    t0 = time.perf_counter()
    scores = {"logistic_regression": LogisticRegression(max_iter=2000), "knn15_features": KNeighborsClassifier(15)}
    out = {m: float(cross_val_score(est, X, ds.y, cv=folds).mean()) for m, est in scores.items()}
    out["knn15_layout"] = float(cross_val_score(KNeighborsClassifier(15), umap_layout(X, random_state=0, **LAYOUT),
                                                ds.y, cv=folds).mean())
    return {"benchmark": "semisup-ceiling", "dataset": name, "encoder": encoder, "n": len(ds), "k": ds.meta.n_classes,
            "protocol": "stratified 5-fold cross-validation over every label (seed 0); scikit-learn defaults, "
                        "LogisticRegression(max_iter=2000), KNeighborsClassifier(15)", **out,
            "seconds": round(time.perf_counter() - t0, 1), **machine_load(), "versions": versions(),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S")}


def ceiling_table(records: list[dict[str, Any]]) -> str:
    """Per (set, features): the ceilings of :func:`ceiling`, the unsupervised best at 1 % (as in :func:`table_of`:
    of k-means and the UMAP pipelines, the one of the best mean ACC over the seeds few-labels ran, on their
    unlabelled samples), the +5 target and few-labels' mean at 1 %, from the ``semisup`` records given with them."""
    ceil = {(r["dataset"], r["encoder"]): r for r in records if r.get("benchmark") == "semisup-ceiling"}
    runs: dict[tuple, dict[int, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in records:
        if r.get("benchmark") == "semisup" and r["label_fraction"] == 0.01:
            runs[(r["dataset"], r["encoder"])][r["seed"]][r["method"]] = r["acc"]
    lines = ["| set | features | n | logistic regression, every label | 15-NN on the features, every label | "
             "15-NN on the UMAP layout, every label | unsupervised best (1 %) | + 5 points | few-labels (1 %) | "
             "+5 within the ceiling? |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    scores = ("logistic_regression", "knn15_features", "knn15_layout")
    for key in sorted(ceil):
        c = ceil[key]
        runs_auto = [accs for accs in runs.get(key, {}).values() if "few-labels" in accs]
        names = [m for m in ("kmeans", *UNSUPERVISED) if runs_auto and all(m in accs for accs in runs_auto)]
        cells = [f"{c[s]:.3f}" for s in scores] + ["–"] * 4
        if names:
            unsup = max(np.mean([accs[m] for accs in runs_auto]) for m in names)
            target = unsup + 0.05
            cells[3:] = [f"{unsup:.3f}", f"{target:.3f}", f"{np.mean([a['few-labels'] for a in runs_auto]):.3f}",
                         "yes" if target <= max(c[s] for s in scores) else "**no**"]
        lines.append(f"| {key[0]} | {key[1]} | {c['n']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: short names of few-labels' candidates, for the table's "chosen by CV" column
SHORT = {"constrained-kmeans": "ckm", "transductive-fewshot": "tfs", "transductive-fewshot@umap": "tfs@umap",
         "umap-spreading": "spread", "tim": "tim", "cluster-then-label": "ctl"}


def _chosen_cell(chosen: list[str], by: dict[str, list[float]]) -> str:
    """How often cross-validation chose each candidate, and how often the candidate of the best mean ACC
    in the row (among those measured)."""
    if not chosen:
        return "–"
    counts = ", ".join(f"{SHORT[c]} {chosen.count(c)}" for c in SHORT if c in chosen)
    measured = [c for c in SHORT if by.get(c)]
    if not measured:
        return counts
    best = max(measured, key=lambda c: np.mean(by[c]))
    return f"{counts} (best of row, {SHORT[best]}: {chosen.count(best)}/{len(chosen)})"


def _paired_gain(chosen: list[tuple[int, str]], unsup: str, acc_of: dict[tuple, float], row: tuple) -> str:
    """few-labels' mean ACC minus the unsupervised best's (the method of the row) on the same seeds, with
    their number where it is not every seed of the row."""
    pairs = [(acc_of[(*row, "few-labels", s)], acc_of.get((*row, unsup, s))) for s, _ in chosen]
    pairs = [(a, b) for a, b in pairs if b is not None]
    if not pairs:
        return " – |"
    return f" {100 * np.mean([a - b for a, b in pairs]):+.1f} points ({len(pairs)} seeds) |"


def table_of(records: list[dict[str, Any]]) -> str:
    """Mean ± std ACC on the unlabelled samples, per set and fraction of labels: k-means, the best
    unsupervised pipeline of ``deepclust run``'s search on the same features (by mean ACC, where measured)
    and each supervised method; the gain of the best single supervised method over the unsupervised
    best, that of umap-spreading alone and that of few-labels (where measured), and which candidate
    few-labels' cross-validation chose on how many seeds."""
    latest = {(r["dataset"], r["encoder"], r["label_fraction"], r["method"], r["seed"]): r for r in records}
    groups: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    seeds: dict[tuple, set[int]] = defaultdict(set)
    chosen: dict[tuple, list[str]] = defaultdict(list)
    acc_of = {(r["dataset"], r["encoder"], r["label_fraction"], r["method"], r["seed"]): r["acc"] for r in latest.values()}
    for r in latest.values():  # one record per set, features, fraction, method and seed (a rerun replaces)
        groups[(r["dataset"], r["encoder"], r["label_fraction"])][r["method"]].append(r["acc"])
        seeds[(r["dataset"], r["encoder"], r["label_fraction"])].add(r["seed"])
        if r.get("chosen"):
            chosen[(r["dataset"], r["encoder"], r["label_fraction"])].append((r["seed"], r["chosen"]))
    shown = [m for m in ("kmeans", *METHODS) if any(m in by for by in groups.values())]
    with_unsup = any(m in by for by in groups.values() for m in UNSUPERVISED)
    header = " | ".join(NAMES[m] for m in shown[:1] + (["unsupervised"] if with_unsup else []) + shown[1:])
    own = "umap-spreading" in shown  # the gain of the one method a user would run, beside the best of them all
    auto = "few-labels" in shown  # the method that chooses among them with the given labels
    lines = [f"| set | features | labels | {header} | gain (best single method − unsupervised best) |"
             + (" gain of label spreading |" if own else "")
             + (" gain of few-labels (same seeds) | chosen by CV (seeds) |" if auto else "") + " seeds |",
             "|---|---|---:|" + "---:|" * (len(shown) + with_unsup + own + 2 * auto) + "---:|---:|"]
    gain = lambda m, by, unsup: (f" {100 * (np.mean(by[m]) - np.mean(by[unsup])):+.1f} points |"  # noqa: E731
                                 if by.get(m) else " – |")
    ms = lambda v: f"{np.mean(v):.3f} ± {np.std(v):.3f}" if v else "–"  # noqa: E731
    for (name, encoder, fraction), by in sorted(groups.items()):
        unsup = max(("kmeans", *UNSUPERVISED), key=lambda m: np.mean(by[m]) if by.get(m) else -1.0)
        best = max(np.mean(by[m]) for m in SINGLE if by.get(m))
        cells = [ms(by.get("kmeans", []))]
        if with_unsup:
            cells.append(f"{ms(by[unsup])} ({NAMES.get(unsup, unsup)})")
        cells += [ms(by.get(m, [])) for m in shown[1:]]
        lines.append(f"| {name} | {encoder} | {fraction:.0%} | " + " | ".join(cells)
                     + f" | {100 * (best - np.mean(by[unsup])):+.1f} points |"
                     + (gain("umap-spreading", by, unsup) if own else "")
                     + (_paired_gain(chosen[(name, encoder, fraction)], unsup, acc_of, (name, encoder, fraction))
                        + f" {_chosen_cell([c for _, c in chosen[(name, encoder, fraction)]], by)} |" if auto else "")
                     + f" {len(seeds[(name, encoder, fraction)])} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(dict.fromkeys(s for s, _ in SETS)))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default=",".join(SINGLE),
                        help=f"supervised methods (k-means always runs): any of {', '.join(METHODS)}")
    parser.add_argument("--fractions", default=",".join(map(str, FRACTIONS)), help="fractions of labelled samples")
    parser.add_argument("--no-baselines", action="store_true",
                        help="records of the given methods only (no k-means or UMAP pipelines, no layout: methods "
                             "on the layout are skipped), for a method added to an earlier run")
    parser.add_argument("--ceiling", action="store_true",
                        help="instead: what every label would reach on each set's features (ceiling())")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--table", type=Path, nargs="*")
    args = parser.parse_args()
    if args.table:
        from tables import read_jsonl

        records = read_jsonl(args.table)
        print(ceiling_table(records) if args.ceiling else table_of(records))
        return 0
    import torch

    torch.set_num_threads(1)
    for item in args.sets.split(","):  # NAME (every encoder SETS lists for it) or NAME:ENCODER
        name, _, enc = item.partition(":")
        for encoder in [enc] if enc else [e for s, e in SETS if s == name] or ["raw"]:
            if args.ceiling:
                with open(args.out, "a") as fh:
                    fh.write(json.dumps(ceiling(name, encoder)) + "\n")
                continue
            for seed in [int(s) for s in args.seeds.split(",")]:  # records written seed by seed
                records = measure(name, encoder, [seed], tuple(args.methods.split(",")),
                                  fractions=tuple(float(f) for f in args.fractions.split(",")),
                                  baselines=not args.no_baselines)
                with open(args.out, "a") as fh:
                    fh.writelines(json.dumps(r) + "\n" for r in records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
