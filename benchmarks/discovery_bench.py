"""Novel-class discovery and generalized category discovery (issue 18, methods 5 and 6), CPU.

**NCD** (Troisemaine et al., "A Practical Approach to Novel Class Discovery in Tabular Data", DMKD
2024, arXiv 2311.05440) on the four of its seven data sets that are built in — pendigits, letter,
optdigits and multiple features (the paper uses the mfeat-fac view only: columns 76-291 of ours) —
with its known/novel classes (the authors' ``src/dataset_utils.py``), its preprocessing (features
standardised with the training split's statistics; constant columns dropped) and its evaluation:
fit on the training split (known classes labelled, novel classes unlabelled), ACC on the *test*
split's novel samples (nearest novel centre, :meth:`predict_novel`; NCD spectral clustering is fitted
on the test split, as in the authors' notebook). Splits: UCI's for pendigits and optdigits, UCI's
16,000/4,000 for letter (the paper: a random 70/30 split without a seed), and the paper's
``train_test_split(test_size=0.2, random_state=42)`` for multiple features. Each method runs once
with the number of novel classes estimated (``n_novel="auto"``, silhouette) and is scored with the
true number too; PBN (its defaults, not tuned: latent 16, w 0.5, lr 1e-3, dropout 0.1, 200 epochs)
is trained once per seed and its latent space clustered both ways.

Published numbers: the per-data-set tables of the paper (its Tables 3-5) are images in every copy
this project could read (arXiv abstract, HackerNoon serialisation, ResearchGate excerpt); we could
not read them, so ``PUBLISHED`` is empty rather than guessed. Its text states only that PBN reaches
71.0 % average ACC over the seven sets when the number of novel classes is estimated.

**GCD** (Zhao, Wen & Han, ICCV 2023, GPC's mixture part on frozen features): known classes = the
first half of the class ids, half of their samples labelled (drawn with the seed); ACC on the
unlabelled samples, over all of them and on the known / novel classes (one Hungarian matching on all
unlabelled samples, as Vaze et al.'s GCD protocol), and the estimated number of classes against the
truth. Baseline: semi-supervised (constrained) k-means given the true number of classes. Raw
pendigits and USPS, cached MiniLM embeddings of searchsnippets and stackoverflow. GPC's published
numbers are for images (CIFAR, ImageNet-100, CUB, …) with fine-tuned ViT features: not comparable.

    python benchmarks/discovery_bench.py --part ncd --out benchmarks/results/discovery.jsonl
    python benchmarks/discovery_bench.py --part ncd --tuned --sets mfeat,optdigits --seeds 0 --out ...
    python benchmarks/discovery_bench.py --part gcd --seeds 0,1,2,3,4 --out benchmarks/results/discovery.jsonl
    python benchmarks/discovery_bench.py --table benchmarks/results/discovery.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

os.environ["OMP_NUM_THREADS"] = "1"  # one thread, before torch is imported (the records say so)
os.environ.setdefault("DEEPCLUST_NO_PROGRESS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

#: the paper's known and novel classes (class ids as the authors encode them: digits, letters A=0 … Z=25)
NCD_SPLITS = {
    "mfeat": ([0, 2, 5, 4, 8], [7, 3, 1, 9, 6]),
    "optdigits": ([2, 1, 9, 8, 7], [3, 6, 0, 5, 4]),
    "pendigits": ([1, 2, 4, 8, 9], [0, 3, 5, 6, 7]),
    "letter": ([1, 2, 4, 5, 6, 8, 9, 10, 11, 13, 14, 16, 17, 18, 19, 20, 22, 24, 25], [0, 3, 7, 12, 15, 21, 23]),
}
MFEAT_FAC = slice(76, 292)  # the mfeat-fac view in our concatenation (fou 76, fac 216, kar, pix, zer, mor)
#: published test ACC of the paper, by (data set, method, "true k" | "estimated k"); see the module notes
PUBLISHED: dict[tuple[str, str, str], float] = {}
GCD_SETS = (("pendigits", "raw"), ("usps", "raw"), ("searchsnippets", "minilm"), ("stackoverflow", "minilm"))
NAMES = {"kmeans": "k-means", "ncd-kmeans": "NCD k-means", "ncd-spectral": "NCD spectral", "pbn": "PBN",
         "pbn-tuned": "PBN, tuned on hidden known classes",
         "gpc": "GPC (GMM part)", "ss-kmeans": "SS-k-means (true k)"}


def _common(seed: int) -> dict[str, Any]:
    from deepclust.runtime import machine_load, versions

    return {"seed": seed, "threads": 1, **machine_load(), "versions": versions(),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S")}


# ---------------------------------------------------------------------------------------------- NCD
def ncd_data(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X_train, y_train, X_test, y_test), standardised with the training statistics, as the paper."""
    from sklearn.model_selection import train_test_split

    from deepclust.data import load_dataset

    ds = load_dataset(name)
    X, y = ds.X.reshape(len(ds), -1).astype(np.float64), ds.y
    if name == "mfeat":
        X = X[:, MFEAT_FAC]
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.20, random_state=42)
    else:
        train = ds.extra["split"] == "train"
        Xtr, Xte, ytr, yte = X[train], X[~train], y[train], y[~train]
    keep = Xtr.std(0) > 0
    mu, sd = Xtr[:, keep].mean(0), Xtr[:, keep].std(0)
    return (((Xtr[:, keep] - mu) / sd).astype(np.float32), ytr, ((Xte[:, keep] - mu) / sd).astype(np.float32), yte)


def measure_ncd(name: str, seeds: list[int], tuned: bool = False) -> list[dict[str, Any]]:
    from deepclust import metrics
    from deepclust.engines.discovery import NCDKMeans, NCDSpectralClustering, estimate_n_novel, ncd_kmeans
    from deepclust.engines.kmeans import KMeans
    from deepclust.methods.pbn import PBN

    Xtr, ytr, Xte, yte = ncd_data(name)
    known, novel = NCD_SPLITS[name]
    y_fit = np.where(np.isin(ytr, known), ytr, -1)
    y_test_fit = np.where(np.isin(yte, known), yte, -1)
    nov_tr, nov_te = y_fit < 0, y_test_fit < 0
    k_true = len(novel)
    records = []
    for seed in seeds:
        rows = []  # (method, setting, test novel labels, n_novel, seconds)
        for setting in () if tuned else ("estimated k", "true k"):
            n_novel = "auto" if setting == "estimated k" else k_true
            t0 = time.perf_counter()
            if setting == "estimated k":
                k_est, _ = estimate_n_novel(Xtr[nov_tr], random_state=seed, device="cpu")
                est_s = time.perf_counter() - t0
            km = KMeans(k_true if setting == "true k" else k_est, n_init=10, random_state=seed, device="cpu")
            km.fit(Xtr[nov_tr])
            rows.append(("kmeans", setting, km.predict(Xte[nov_te]), km.n_clusters, time.perf_counter() - t0))
            t0 = time.perf_counter()
            # with n_novel="auto" NCD k-means would repeat the estimate just made (same samples and seed)
            m = NCDKMeans(n_novel=k_true if setting == "true k" else k_est, device="cpu", random_state=seed)
            m.fit(Xtr, y_fit)
            rows.append(("ncd-kmeans", setting, m.predict_novel(Xte[nov_te]), m.n_novel_,
                         time.perf_counter() - t0 + (est_s if setting == "estimated k" else 0.0)))
            t0 = time.perf_counter()
            m = NCDSpectralClustering(n_novel=n_novel, device="cpu", random_state=seed).fit(Xte, y_test_fit)
            rows.append(("ncd-spectral", setting, m.labels_[nov_te], m.n_novel_, time.perf_counter() - t0))
        t0 = time.perf_counter()
        pbn = PBN(device="cpu", random_state=seed, tune=tuned).fit(Xtr, y_fit)
        fit_s = time.perf_counter() - t0
        label = "pbn-tuned" if tuned else "pbn"
        rows.append((label, "estimated k", pbn.predict_novel(Xte[nov_te]), pbn.n_novel_, fit_s))
        centres, _, _ = ncd_kmeans(pbn.transform(Xtr)[nov_tr], np.zeros((0, pbn.cluster_centers_.shape[1])), k_true,
                                   random_state=seed, device="cpu")
        Zte = pbn.transform(Xte[nov_te])
        rows.append((label, "true k", ((Zte[:, None] - centres[None]) ** 2).sum(2).argmin(1), k_true, fit_s))
        for method, setting, pred, n_found, seconds in rows:
            records.append({
                "benchmark": "ncd", "dataset": name, "method": method, "setting": setting,
                "known_classes": known, "novel_classes": novel, "n_train": len(Xtr), "n_test_novel": int(nov_te.sum()),
                "n_novel_true": k_true, "n_novel_found": int(n_found),
                "acc": metrics.accuracy(yte[nov_te], pred), "nmi": metrics.nmi(yte[nov_te], pred),
                "ari": metrics.ari(yte[nov_te], pred), "seconds": round(seconds, 2),
                **({"best_params": pbn.best_params_} if method == "pbn-tuned" else {}), **_common(seed)})
            print(f"ncd {name:<10} seed {seed} {method:<12} {setting:<11} k={n_found:<3} ACC {records[-1]['acc']:.3f} "
                  f"({seconds:.1f} s)", flush=True)
    return records


# ---------------------------------------------------------------------------------------------- GCD
def gcd_split(y: np.ndarray, seed: int) -> np.ndarray:
    """The usual GCD split: the first half of the classes known, half of their samples labelled."""
    k = len(np.unique(y))
    rng = np.random.default_rng([seed, 18])
    return np.where((y < k // 2) & (rng.random(len(y)) < 0.5), y, -1)


def gcd_accuracies(y_true: np.ndarray, y_pred: np.ndarray, known: np.ndarray) -> dict[str, float]:
    """ACC over all samples, and on the known / novel classes, under one Hungarian matching on all."""
    from scipy.optimize import linear_sum_assignment

    from deepclust.metrics import contingency_matrix

    m, classes, clusters = contingency_matrix(y_true, y_pred)
    rows, cols = linear_sum_assignment(m, maximize=True)
    mapping = {clusters[c]: classes[r] for r, c in zip(rows, cols)}
    hit = np.array([mapping.get(p, None) == t for p, t in zip(y_pred, y_true)])
    return {"acc_all": float(hit.mean()), "acc_known": float(hit[known].mean()), "acc_novel": float(hit[~known].mean())}


def measure_gcd(name: str, encoder: str, seeds: list[int]) -> list[dict[str, Any]]:
    from deepclust.data import load_dataset
    from deepclust.encoders.api import encode_with_info
    from deepclust.engines.constrained import SeededKMeans
    from deepclust.engines.gpc import GPC

    ds = load_dataset(name)
    X, _ = encode_with_info(ds, encoder, cache=True, random_state=0)
    X = X.reshape(len(X), -1).astype(np.float32)
    k = ds.meta.n_classes
    records = []
    for seed in seeds:
        y = gcd_split(ds.y, seed)
        rest = y < 0
        known = ds.y[rest] < k // 2
        rows = []
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ss = SeededKMeans(k, constrained=True, device="cpu", random_state=seed).fit(X, y)
        rows.append(("ss-kmeans", ss.labels_, k, time.perf_counter() - t0))
        t0 = time.perf_counter()
        g = GPC(device="cpu", random_state=seed).fit(X, y)
        rows.append(("gpc", g.labels_, g.n_clusters_found_, time.perf_counter() - t0))
        for method, labels, k_found, seconds in rows:
            records.append({"benchmark": "gcd", "dataset": name, "encoder": encoder, "method": method, "k_true": k,
                            "k_found": int(k_found), "n": len(X), "n_labelled": int((~rest).sum()),
                            **gcd_accuracies(ds.y[rest], labels[rest], known), "seconds": round(seconds, 2),
                            **_common(seed)})
            r = records[-1]
            print(f"gcd {name:<15} seed {seed} {method:<10} k={k_found:<3}/{k} all {r['acc_all']:.3f} known "
                  f"{r['acc_known']:.3f} novel {r['acc_novel']:.3f} ({seconds:.1f} s)", flush=True)
    return records


# ---------------------------------------------------------------------------------------------- tables
def _ms(v: list[float]) -> str:
    return f"{np.mean(v):.3f} ± {np.std(v):.3f}" if v else "–"


def table_of(records: list[dict[str, Any]]) -> str:
    """Two tables: NCD test ACC on the novel classes (estimated and true k, with the paper's numbers
    where known) and GCD ACC all / known / novel with the estimated number of classes."""
    out = []
    ncd = [r for r in records if r["benchmark"] == "ncd"]
    if ncd:
        by: dict[tuple, list[dict]] = defaultdict(list)
        for r in ncd:
            by[(r["dataset"], r["method"], r["setting"])].append(r)
        out += ["| set | method | ACC, estimated k | novel classes found (true) | ACC, true k | published "
                "(est. / true k) | seeds |", "|---|---|---:|---:|---:|---:|---:|"]
        for name in sorted({r["dataset"] for r in ncd}):
            for method in ("kmeans", "ncd-kmeans", "ncd-spectral", "pbn", "pbn-tuned"):
                est, true = by.get((name, method, "estimated k"), []), by.get((name, method, "true k"), [])
                if not est and not true:
                    continue
                found = sorted(r["n_novel_found"] for r in est)
                pub = [PUBLISHED.get((name, method, s)) for s in ("estimated k", "true k")]
                pub_text = " / ".join("–" if p is None else f"{p:.3f}" for p in pub)
                out.append(f"| {name} | {NAMES[method]} | {_ms([r['acc'] for r in est])} | "
                           f"{', '.join(map(str, found))} ({(est or true)[0]['n_novel_true']}) | "
                           f"{_ms([r['acc'] for r in true])} | {pub_text} | {len(est or true)} |")
    gcd = [r for r in records if r["benchmark"] == "gcd"]
    if gcd:
        if out:
            out.append("")
        by2: dict[tuple, list[dict]] = defaultdict(list)
        for r in gcd:
            by2[(r["dataset"], r["encoder"], r["method"])].append(r)
        out += ["| set | features | method | ACC all | ACC known | ACC novel | classes found (true) | seeds |",
                "|---|---|---|---:|---:|---:|---:|---:|"]
        for (name, encoder, method), rs in sorted(by2.items()):
            found = sorted(r["k_found"] for r in rs)
            out.append(f"| {name} | {encoder} | {NAMES[method]} | {_ms([r['acc_all'] for r in rs])} | "
                       f"{_ms([r['acc_known'] for r in rs])} | {_ms([r['acc_novel'] for r in rs])} | "
                       f"{', '.join(map(str, found))} ({rs[0]['k_true']}) | {len(rs)} |")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("ncd", "gcd"))
    parser.add_argument("--sets", default=None, help="comma-separated (default: every set of the part)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--tuned", action="store_true", help="NCD: PBN with tune=True only (19 trainings a fit)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--table", type=Path, nargs="*")
    args = parser.parse_args()
    if args.table:
        from tables import read_jsonl

        print(table_of(read_jsonl(args.table)))
        return 0
    import torch

    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.part == "ncd":
        names = args.sets.split(",") if args.sets else list(NCD_SPLITS)
        jobs = [lambda n=n: measure_ncd(n, seeds, args.tuned) for n in names]
    else:
        encoders = dict(GCD_SETS)
        names = args.sets.split(",") if args.sets else list(encoders)
        jobs = [lambda n=n: measure_gcd(n, encoders.get(n, "raw"), seeds) for n in names]
    for job in jobs:
        records = job()
        with open(args.out, "a") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
