"""How good is ``deepclust run`` with no flags? Its choice against the best candidate it had.

For each built-in set and seed: ``run`` chooses k and the pipeline without labels; afterwards (for
evaluation only) every candidate pipeline of its search is scored against the labels. A record
holds the chosen k, the winner, each candidate's label-free score and ACC/NMI, the oracle (the
candidate with the best ACC) and the regret (oracle ACC − winner ACC), and the seconds of each stage.

    python benchmarks/run_bench.py --sets digits,usps --seeds 0,1,2 --out benchmarks/results/run-choice.jsonl
    python benchmarks/run_bench.py --table benchmarks/results/run-choice.jsonl

``--fresh`` measures each (set, seed) in a new process and adds its peak resident memory
(``peak_rss_mb``: the child's own maximum, imports, data, encoders and search included).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

#: the 15 sets of issue 16 (10 image/text, 5 tables) and the two many-class intent sets
SETS = ("digits", "usps", "mnist-test", "mnist", "fashion-mnist-test", "fashion-mnist", "searchsnippets",
        "agnews-8k", "stackoverflow", "biomedical", "pendigits", "letter", "satimage", "optdigits", "mfeat",
        "banking77", "clinc150")


def measure(name: str, seed: int, budget_s: float) -> dict[str, Any]:
    from deepclust.data import load_dataset
    from deepclust.metrics import accuracy, nmi
    from deepclust.run import run
    from deepclust.runtime import machine_load, versions

    ds = load_dataset(name)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        res = run(ds, Path(tmp) / "out", k="auto", seed=seed, budget_s=budget_s)
    total = time.perf_counter() - t0
    s = res.summary()
    rec: dict[str, Any] = {
        "set": name, "seed": seed, "n": len(ds), "true_k": int(ds.meta.n_classes or 0), "k": s["n_clusters"],
        "encoder": s["encoder"], "method": s["method"], "acc": s["scores"].get("acc"), "nmi": s["scores"].get("nmi"),
        "seconds": {**{k: v for k, v in s["seconds"].items() if "." not in k}, "total": round(total, 2)},
        "budget_s": budget_s, **machine_load(), "threads": s.get("threads"), "versions": versions(),
    }
    if res.pipeline is not None:
        cands = []
        for c in res.pipeline.candidates:
            entry = c.to_dict()
            if c.labels is not None:
                entry.update(acc=round(accuracy(ds.y, c.labels), 4), nmi=round(nmi(ds.y, c.labels), 4))
            cands.append(entry)
        fitted = [c for c in cands if "acc" in c]
        best = max(fitted, key=lambda c: c["acc"])
        winner = next(c for c in fitted if c["name"] == res.pipeline.winner.name)
        rec.update(winner=winner["name"], candidates=cands, oracle=best["name"], oracle_acc=best["acc"],
                   regret=round(best["acc"] - winner["acc"], 4), representations=res.pipeline.representations)
    if res.selection is not None:
        rec["k_choices"] = res.selection.choices
    return rec


def _measure_child(conn: Any, name: str, seed: int, budget_s: float) -> None:
    rec = measure(name, seed, budget_s)
    rec["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB
    conn.send(rec)
    conn.close()


def measure_fresh(name: str, seed: int, budget_s: float) -> dict[str, Any]:
    """:func:`measure` in a new process, so that its peak resident memory is this run's alone."""
    ctx = multiprocessing.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_measure_child, args=(send, name, seed, budget_s))
    child.start()
    send.close()
    rec = recv.recv()
    child.join()
    return rec


def k_right(k: int, true_k: int) -> bool:
    """The issue's goal: exact for k <= 10, else within ±10 %."""
    return k == true_k if true_k <= 10 else abs(k - true_k) <= 0.1 * true_k


def table_of(records: list[dict[str, Any]]) -> str:
    """Per set (mean over seeds): chosen k, run's ACC/NMI, oracle ACC, regret, seconds; then the
    best single fixed pipeline across the sets."""
    by_set: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_set[r["set"]].append(r)
    lines = ["| set | n | true k | chosen k (seeds) | winner(s) | ACC | NMI | oracle ACC | regret | s total | peak MiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    regrets, rights = [], []
    fixed: dict[str, list[float]] = defaultdict(list)
    for name in [s for s in SETS if s in by_set] + sorted(set(by_set) - set(SETS)):
        rs = by_set[name]
        ks = ", ".join(str(r["k"]) for r in rs)
        wins = ", ".join(sorted({r.get("winner", r["method"]) for r in rs}))
        acc = np.mean([r["acc"] for r in rs])
        nm = np.mean([r["nmi"] for r in rs])
        oracle = np.mean([r.get("oracle_acc", r["acc"]) for r in rs])
        regret = np.mean([r.get("regret", 0.0) for r in rs])
        regrets.append(regret)
        rights.append(np.mean([k_right(r["k"], r["true_k"]) for r in rs]))
        for r in rs:
            for c in r.get("candidates", []):
                if "acc" in c and c.get("encoder") in (None, "raw"):  # the same pipeline on the default features
                    fixed[c["name"].split(" → ")[-1]].append(c["acc"])
        peak = [r["peak_rss_mb"] for r in rs if r.get("peak_rss_mb")]  # --fresh records only
        lines.append(f"| {name} | {rs[0]['n']:,} | {rs[0]['true_k']} | {ks} | {wins} | {acc:.3f} | {nm:.3f} | "
                     f"{oracle:.3f} | {regret:.3f} | {np.mean([r['seconds']['total'] for r in rs]):.0f} | "
                     f"{f'{max(peak):,.0f}' if peak else '–'} |")
    lines.append("")
    lines.append(f"Mean regret {np.mean(regrets):.3f} over {len(regrets)} sets; k right (exact for k ≤ 10, ±10 % "
                 f"above) on {sum(rights):.1f} of {len(rights)} sets (fractions: share of seeds).")
    if fixed:
        n_sets = len(by_set)
        means = {name: np.mean(v) for name, v in fixed.items() if len(v) >= len(records)}
        if means:
            best = max(means, key=means.get)
            lines.append(f"Best single fixed candidate across the sets (at run's k): {best}, mean ACC "
                         f"{means[best]:.3f}; run's choice: {np.mean([r['acc'] for r in records]):.3f} "
                         f"({n_sets} sets).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", default=",".join(SETS))
    p.add_argument("--seeds", default="0")
    p.add_argument("--budget", type=float, default=300.0)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "run-choice.jsonl")
    p.add_argument("--fresh", action="store_true", help="each (set, seed) in a new process, with its peak memory")
    p.add_argument("--table", type=Path, default=None, help="print the table of a records file and exit")
    args = p.parse_args(argv)
    if args.table:
        print(table_of([json.loads(line) for line in args.table.read_text().splitlines() if line.strip()]))
        return 0
    for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        for seed in [int(s) for s in args.seeds.split(",")]:
            rec = (measure_fresh if args.fresh else measure)(name, seed, args.budget)
            with open(args.out, "a") as fh:
                fh.write(json.dumps(rec) + "\n")
            print(f"{name} seed {seed}: k={rec['k']} (true {rec['true_k']}), {rec.get('winner', rec['method'])}, "
                  f"ACC {rec['acc']:.3f}, regret {rec.get('regret', 0):.3f}, {rec['seconds']['total']:.0f}s",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
