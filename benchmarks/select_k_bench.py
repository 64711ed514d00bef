"""Benchmark of choosing k without labels (``deepclust.select_k``) on 17 sets, one fixed rule.

For every set: the representation ``deepclust run`` uses (``run.default_encoder``: raw pixels for
these image sets on a CPU, MiniLM for texts, z-scores for tables), then ``select_k`` with every
criterion, recording the true number of classes, each criterion's choice, the median rule, the
seconds and the number of k-means fits. Labels are read only to write ``true_k``. One JSON record
per set is appended to the output file.

Sets: the 10 built-in ones, BANKING77 and CLINC150 (``short-text/*.tsv``, read with quoting off),
and the 5 UCI tables in ``tabular/`` (gzip CSV with ``label`` and maybe ``split`` columns).

    PYTHONPATH=src DEEPCLUST_DATA=../shared/data python benchmarks/select_k_bench.py --out benchmarks/results/select-k-v2.jsonl
    python benchmarks/select_k_bench.py --table benchmarks/results/select-k-v2.jsonl

``--anchors`` runs the published estimators of k instead, on the same representation record by record
(issue #16's anchors): X-means (Pelleg & Moore 2000), G-means (Hamerly & Elkan 2003), Dip-means
(Kalogeratos & Likas 2012) and the gap statistic (Tibshirani, Walther & Hastie 2001) from ClustPy 0.0.3,
and HDBSCAN's cluster count (``select_k.hdbscan_count``, min cluster size 30). Each runs on a fixed
random subsample of at most 5,000 points (seed 0), once on the features (``space = "features"``) and
once on their 5-D UMAP layout with ``select_k``'s settings (``space = "layout"``), each under a
wall-clock cap (``"timeout"`` when hit). One record per set and space:

    PYTHONPATH=src DEEPCLUST_DATA=../shared/data python benchmarks/select_k_bench.py --anchors layout --out benchmarks/results/k-anchors.jsonl

Two more anchors, run later into their own records (``--only`` picks anchors; the table reads the
records of one set and space together): **DeepDPM** (Ronen, Finder & Freifeld, CVPR 2022;
:mod:`deepclust.methods.deepdpm` with its defaults, from k = 1, the authors' default; on features
wider than 50 dimensions after PCA to 50) in both spaces, and **CPP's coding length** (Chu et al., ICLR
2024; ``select_k(criteria=("coding_length",))`` on the same subsample, which makes its own UMAP
layout, so on the features only):

    PYTHONPATH=src DEEPCLUST_DATA=../shared/data python benchmarks/select_k_bench.py --anchors features --only deepdpm,coding_length --cap 120 --out benchmarks/results/k-anchors-deepdpm.jsonl

And **PPP** (after Sultan, arXiv 2003.04372; ``select_k``'s ``ppp`` criterion, our reading of the paper's
abstract) on the layout only: ``select_k(criteria=("ppp",), reduce=False)`` on the same layout, which is
the layout ``select_k`` itself makes of the subsample:

    OMP_NUM_THREADS=1 nice python benchmarks/select_k_bench.py --anchors layout --only ppp --cap 120 --out benchmarks/results/k-anchors-ppp.jsonl
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from typing import Any, Callable

import numpy as np

from deepclust.data import load_dataset, resolve_data_dir
from deepclust.runtime import machine_load, versions
from deepclust.select_k import N_NEIGHBORS, hdbscan_count, k_limit, select_k, umap_reduce

BUILTIN = ("digits", "mnist-test", "usps", "mnist", "fashion-mnist-test", "fashion-mnist", "agnews-8k", "searchsnippets",
           "stackoverflow", "biomedical")
INTENT = ("banking77", "clinc150")
TABULAR = ("pendigits", "letter", "satimage", "optdigits", "mfeat")
#: the v2 benchmark's criteria (CPP's coding length, added later, is measured in benchmarks/mcr2_bench.py)
V2_CRITERIA = ("bic", "silhouette", "hdbscan")
RULES = (*V2_CRITERIA, "median")
ANCHORS = ("xmeans", "gmeans", "dipmeans", "gap", "hdbscan", "deepdpm", "coding_length", "ppp")
#: anchors run on the features only: select_k's coding length makes its own UMAP layout of them
FEATURES_ONLY = ("coding_length",)
#: anchors run on the layout only: select_k's PPP searches its UMAP layout (on the features it would make this
#: same layout again)
LAYOUT_ONLY = ("ppp",)
#: DeepDPM's start (the authors' default for given features) and its PCA of wider features (see anchor_k)
DPM_INIT_K, DPM_PCA = 1, 50
#: the anchors' cost caps: points per set, seconds per anchor, and the gap statistic's k range and reference sets
ANCHOR_SAMPLES, ANCHOR_SECONDS, GAP_MAX_K, GAP_BOOTS = 5000, 300, 50, 10


def hit(k: int, true_k: int, tol: float) -> bool:
    """Exact for true k <= 10, else within ``tol`` (a fraction) of it."""
    return k == true_k if true_k <= 10 else abs(k - true_k) <= tol * true_k


def representation(name: str) -> tuple[np.ndarray, int, str]:
    """The features ``run`` clusters for set ``name``, its true k, and the encoder's name."""
    import pandas as pd

    from deepclust.encoders import encode_with_info
    from deepclust.run import default_encoder

    root = resolve_data_dir()
    if name in TABULAR:
        df = pd.read_csv(root / "tabular" / f"{name}.csv.gz")
        y = df["label"].to_numpy()
        X = df.drop(columns=[c for c in ("label", "split") if c in df]).to_numpy(np.float32)
        sd = X.std(0)
        return (X - X.mean(0)) / np.where(sd > 0, sd, 1.0), len(np.unique(y)), "standardized"
    if name in INTENT:
        df = pd.read_csv(root / "short-text" / f"{name}.tsv", sep="\t", quoting=3, keep_default_na=False)
        enc, _ = default_encoder("text")
        return encode_with_info(df["text"].astype(str).tolist(), enc, device="cpu")[0], df["label"].nunique(), enc
    ds = load_dataset(name)
    enc, _ = default_encoder(ds.meta.modality, len(ds), "cpu", ds.meta.image_shape)
    X = encode_with_info(ds, enc, device="cpu")[0]
    return np.asarray(X, np.float32).reshape(len(X), -1), int(ds.meta.n_classes), enc


def anchor_k(name: str, X: np.ndarray, seed: int) -> int:
    """The number of clusters anchor ``name`` finds in ``X`` (ClustPy's defaults, k up to :func:`k_limit`;
    DeepDPM from k = 1 with its defaults, on wider features after PCA to 50 dimensions: its full-covariance
    E-step on 384–784 dimensions does not fit the cap on one thread; CPP's coding length as select_k computes it;
    PPP as select_k computes it, on ``X`` as given, a layout)."""
    if name == "hdbscan":
        return hdbscan_count(X, 2 * N_NEIGHBORS)
    if name == "deepdpm":
        from threadpoolctl import threadpool_limits

        from deepclust.methods.deepdpm import DeepDPM

        with threadpool_limits(1):
            model = DeepDPM(init_k=DPM_INIT_K, pca_dim=DPM_PCA if X.shape[1] > DPM_PCA else None, device="cpu",
                            random_state=seed)
            return int(model.fit(X).n_clusters_found_)
    if name == "coding_length":
        return int(select_k(X, criteria=("coding_length",), rule="coding_length", random_state=seed,
                            device="cpu").k)
    if name == "ppp":
        return int(select_k(X, criteria=("ppp",), rule="ppp", random_state=seed, device="cpu", reduce=False).k)
    from clustpy.centroid import DipMeans, GapStatistic, GMeans, XMeans

    top = k_limit(len(X))
    model = {"xmeans": lambda: XMeans(max_n_clusters=top, random_state=seed),
             "gmeans": lambda: GMeans(max_n_clusters=top, random_state=seed),
             "dipmeans": lambda: DipMeans(max_n_clusters=top, random_state=seed),
             "gap": lambda: GapStatistic(max_n_clusters=min(GAP_MAX_K, top), n_boots=GAP_BOOTS, random_state=seed)}[name]()
    return int(model.fit(X.astype(np.float64)).n_clusters_)


def _capped_child(conn: Any, fn: Callable[..., int], args: tuple) -> None:
    try:
        conn.send(("ok", fn(*args)))
    except Exception as exc:  # noqa: BLE001 - reported in the record
        conn.send(("error", f"{type(exc).__name__}: {exc}"[:300]))


def capped(fn: Callable[..., int], args: tuple, seconds: float) -> tuple[int | str, float]:
    """``fn(*args)`` in a forked process stopped after ``seconds``: (its result, "timeout" or "error: …"; wall s)."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_capped_child, args=(child, fn, args))
    t0 = time.perf_counter()
    proc.start()
    got = parent.poll(seconds)
    out: int | str = "timeout"
    if got:
        status, value = parent.recv()
        out = value if status == "ok" else f"error: {value}"
    proc.terminate()
    proc.join()
    return out, round(time.perf_counter() - t0, 2)


def run_anchors(name: str, space: str, seed: int, seconds: float, anchors: tuple[str, ...] = ANCHORS) -> dict[str, Any]:
    """One record: the k of every anchor of ``anchors`` for set ``name`` in ``space`` ("features" or "layout")."""
    X, true_k, enc = representation(name)
    n = len(X)
    if n > ANCHOR_SAMPLES:
        X = X[np.sort(np.random.default_rng(seed).choice(n, ANCHOR_SAMPLES, replace=False))]
    X = np.ascontiguousarray(X, np.float32)
    reduce_s = None
    if space == "layout":  # select_k's reduction: PCA to 50-D for wide inputs, UMAP to 5-D, 15 neighbours, min_dist 0
        t0 = time.perf_counter()
        X = umap_reduce(X, n_components=5, random_state=seed, min_dist=0.0)
        reduce_s = round(time.perf_counter() - t0, 2)
    choices, secs = {}, {}
    for a in (a for a in anchors if a not in (LAYOUT_ONLY if space == "features" else FEATURES_ONLY)):
        choices[a], secs[a] = capped(anchor_k, (a, X, seed), seconds)
        print(f"  {name} {space} {a}: {choices[a]} ({secs[a]:.0f} s)", flush=True)
    return {"dataset": name, "space": space, "n_samples": n, "n_samples_used": len(X), "dim": int(X.shape[1]),
            "encoder": enc, "true_k": true_k, "choices": choices,
            "hits": {a: isinstance(k, int) and hit(k, true_k, 0.10 if name not in INTENT else 0.15)
                     for a, k in choices.items()},
            "seconds": secs, "reduce_seconds": reduce_s, "cap_seconds": seconds, "k_max": k_limit(len(X)),
            "settings": {"subsample": f"at most {ANCHOR_SAMPLES} points, numpy default_rng({seed})",
                         "xmeans/gmeans/dipmeans": "ClustPy 0.0.3 defaults, max_n_clusters = k_max",
                         "gap": f"ClustPy GapStatistic, k = 1…{GAP_MAX_K}, {GAP_BOOTS} reference sets",
                         "hdbscan": "select_k.hdbscan_count, min cluster size 30",
                         "deepdpm": f"deepclust DeepDPM defaults, init_k = {DPM_INIT_K}, PCA to {DPM_PCA} dimensions "
                                    f"when wider, k = distinct labels of the clustering net",
                         "coding_length": "select_k(criteria=('coding_length',)) on the subsample (its own UMAP "
                                          "layout; features only)",
                         "ppp": "select_k(criteria=('ppp',), reduce=False) on the layout (layout only)",
                         "layout": "select_k.umap_reduce(n_components=5, min_dist=0, 15 neighbours) of the subsample"},
            "seed": seed, "device": "cpu, 1 thread, nice", "versions": versions(), **machine_load(),
            "note": "2 CPU cores shared with other jobs: seconds (and so which anchors time out) depend on the load"}


def anchors_table_of(recs: list[dict], ours: dict[str, dict]) -> str:
    """Per set: true k, select_k's choices (``ours``: the v2 records by set) and each anchor's k on the
    features and on the layout (bold where right), then how many sets each column got right. Records of
    the same set and space (anchors run at different times) are read together; an anchor no record has
    gets no column."""
    by: dict[tuple[str, str], dict[str, Any]] = {}
    for r in recs:
        by.setdefault((r["dataset"], r["space"]), {"choices": {}})["choices"].update(r["choices"])
    ran = {a for r in recs for a in r["choices"]}
    sets = list(dict.fromkeys(r["dataset"] for r in recs))
    cols: list[tuple[str, Callable[[str], Any]]] = [
        ("select_k (silhouette)", lambda d: ours.get(d, {}).get("choices", {}).get("silhouette")),
        ("select_k (median)", lambda d: ours.get(d, {}).get("choices", {}).get("median"))]
    for space in ("features", "layout"):
        for a in (a for a in ANCHORS if a in ran and a not in (LAYOUT_ONLY if space == "features" else FEATURES_ONLY)):
            cols.append((f"{a} ({space})", lambda d, a=a, s=space: by.get((d, s), {}).get("choices", {}).get(a)))
    true = {r["dataset"]: r["true_k"] for r in recs}

    def cell(k: Any, d: str) -> str:
        if k is None:
            return "–"
        if not isinstance(k, int):
            return "timeout" if k == "timeout" else "error"
        return f"**{k}**" if hit(k, true[d], 0.10 if d not in INTENT else 0.15) else str(k)

    head = ("| set | true k | " + " | ".join(c for c, _ in cols) + " |\n|---|---:|" + "---:|" * len(cols))
    rows = [f"| {d} | {true[d]} | " + " | ".join(cell(f(d), d) for _, f in cols) + " |" for d in sets]
    main_sets = [d for d in sets if d not in INTENT]
    tally = []
    for _, f in cols:
        ks = [(f(d), d) for d in main_sets]
        tally.append(f"{sum(isinstance(k, int) and hit(k, true[d], 0.10) for k, d in ks)}/{len(main_sets)}")
    rows.append(f"| **right on N of {len(main_sets)}** (±10 %, exact for k ≤ 10) | | " + " | ".join(tally) + " |")
    return "\n".join([head, *rows])


def table(path: str) -> str:
    """Markdown table of the records in ``path``, with how many sets each rule got right."""
    return table_of([json.loads(line) for line in open(path) if line.strip()])


def table_of(recs: list[dict]) -> str:
    """Markdown table of these v2 records, with how many sets each rule got right."""
    cols = [*RULES, "old_vote"]
    head = ("| set | n | encoder | true k | " + " | ".join(cols) + " | range | fits | seconds |\n"
            "|---|---:|---|---:|" + "---:|" * len(cols) + "---|---:|---:|")
    rows = []
    for r in recs:
        cells = []
        for c in cols:
            k = r["choices"].get(c)
            cells.append("–" if k is None else (f"**{k}**" if hit(k, r["true_k"], 0.10 if r["true_k"] <= 50 else 0.15)
                                                 else str(k)))
        rows.append(f"| {r['dataset']} | {r['n_samples']:,} | {r['encoder']} | {r['true_k']} | " + " | ".join(cells)
                    + f" | {r['k_range'][0]}–{r['k_range'][1]} | {r['n_fits']} | {r['seconds']:.0f} |")
    small = [r for r in recs if r["dataset"] not in INTENT]
    big = [r for r in recs if r["dataset"] in INTENT]
    tally = []
    for c in cols:
        have = [r for r in small if c in r["choices"]]
        a = sum(hit(r["choices"][c], r["true_k"], 0.10) for r in have)
        b = sum(hit(r["choices"][c], r["true_k"], 0.15) for r in big if c in r["choices"])
        tally.append(f"{a}/{len(have)} + {b}/{sum(c in r['choices'] for r in big)}")
    rows.append("| **right** (15 sets ±10 % + 2 intent sets ±15 %) | | | | " + " | ".join(tally) + " | | | |")
    return "\n".join([head, *rows])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--table", metavar="JSONL", help="print the markdown table of a results file and exit")
    p.add_argument("--datasets", default=",".join((*BUILTIN, *TABULAR, *INTENT)))
    p.add_argument("--anchors", choices=("features", "layout"), help="run the anchors in this space instead of select_k")
    p.add_argument("--only", default=",".join(ANCHORS), help="the anchors to run (--anchors), comma-separated")
    p.add_argument("--cap", type=float, default=ANCHOR_SECONDS, help="seconds allowed to each anchor (--anchors)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/select-k-v2.jsonl")
    p.add_argument("--old", default="benchmarks/results/select-k.jsonl,benchmarks/results/select-k-minilm.jsonl",
                   help="records of the v1 vote (k = 2…25) on the same representations, reported as old_vote")
    args = p.parse_args()
    if args.table:
        print(table(args.table))
        return
    import torch

    torch.set_num_threads(1)
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # its first use imports torch._dynamo: once, not per anchor
    if args.anchors:
        for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
            rec = run_anchors(name, args.anchors, args.seed, args.cap,
                              tuple(a for a in ANCHORS if a in args.only.split(",")))
            with open(args.out, "a") as fh:
                fh.write(json.dumps(rec) + "\n")
            print(f"{name} {args.anchors}: true k {rec['true_k']}, {rec['choices']}", flush=True)
        return
    old = {}  # the v1 records hold raw pixels and MiniLM texts: the representations used here too
    for path in filter(None, args.old.split(",")):
        old.update({r["dataset"]: r["chosen_k"] for r in map(json.loads, open(path)) if r})
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        X, true_k, enc = representation(name)
        t0, c0 = time.perf_counter(), time.process_time()
        sel = select_k(X, criteria=V2_CRITERIA, random_state=args.seed, device="cpu", rule="median")
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        choices = {**sel.choices, "median": sel.k, **({"old_vote": old[name]} if name in old else {})}
        rec = {"dataset": name, "n_samples": len(X), "encoder": enc, "true_k": true_k, "choices": choices,
               "hits": {c: hit(k, true_k, 0.10 if name not in INTENT else 0.15) for c, k in choices.items()},
               "k_range": [sel.extra["k_min"], sel.extra["k_max"]], "n_fits": sel.extra["n_fits"],
               "k_values": sel.k_values, "curves": sel.to_dict()["curves"], "n_samples_used": sel.n_samples_used,
               "reduction": sel.extra["reduction"], "seconds": round(wall, 2), "cpu_seconds": round(cpu, 2), "criterion_seconds": sel.seconds,
               "seed": args.seed, "device": "cpu, 1 torch thread", "versions": versions(),
               "note": "2 CPU cores shared with other jobs (load average 4-16): timings are indicative"}
        with open(args.out, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        print(f"{name}: true k {true_k}, {choices}, {wall:.0f}s", flush=True)


if __name__ == "__main__":
    main()
