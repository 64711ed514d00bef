"""Benchmark of `deepclust run` with --k auto on the built-in datasets.

For every dataset: the whole `deepclust run` workflow (default encoder and method, k chosen
without labels, report written), recording the true number of classes, the k chosen by every
criterion and by the vote, ACC/NMI/ARI of the final clustering and the seconds of each stage.
One JSON record per dataset is appended to the output file.

    PYTHONPATH=src python benchmarks/select_k_bench.py --datasets digits,usps --out benchmarks/results/select-k.jsonl
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from deepclust.data import load_dataset
from deepclust.runtime import machine_load, versions
from deepclust.run import run


CRITS = ("ppp", "umap_silhouette", "bic", "gap", "eigengap")


def table(path: str) -> str:
    """Markdown table of the records in ``path`` plus, per criterion, how often it found the true k."""
    return table_of([json.loads(line) for line in open(path) if line.strip()])


def table_of(recs: list[dict]) -> str:
    """Markdown table of these records plus, per criterion, how often it found the true k."""
    head = ("| dataset | n | true k | chosen k | " + " | ".join(CRITS) + " | ACC | NMI | choosing k (s) | run total (s) |\n"
            "|---|---:|---:|---:|" + "---:|" * len(CRITS) + "---:|---:|---:|---:|")
    rows = []
    for r in recs:
        ch = " | ".join(("**%d**" if r["choices"][c] == r["true_k"] else "%d") % r["choices"][c] for c in CRITS)
        rows.append(f"| {r['dataset']} | {r['n_samples']:,} | {r['true_k']} | "
                    f"{'**%d**' % r['chosen_k'] if r['found_true_k'] else r['chosen_k']} | {ch} | "
                    f"{r['acc']:.3f} | {r['nmi']:.3f} | {r['seconds']['select_k']:.0f} | {r['wall_seconds']:.0f} |")
    hits = " | ".join(f"{sum(r['choices'][c] == r['true_k'] for r in recs)}/{len(recs)}" for c in CRITS)
    rows.append(f"| **true k found** | | | {sum(r['found_true_k'] for r in recs)}/{len(recs)} | {hits} | | | | |")
    return "\n".join([head, *rows])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--table", metavar="JSONL", help="print the markdown table of a results file and exit")
    p.add_argument("--datasets", default="digits,mnist-test,usps,agnews-8k,searchsnippets,stackoverflow,biomedical,"
                                          "fashion-mnist,mnist")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/select-k.jsonl")
    args = p.parse_args()
    if args.table:
        print(table(args.table))
        return
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        ds = load_dataset(name)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            res = run(ds, Path(tmp) / "run", k="auto", seed=args.seed, device="cpu")
            wall = time.perf_counter() - t0
            html_kb = (Path(tmp) / "run" / "report.html").stat().st_size / 1024
        s = res.summary()
        sel = res.selection
        rec = {"dataset": name, "n_samples": len(ds), "true_k": ds.meta.n_classes, "chosen_k": sel.k,
               "choices": sel.choices, "found_true_k": sel.k == ds.meta.n_classes,
               "k_range": [sel.k_values[0], sel.k_values[-1]], "n_samples_used": sel.n_samples_used,
               "criterion_seconds": sel.seconds, "encoder": s["encoder"], "method": s["method"],
               "acc": s["scores"].get("acc"), "nmi": s["scores"].get("nmi"), "ari": s["scores"].get("ari"),
               "seconds": s["seconds"], "wall_seconds": round(wall, 2), "report_kb": round(html_kb, 1),
               "settings": {"max_samples": 2000, "n_runs": 3, "n_refs": 3, "k_range": "2..25"}, "seed": args.seed, "device": s["device_name"], "versions": versions(), **machine_load()}
        with open(args.out, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        print(f"{name}: true k {rec['true_k']}, chosen {rec['chosen_k']} {sel.choices}, ACC {rec['acc']:.3f}, "
              f"wall {wall:.0f}s", flush=True)


if __name__ == "__main__":
    main()
