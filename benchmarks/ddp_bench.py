"""torchrun on the CPU: does a 2-process data-parallel run cluster as well as one process? (issue 19)

For each seed, ``deepclust cluster`` runs the same method on the same data as one process with 2
torch threads, as ``torchrun --nproc-per-node 2`` (gloo, one thread per rank: the same two cores)
and as one process with one thread (``--configs``; 1 × 1 is the fair baseline on a loaded machine,
where the two OpenMP threads of one process wait for each other). The ranks share each global batch (the same batch size
as one process), so the runs differ only in floating-point rounding and, where a step draws at
random, in the draws. Labels only score. One record per run: ACC/NMI/ARI, the fit and wall-clock
seconds (process start included), the load average before and after.

    PYTHONPATH=src DEEPCLUST_DATA=../shared/data python benchmarks/ddp_bench.py \\
        --out benchmarks/results/ddp-cpu.jsonl
    python benchmarks/ddp_bench.py --table benchmarks/results/ddp-cpu.jsonl

Default: DEC on USPS (9,298 images, DEC's set), seeds 0-4, made small enough for ten runs on the
shared 2-core machine (``PARAMS``): a 256-256-256-512-10 autoencoder instead of DEC's
256-500-500-2000-10, 4 pretraining epochs and at most 280 clustering iterations instead of the
budget schedule's 1,110 + 3,000 steps. The question is whether 2 processes match 1, not DEC's best
figure (that is in the autoencoder-family section of BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PARAMS = {"dec": {"pretrain_epochs": 4, "max_iter": 280, "hidden_dims": [256, 256, 512]}}


def run(method: str, dataset: str, seed: int, processes: int, threads: int, params: dict[str, Any]) -> dict[str, Any]:
    """One ``deepclust cluster`` run (``processes`` × ``threads``) as a subprocess; the record of its metrics.json."""
    with tempfile.TemporaryDirectory(prefix="ddp-bench-") as tmp:
        launcher = ([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes)]
                    if processes > 1 else [sys.executable])
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "DEEPCLUST_CACHE": f"{tmp}/cache",
               "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
        cmd = [*launcher, "-m", "deepclust", "--quiet", "cluster", dataset, "--method", method, "--seed", str(seed),
               "--device", "cpu", "--threads", str(threads), "--json", "--out", f"{tmp}/out",
               *[f"--param={k}={json.dumps(v)}" for k, v in params.items()]]
        load_before = list(os.getloadavg())
        t0 = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
        summary = json.loads(done.stdout[done.stdout.index("{"):])
    return {"benchmark": "ddp", "method": method, "dataset": dataset, "seed": seed, "processes": processes,
            "threads_per_process": threads, "threads": threads * processes, "params": params,
            "acc": summary["scores"]["acc"], "nmi": summary["scores"]["nmi"], "ari": summary["scores"]["ari"],
            "converged": summary.get("converged"), "fit_seconds": summary["seconds"]["fit"],
            "fit_phases": {k: v for k, v in summary["seconds"].items() if k.startswith("fit.")},
            "wall_seconds": round(wall, 2), "load_avg": load_before, "load_avg_after": list(os.getloadavg()),
            "cpu_count": os.cpu_count(), "device_name": summary["device_name"], "versions": summary["versions"],
            "date": time.strftime("%Y-%m-%dT%H:%M:%S")}


def table_of(records: list[dict[str, Any]]) -> str:
    """Per method, set and number of processes: mean ± std of ACC and NMI over the seeds, the mean
    fit and wall-clock seconds; and the largest per-seed ACC difference between 2 processes and 1."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(r["method"], r["dataset"], r["processes"], r["threads_per_process"])].append(r)
    ms = lambda v: f"{np.mean(v):.3f} ± {np.std(v):.3f}"  # noqa: E731
    lines = ["| method | set | processes × threads | ACC | NMI | fit s | wall s | seeds | largest per-seed ACC difference from 1 process |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for (method, dataset, procs, _), rs in sorted(groups.items()):
        changes = []
        for (m, d, p, t), ones in sorted(groups.items()):
            acc = {o["seed"]: o["acc"] for o in ones}
            diffs = [abs(r["acc"] - acc[r["seed"]]) for r in rs if r["seed"] in acc]
            if procs > 1 and (m, d, p) == (method, dataset, 1) and diffs:
                changes.append(f"{max(diffs):.3f} (1 × {t})")
        lines.append(f"| {method} | {dataset} | {procs} × {rs[0]['threads_per_process']} | "
                     f"{ms([r['acc'] for r in rs])} | {ms([r['nmi'] for r in rs])} | "
                     f"{np.mean([r['fit_seconds'] for r in rs]):.0f} | {np.mean([r['wall_seconds'] for r in rs]):.0f} | "
                     f"{len(rs)} | {', '.join(changes) or '–'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="dec")
    p.add_argument("--dataset", default="usps")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--configs", default="1x2,2x1,1x1", help="processes x threads per process, comma-separated")
    p.add_argument("--out", type=Path)
    p.add_argument("--table", type=Path, nargs="*")
    args = p.parse_args(argv)
    if args.table:
        print(table_of([json.loads(line) for f in args.table for line in f.read_text().splitlines() if line.strip()]))
        return 0
    if args.out is None:
        p.error("--out FILE.jsonl is required (or --table FILE.jsonl)")
    for seed in (int(s) for s in args.seeds.split(",")):
        for procs, threads in (map(int, c.split("x")) for c in args.configs.split(",")):
            rec = run(args.method, args.dataset, seed, procs, threads, PARAMS.get(args.method, {}))
            with open(args.out, "a") as fh:
                fh.write(json.dumps(rec) + "\n")
            print(f"{args.method} {args.dataset} seed {seed}, {procs} × {threads}: ACC {rec['acc']:.3f} "
                  f"NMI {rec['nmi']:.3f}, fit {rec['fit_seconds']:.0f} s, wall {rec['wall_seconds']:.0f} s, "
                  f"load {rec['load_avg'][0]:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
