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
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from deepclust.data import load_dataset, resolve_data_dir
from deepclust.runtime import versions
from deepclust.select_k import select_k

BUILTIN = ("digits", "mnist-test", "usps", "mnist", "fashion-mnist-test", "fashion-mnist", "agnews-8k", "searchsnippets",
           "stackoverflow", "biomedical")
INTENT = ("banking77", "clinc150")
TABULAR = ("pendigits", "letter", "satimage", "optdigits", "mfeat")
#: the v2 benchmark's criteria (CPP's coding length, added later, is measured in benchmarks/mcr2_bench.py)
V2_CRITERIA = ("bic", "silhouette", "hdbscan")
RULES = (*V2_CRITERIA, "median")


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
