"""k-means beyond memory: DaskKMeans on a LocalCluster vs MiniBatchKMeans streaming, and dask-ml side by side.

One run (issue 19):

1. writes an N × 64 float32 ``.npy`` (Gaussian blobs around 1,000 random centres, written in chunks of
   1M rows) into a scratch folder outside the repository (deleted at the end unless ``--keep``);
2. draws one fixed start (k rows of the file) used by every method;
3. ``dask``: :class:`deepclust.engines.dask_kmeans.DaskKMeans` on a LocalCluster of ``--workers``
   processes with one thread each and ``--memory-limit`` each, the workers reading their partitions
   from the file; ``--max-iter`` Lloyd passes (tol 0). Recorded: seconds per pass, the median
   seconds of one partition's Lloyd kernel and of its read (Dask's task stream), and each worker's
   peak resident memory;
4. ``minibatch``: :class:`deepclust.engines.kmeans.MiniBatchKMeans` streaming the memory-mapped file in
   one process (``--mb-passes`` passes, batches of 4,096, then the labelling pass), in a child
   process so that its peak memory is its own;
5. quality: the inertia per point of each method's centres on the same ``--sample`` random rows, beside
   full k-means (:class:`~deepclust.engines.kmeans.KMeans`, same start, ``--max-iter`` iterations) on
   that sample;
6. ``dask-ml``: on the first ``--daskml-n`` rows, ``dask_ml.cluster.KMeans`` and ours on the same
   cluster from the same start (same passes; inertia and seconds), and with ``--daskml-own-init`` each
   from its own k-means||.

Records go to ``benchmarks/results/dask.jsonl`` (one per method), with the load average, since the
machine is shared. ``python benchmarks/tables.py`` makes BENCHMARKS.md's table (kind ``dask``).

    python benchmarks/dask_bench.py --n 2000000 --max-iter 3          # ~10 minutes on 2 busy cores
    python benchmarks/dask_bench.py --n 100000 --k 100 --max-iter 3 --sample 100000 --daskml-n 50000 --daskml-own-init
    python benchmarks/dask_bench.py --n 50000000 --max-iter 3         # 12.8 GB file; hours on 2 cores
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

RESULTS = ROOT / "benchmarks" / "results" / "dask.jsonl"
D = 64
WRITE_ROWS = 1_000_000


def write_blobs(path: Path, n: int, seed: int) -> float:
    """N × 64 float32 Gaussian blobs around 1,000 centres, written 1M rows at a time (never whole in memory)."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(1000, D)).astype(np.float32)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, D))
    for s in range(0, n, WRITE_ROWS):
        m = min(WRITE_ROWS, n - s)
        out[s:s + m] = centres[rng.integers(0, 1000, m)] + rng.normal(size=(m, D)).astype(np.float32)
    out.flush()
    del out
    return time.perf_counter() - t0


def rows(path: Path, idx: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.load(path, mmap_mode="r")[np.sort(idx)], dtype=np.float32)


def base_record(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    from deepclust.runtime import versions

    return {"benchmark": "dask-kmeans", "n": args.n, "d": D, "k": args.k, "max_iter": args.max_iter, "seed": args.seed,
            "cpu_count": os.cpu_count(), "load_avg": list(os.getloadavg()),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"), "versions": versions(), **extra}


def inertia_on(sample: np.ndarray, centres: np.ndarray) -> float:
    """Mean squared distance of the sample's rows to their nearest centre."""
    from deepclust.engines.kmeans import KMeans

    km = KMeans(len(centres), init=centres, n_init=1, max_iter=1, device="cpu")
    km.cluster_centers_, km.n_features_in_, km.input_shape_ = centres, centres.shape[1], (centres.shape[1],)
    d = km.transform(sample)
    return float((d.min(1).astype(np.float64) ** 2).mean())


def start_memory_watch() -> None:
    """Poll this process's resident memory every 20 ms in a daemon thread (peak RSS, and its private
    part: RSS minus file-backed and shared pages, i.e. without the memory-mapped data). ``ru_maxrss``
    cannot be used: a process started by fork + exec inherits its parent's peak."""
    import builtins
    import threading

    import psutil

    proc = psutil.Process()
    state = {"rss": 0, "private": 0}

    def watch() -> None:
        while True:
            m = proc.memory_info()
            state["rss"], state["private"] = max(state["rss"], m.rss), max(state["private"], m.rss - m.shared)
            time.sleep(0.02)

    threading.Thread(target=watch, daemon=True).start()
    builtins._deepclust_memory_watch = state


def memory_peaks() -> tuple[float, float]:
    """(peak RSS MiB, peak private MiB) since :func:`start_memory_watch`."""
    import builtins

    state = builtins._deepclust_memory_watch
    return round(state["rss"] / 2**20, 1), round(state["private"] / 2**20, 1)


def task_seconds(stream: list[dict[str, Any]], prefix: str) -> float | None:
    """Median seconds of the compute phase of tasks whose key starts with ``prefix``."""
    spans = [sum(s["stop"] - s["start"] for s in t["startstops"] if s["action"] == "compute")
             for t in stream if prefix in str(t["key"])]
    return round(float(np.median(spans)), 4) if spans else None


def run_minibatch(args: argparse.Namespace, path: Path, start: np.ndarray) -> dict[str, Any]:
    """Child process: MiniBatchKMeans streaming the memory-mapped file; prints its record."""
    import torch

    from deepclust.engines.kmeans import MiniBatchKMeans

    torch.set_num_threads(args.threads)
    start_memory_watch()
    X = np.load(path, mmap_mode="r")
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mb = MiniBatchKMeans(args.k, init=start, max_iter=args.mb_passes, tol=0, batch_size=4096,
                             random_state=args.seed, device="cpu").fit(X)
    return {"library": "deepclust MiniBatchKMeans (1 process, streaming)", "threads": args.threads,
            "passes": mb.n_iter_, "seconds": {"fit": round(time.perf_counter() - t0, 3),
                                              **{k: round(v, 3) for k, v in mb.timings_.items()}},
            "seconds_per_pass": round(mb.timings_["iterations"] / mb.n_iter_, 3),
            "inertia_per_point": mb.inertia_ / args.n, "centres": mb.cluster_centers_.tolist(),
            "peak_rss_mb": memory_peaks()[0], "peak_private_mb": memory_peaks()[1]}


def run_dask(args: argparse.Namespace, client: Any, path: Any, start: Any, n: int, label: str) -> tuple[dict, Any]:
    from distributed import get_task_stream

    from deepclust.engines.dask_kmeans import DaskKMeans

    client.restart()  # fresh workers: their memory peaks are this run's
    client.run(torch_one_thread)
    client.run(start_memory_watch)
    t0 = time.perf_counter()
    with get_task_stream(client) as ts, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = DaskKMeans(args.k, init=start, max_iter=args.max_iter, tol=0, random_state=args.seed,
                           chunk_rows=args.chunk_rows, device="cpu").fit(path)
    fit = time.perf_counter() - t0
    per = model.timings_["iteration_seconds"]
    rec = {"library": label, "workers": args.workers, "threads": args.workers,
           "init": "shared" if not isinstance(start, str) else start, "iterations": model.n_iter_,
           "seconds": {"fit": round(fit, 3), "init": round(model.timings_["init"], 3),
                       "iterations": round(model.timings_["iterations"], 3),
                       "final_inertia_pass": round(model.timings_["labels"], 3)},
           "seconds_per_iteration": round(float(np.mean(per)), 3), "iteration_seconds": per,
           "inertia_per_point": model.inertia_ / n, "partitions": None,
           "partition_lloyd_seconds": task_seconds(ts.data, "_lloyd_stats"),
           "partition_read_seconds": task_seconds(ts.data, "read_rows"),
           "n_init_candidates": getattr(model, "n_init_candidates_", None),
           "peak_rss_mb_per_worker": sorted(v[0] for v in client.run(memory_peaks).values()),
           "peak_private_mb_per_worker": sorted(v[1] for v in client.run(memory_peaks).values())}
    return rec, model


def torch_one_thread() -> None:
    import torch

    import deepclust.engines.dask_kmeans  # noqa: F401 - imported before the timing starts

    torch.set_num_threads(1)


def run_daskml(args: argparse.Namespace, X: Any, start: Any, n: int) -> dict[str, Any]:
    import dask_ml
    from dask_ml.cluster import KMeans as DaskMLKMeans

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        km = DaskMLKMeans(args.k, init=start, max_iter=args.max_iter, tol=0, random_state=args.seed).fit(X)
    fit = time.perf_counter() - t0
    centres = np.asarray(km.cluster_centers_)
    return {"library": f"dask-ml {dask_ml.__version__} KMeans", "centres_at_origin": int((~centres.any(1)).sum()),
            "workers": args.workers, "threads": args.workers,
            "init": "shared" if not isinstance(start, str) else start, "iterations": int(km.n_iter_),
            "seconds": {"fit": round(fit, 3)}, "seconds_per_iteration": round(fit / max(1, km.n_iter_), 3),
            "inertia_per_point": float(km.inertia_) / n, "centres": centres}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=50_000_000)
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--max-iter", type=int, default=3, help="Lloyd passes of every method (same fixed start)")
    p.add_argument("--mb-passes", type=int, default=1, help="MiniBatchKMeans passes over the file")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--memory-limit", default="3GiB", help="per Dask worker")
    p.add_argument("--chunk-rows", type=int, default=None, help="rows per partition (default: 64 MiB)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the MiniBatchKMeans process")
    p.add_argument("--sample", type=int, default=1_000_000, help="rows on which the inertias are compared")
    p.add_argument("--daskml-n", type=int, default=200_000, help="rows of the dask-ml side by side (0: skip)")
    p.add_argument("--daskml-own-init", action="store_true",
                   help="also compare each library's own k-means|| (dask-ml's took > 15 min at 200,000 × 64, k = 1000)")
    p.add_argument("--scratch", type=Path, default=Path("/work/scratch/dask-bench"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", action="store_true", help="keep the data file")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--project", action="store_true", help="only print the projection of docs/scale.md")
    p.add_argument("--minibatch-child", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.project:
        print(project(args.out.parent))
        return 0

    if args.minibatch_child is not None:  # the MiniBatchKMeans child: start centres in a .npy beside the data
        data = args.minibatch_child
        print(json.dumps(run_minibatch(args, data, np.load(data.with_suffix(".start.npy")))))
        return 0

    import torch
    from distributed import Client, LocalCluster

    from deepclust.scale import ONE_THREAD_ENV, as_dask_array

    torch.set_num_threads(1)
    args.scratch.mkdir(parents=True, exist_ok=True)
    path = args.scratch / f"blobs-{args.n}x{D}.npy"
    records: list[dict[str, Any]] = []
    try:
        write_s = write_blobs(path, args.n, args.seed) if not path.is_file() else 0.0
        print(f"data: {path} ({path.stat().st_size / 1e9:.2f} GB) written in {write_s:.0f} s", flush=True)
        rng = np.random.default_rng(args.seed + 1)
        start = rows(path, rng.choice(args.n, args.k, replace=False))
        np.save(path.with_suffix(".start.npy"), start)
        sample = rows(path, rng.choice(args.n, min(args.sample, args.n), replace=False))

        # MiniBatchKMeans first, alone on the machine's cores (a child process: its own peak memory)
        mb = json.loads(subprocess.run([sys.executable, __file__, "--minibatch-child", str(path), "--k", str(args.k),
                                        "--n", str(args.n), "--mb-passes", str(args.mb_passes), "--threads",
                                        str(args.threads), "--seed", str(args.seed)],
                                       check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        mb_centres = np.asarray(mb.pop("centres"), dtype=np.float32)
        records.append(base_record(args, **mb, sample_inertia_per_point=inertia_on(sample, mb_centres)))
        print(records[-1]["library"], records[-1]["seconds"], flush=True)

        with LocalCluster(n_workers=args.workers, threads_per_worker=1, memory_limit=args.memory_limit,
                          dashboard_address=":0", processes=True, env=ONE_THREAD_ENV) as cluster, \
                Client(cluster) as client:
            rec, model = run_dask(args, client, str(path), start, args.n, "deepclust DaskKMeans")
            rec["partitions"] = int(as_dask_array(str(path), chunk_rows=args.chunk_rows).numblocks[0])
            records.append(base_record(args, **rec, file_gb=round(path.stat().st_size / 1e9, 2),
                                       memory_limit=args.memory_limit,
                                       sample_inertia_per_point=inertia_on(sample, model.cluster_centers_)))
            print(records[-1]["library"], records[-1]["seconds"], records[-1]["peak_rss_mb_per_worker"], flush=True)

            if args.daskml_n:
                small = argparse.Namespace(**{**vars(args), "n": min(args.daskml_n, args.n)})
                step = max(1, small.n // (4 * args.workers))  # partitions that end exactly at row n
                Xs = as_dask_array(str(path), chunk_rows=step)[:step * 4 * args.workers]
                small.n = int(Xs.shape[0])
                rows_small = Xs.compute()
                for init in (start, "k-means||") if args.daskml_own_init else (start,):
                    ours, _ = run_dask(small, client, Xs, start if init is start else init, small.n,
                                       "deepclust DaskKMeans")
                    theirs = run_daskml(small, Xs, init, small.n)
                    # dask-ml's inertia_ sums unsquared distances when it stops at max_iter: recomputed here
                    theirs["inertia_per_point"] = inertia_on(rows_small, theirs.pop("centres").astype(np.float32))
                    for rec in (ours, theirs):
                        rec["partitions"] = int(Xs.numblocks[0])
                        records.append(base_record(small, **rec, side_by_side=True))
                        print(rec["library"], rec["init"], rec["seconds"], rec["inertia_per_point"], flush=True)

        # full k-means on the sample, same start and iterations: the reference for the inertias
        from deepclust.engines.kmeans import KMeans

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            ref = KMeans(args.k, init=start, max_iter=args.max_iter, tol=0, device="cpu").fit(sample)
        records.append(base_record(args, library=f"deepclust KMeans on the {len(sample):,}-row sample (reference)",
                                   threads=1, iterations=ref.n_iter_,
                                   seconds={"fit": round(time.perf_counter() - t0, 3)},
                                   seconds_per_iteration=round(ref.timings_["iterations"] / ref.n_iter_, 3),
                                   sample_inertia_per_point=ref.inertia_ / len(sample)))
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)
        path.with_suffix(".start.npy").unlink(missing_ok=True)
        if not args.keep and args.scratch.is_dir() and not any(args.scratch.iterdir()):
            shutil.rmtree(args.scratch, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as fh:
        for r in records:
            r["sample_rows"] = min(args.sample, args.n)
            fh.write(json.dumps(r) + "\n")
    print(table_of(records))
    return 0


# ---------------------------------------------------------------------------------- projection (docs/scale.md)
#: what the projection assumes (docs/scale.md spells out why)
TARGET = {"n": 1_000_000_000, "d": 256, "k": 100_000, "iterations": 20, "init_passes": 6,
          "partition_rows": 4_000_000, "h2d_gb_s": 25.0, "disk_gb_s": 2.0, "network_gb_s": 12.5, "fan_in": 8}
FAISS = {"n": 95_000_000, "d": 128, "k": 85_000, "iterations": 25, "gpus": 7, "published_s": 3600.0}


def gpu_rate(results: Path) -> tuple[float, dict[str, Any]]:
    """Multiply-adds per second of our Lloyd step on the GPU: the kmeans-1m records (1M × 128, k = 1000)."""
    recs = [json.loads(line) for f in sorted(results.glob("gpu-*.jsonl")) for line in f.read_text().splitlines()
            if '"kmeans-1m"' in line and '"deepclust"' in line]
    best = min(recs, key=lambda r: r["seconds_per_iteration"])
    return best["n"] * best["k"] * best["d"] / best["seconds_per_iteration"], best


def project(results: Path, workers: tuple[int, ...] = (1, 8, 16, 64, 256)) -> str:
    """The projected wall time of TARGET on N one-GPU Dask workers, from the measured GPU rate and the
    measured Dask overhead per pass (docs/scale.md)."""
    rate, g = gpu_rate(results)
    dask_recs = [json.loads(line) for line in (results / "dask.jsonl").read_text().splitlines() if line.strip()]
    ours = max((r for r in dask_recs if r["library"] == "deepclust DaskKMeans" and r.get("partition_lloyd_seconds")
                and not r.get("side_by_side")), key=lambda r: r["n"])
    parts_per_worker = math.ceil(ours["partitions"] / ours["workers"])  # the busiest worker
    overhead = ours["seconds_per_iteration"] - parts_per_worker * (ours["partition_lloyd_seconds"]
                                                                   + (ours["partition_read_seconds"] or 0))
    t = TARGET
    P = t["n"] // t["partition_rows"]
    sums_gb = t["k"] * t["d"] * 8 / 1e9
    levels = math.ceil(math.log(P, t["fan_in"]))
    # Dask's own cost grows with the tasks: the measured overhead scaled by partitions (pessimistic)
    dask_s = max(0.0, overhead) / ours["partitions"] * P
    reduce_s = levels * t["fan_in"] * sums_gb / t["network_gb_s"] + dask_s
    data_gb = t["n"] * t["d"] * 4 / 1e9
    lines = [f"GPU rate: {rate / 1e12:.2f} × 10¹² multiply-adds/s ({g['device_name']}, {g['n']:,} × {g['d']}, "
             f"k = {g['k']}: {g['seconds_per_iteration'] * 1e3:.1f} ms per Lloyd pass). Dask overhead per pass "
             f"measured on this machine: {max(0.0, overhead):.2f} s ({ours['n']:,} rows, {ours['partitions']} "
             f"partitions, {ours['workers']} workers), taken as {dask_s:.1f} s for {P} partitions. {P} partitions of {t['partition_rows']:,} rows; the "
             f"per-cluster sums are {sums_gb * 1e3:.0f} MB per partition, reduced in {levels} levels of fan-in "
             f"{t['fan_in']}.", "",
             "| GPU workers | compute s / pass | host→GPU s / pass (disk) | reduce + Dask s / pass | "
             f"{t['iterations']} passes | + k-means‖ ({t['init_passes']} passes) | total |", "|" + "---|" * 7]
    for N in workers:
        compute = t["n"] * t["k"] * t["d"] / (N * rate)
        h2d, disk = data_gb / N / t["h2d_gb_s"], data_gb / N / t["disk_gb_s"]
        per_pass = compute + h2d + reduce_s
        total = per_pass * (t["iterations"] + t["init_passes"])
        lines.append(f"| {N} | {compute:,.0f} | {h2d:,.1f} ({disk:,.0f}) | {reduce_s:.1f} | "
                     f"{_hours(per_pass * t['iterations'])} | {_hours(per_pass * t['init_passes'])} | "
                     f"{_hours(total)} |")
    f = FAISS
    ours_faiss = f["n"] * f["k"] * f["d"] * f["iterations"] / (f["gpus"] * rate)
    lines += ["", f"faiss's published run, {f['n']:,} × {f['d']} → {f['k']:,} centroids on {f['gpus']} GPUs (Maxwell "
              f"Titan X) in under {f['published_s'] / 3600:.0f} h, is {f['n'] * f['k'] * f['d'] * f['iterations'] / 1e15:.1f} "
              f"× 10¹⁵ multiply-adds at {f['iterations']} iterations (faiss's default niter; the page does not say): at "
              f"least {f['n'] * f['k'] * f['d'] * f['iterations'] / f['published_s'] / f['gpus'] / 1e12:.2f} × 10¹² "
              f"per GPU per second. At the rate above the same work takes {_hours(ours_faiss)} of compute on "
              f"{f['gpus']} H200s."]
    return "\n".join(lines)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min" if seconds >= 90 else \
        f"{seconds:.0f} s"


def table_of(records: list[dict[str, Any]]) -> str:
    """BENCHMARKS.md's table (kind ``dask``): one row per method and size."""
    def num(value: Any, digits: int) -> str:
        return "–" if value is None else f"{value:,.{digits}f}"

    lines = ["| data | method | workers | start | passes | fit s | s / pass | one partition's Lloyd s | "
             "peak private MiB (per worker) | inertia / point, all rows | on the sample | load at start |",
             "|" + "---|" * 12]
    for r in records:
        mem = r.get("peak_private_mb_per_worker") or ([r["peak_private_mb"]] if r.get("peak_private_mb") else [])
        part = (f"{r['partition_lloyd_seconds']:.2f} ({r['partitions']} partitions)"
                if r.get("partition_lloyd_seconds") else "–")
        own_init_inside = r["library"].startswith("dask-ml") and r.get("init") != "shared"  # its fit includes it
        per = None if own_init_inside else r.get("seconds_per_iteration", r.get("seconds_per_pass"))
        cells = [f"{r['n']:,} × {r['d']}, k = {r['k']}" + (" (side by side)" if r.get("side_by_side") else ""),
                 r["library"], str(r.get("workers", 1)), r.get("init", "shared").replace("||", "‖"),
                 str(r.get("iterations", r.get("passes"))), num(r["seconds"].get("fit"), 1), num(per, 2), part,
                 ", ".join(f"{v:,.0f}" for v in mem) or "–", num(r.get("inertia_per_point"), 4),
                 num(r.get("sample_inertia_per_point"), 4), f"{r['load_avg'][0]:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
