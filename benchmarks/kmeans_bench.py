"""k-means speed and quality: deepclust's torch KMeans vs scikit-learn vs faiss, on the same data.

One run loads (or generates) the data once, then fits, with the same number of Lloyd iterations
(``--iters``; tol=0, n_init=1):

* ``deepclust``  — :class:`deepclust.engines.KMeans` (greedy k-means++ on a subsample, then Lloyd);
* ``sklearn``    — :class:`sklearn.cluster.KMeans` (``algorithm="lloyd"``); its k-means++ is timed
  separately with :func:`sklearn.cluster.kmeans_plusplus` and passed in as ``init``, so that the
  init and iteration seconds are both known (this is what ``KMeans`` does internally);
* ``faiss``      — ``faiss.Kmeans`` (CPU), ``max_points_per_centroid`` raised so that it trains on
  **all** points (its default subsamples 256·k), ``spherical=True`` for ``--metric cosine``; its
  initialisation is a random choice of k points, done inside ``train``.

With ``--init shared`` every library starts from the same k-means++ centres instead (computed
once by deepclust, timed separately), which isolates the iteration speed and makes the final
inertias directly comparable.

Every library's final centres are scored by one shared routine (:func:`exact_inertia`): the two
nearest centres by a float32 product, then the exact float64 squared distance to both. For
``--metric cosine`` the data and the centres are unit-normalised first (spherical objective
``Σ ||x̂ - ĉ||² = 2 Σ (1 - cos)``); scikit-learn has no spherical mode and is run as Euclidean
k-means on the unit-normalised data. Lloyd's algorithm (ours, scikit-learn) stops early when no
label changes; ``n_iter`` says how many iterations each library ran.

One JSON record per library is appended to ``--out`` (JSON Lines), and a table is printed.

Examples::

    python benchmarks/kmeans_bench.py --dataset synthetic                # 1,000,000 × 128, k=1000
    python benchmarks/kmeans_bench.py --dataset mnist --k 10 --iters 20  # MNIST-full raw pixels
    python benchmarks/kmeans_bench.py --dataset synthetic --n 50000 --k 100 --iters 5 --out /tmp/k.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

LIBRARIES = ("deepclust", "sklearn", "faiss")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=("synthetic", "mnist"), default="synthetic")
    p.add_argument("--n", type=int, default=None,
                   help="samples (synthetic: default 1,000,000; mnist: first n of the 70,000)")
    p.add_argument("--d", type=int, default=128, help="features of the synthetic data (default 128)")
    p.add_argument("--k", type=int, default=None, help="clusters (default: 1000 synthetic, 10 mnist)")
    p.add_argument("--iters", type=int, default=20, help="Lloyd iterations for every library (default 20)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for every library (default: all cores)")
    p.add_argument("--device", default="auto", help="device of deepclust's KMeans: auto, cpu, cuda (default auto)")
    p.add_argument("--metric", choices=("euclidean", "cosine"), default="euclidean")
    p.add_argument("--init", choices=("own", "shared"), default="own",
                   help="own: each library's own initialisation; shared: the same k-means++ centres for all")
    p.add_argument("--init-sample-size", type=int, default=None,
                   help="points deepclust's k-means++ runs on (default: its own, max(100·k, 20,000); "
                        "the number of points or more: all of them, as scikit-learn)")
    p.add_argument("--libs", default=",".join(LIBRARIES), help=f"comma-separated subset of {','.join(LIBRARIES)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="append one JSON record per library to this .jsonl file")
    args = p.parse_args(argv)
    args.libs = [s.strip() for s in args.libs.split(",") if s.strip()]
    unknown = set(args.libs) - set(LIBRARIES)
    if unknown:
        p.error(f"unknown libraries {sorted(unknown)}; choose from {LIBRARIES}")
    if args.k is None:
        args.k = 1000 if args.dataset == "synthetic" else 10
    if args.n is None and args.dataset == "synthetic":
        args.n = 1_000_000
    if args.iters < 1:
        p.error("--iters must be >= 1")
    return args


def set_threads(threads: int | None) -> None:
    """Fix thread counts before numpy/torch/faiss start their pools."""
    if threads is None:
        return
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)


# ---------------------------------------------------------------------------------- data
def load_data(args):
    import numpy as np

    if args.dataset == "synthetic":
        rng = np.random.default_rng(args.seed)
        centers = rng.standard_normal((args.k, args.d), dtype=np.float32)
        labels = rng.integers(0, args.k, size=args.n)
        X = rng.standard_normal((args.n, args.d), dtype=np.float32)
        X += centers[labels]
        desc = f"synthetic Gaussian blobs (seed {args.seed}, centres N(0,1), noise N(0,1))"
        return X, desc
    try:
        from deepclust.data import load_dataset
    except ImportError as exc:
        sys.exit(f"--dataset mnist needs deepclust.data.load_dataset, which could not be imported: {exc}")
    ds = load_dataset("mnist")
    X = np.asarray(ds.X, dtype=np.float32).reshape(len(ds.X), -1)
    desc = "MNIST-full raw pixels in [0, 1] (train + test)"
    if args.n is not None and args.n < len(X):
        X = X[: args.n]
        desc += f", first {args.n}"
    args.n, args.d = X.shape
    return np.ascontiguousarray(X), desc


# ---------------------------------------------------------------------------------- scoring
def exact_inertia(X, centers, metric: str) -> float:
    """Sum over points of the squared distance to the nearest centre, exact in float64.

    The two nearest centres of every point come from a float32 product (chunked); the squared
    distance to both is then recomputed in float64 and the smaller is kept.
    """
    import numpy as np
    import torch

    Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    C = torch.from_numpy(np.ascontiguousarray(centers, dtype=np.float32))
    if metric == "cosine":
        Xt = torch.nn.functional.normalize(Xt, dim=1)
        C = torch.nn.functional.normalize(C, dim=1)
    C64 = C.double()
    c_sq = (C * C).sum(1)
    k = C.shape[0]
    top = min(2, k)
    chunk = max(1, (1 << 22) // max(k, Xt.shape[1]))
    total = 0.0
    with torch.no_grad():
        for s in range(0, Xt.shape[0], chunk):
            xb = Xt[s:s + chunk]
            d = torch.addmm(c_sq, xb, C.t(), beta=1, alpha=-2)
            idx = torch.topk(d, top, dim=1, largest=False).indices  # (m, top)
            diff = xb.double()[:, None, :] - C64[idx]
            total += float((diff * diff).sum(-1).min(1).values.sum())
    return total


# ---------------------------------------------------------------------------------- runners
def run_deepclust(X, args, init_centers):
    from deepclust.engines import KMeans

    model = KMeans(args.k, init="k-means++" if init_centers is None else init_centers, n_init=1,
                   max_iter=args.iters, tol=0.0, metric=args.metric, device=args.device,
                   init_sample_size=args.init_sample_size, random_state=args.seed)
    t0 = time.perf_counter()
    model.fit(X)
    total = time.perf_counter() - t0
    t = model.timings_
    from deepclust.device import resolve_device
    from deepclust.runtime import describe_device

    dev = resolve_device(args.device)
    if init_centers is not None:
        init = "given"
    elif args.init_sample_size and args.init_sample_size >= X.shape[0]:
        init = "greedy k-means++ (full data)"
    else:
        init = "greedy k-means++ (subsampled)"
    return {
        "centers": model.cluster_centers_, "n_iter": model.n_iter_,
        "seconds": {"init": t["init"], "iterations": t["iterations"], "total": total,
                    "to_device": t["to_device"], "labels": t["labels"]},
        "reported_inertia": model.inertia_, "device": str(dev), "device_name": describe_device(dev),
        "init": init,
        "init_sample_size": args.init_sample_size,
    }


def run_sklearn(X, args, init_centers):
    import numpy as np
    from sklearn.cluster import KMeans, kmeans_plusplus
    from threadpoolctl import threadpool_limits

    Xs = X
    if args.metric == "cosine":
        Xs = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    with threadpool_limits(limits=args.threads):
        t0 = time.perf_counter()
        if init_centers is None:
            init, _ = kmeans_plusplus(Xs, args.k, random_state=args.seed)
        else:
            init = init_centers
        t1 = time.perf_counter()
        model = KMeans(args.k, init=init, n_init=1, max_iter=args.iters, tol=0.0, algorithm="lloyd",
                       random_state=args.seed).fit(Xs)
        t2 = time.perf_counter()
    return {
        "centers": model.cluster_centers_, "n_iter": int(model.n_iter_),
        "seconds": {"init": t1 - t0, "iterations": t2 - t1, "total": t2 - t0},
        "reported_inertia": float(model.inertia_), "device": "cpu",
        "init": "given" if init_centers is not None else "greedy k-means++ (full data)",
        **({"note": "no spherical mode: Euclidean k-means on unit-normalised data"} if args.metric == "cosine" else {}),
    }


def run_faiss(X, args, init_centers):
    import faiss

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    km = faiss.Kmeans(X.shape[1], args.k, niter=args.iters, nredo=1, seed=args.seed, verbose=False,
                      spherical=args.metric == "cosine", max_points_per_centroid=X.shape[0] // args.k + 1,
                      min_points_per_centroid=1)
    t0 = time.perf_counter()
    if init_centers is None:
        km.train(X)
    else:
        km.train(X, init_centroids=init_centers)
    total = time.perf_counter() - t0
    stats = km.iteration_stats
    return {
        "centers": km.centroids, "n_iter": len(stats),
        "seconds": {"init": 0.0, "iterations": total, "total": total,
                    "search": float(stats[-1]["time_search"]) if stats else None},
        "reported_inertia": float(stats[-1]["obj"]) if stats else None, "device": "cpu",
        "init": "given" if init_centers is not None else "random k points (inside train)",
        "note": "faiss reports the objective before its last centre update; 'inertia' is recomputed",
    }


RUNNERS = {"deepclust": run_deepclust, "sklearn": run_sklearn, "faiss": run_faiss}


def library_version(lib: str) -> str:
    if lib == "faiss":
        import faiss

        return faiss.__version__
    if lib == "sklearn":
        import sklearn

        return sklearn.__version__
    from deepclust import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_threads(args.threads)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from deepclust.runtime import describe_device, machine_load, versions

    t0 = time.perf_counter()
    X, desc = load_data(args)
    print(f"data: {desc}: {X.shape[0]:,} × {X.shape[1]}, k={args.k}, {args.iters} iterations, "
          f"metric={args.metric}, init={args.init} ({time.perf_counter() - t0:.1f} s to load)", flush=True)

    shared = None
    shared_seconds = None
    if args.init == "shared":
        from deepclust.engines.kmeans import KMeans

        t0 = time.perf_counter()
        seeder = KMeans(args.k, max_iter=1, metric=args.metric, device="cpu", random_state=args.seed)
        seeder._check_params(X.shape[1])
        Xt = torch.from_numpy(X)
        if args.metric == "cosine":
            Xt = torch.nn.functional.normalize(Xt, dim=1)
        shared = seeder._init_centers(Xt, args.k, args.seed, torch.device("cpu")).numpy()
        shared_seconds = time.perf_counter() - t0
        print(f"shared k-means++ init: {shared_seconds:.2f} s", flush=True)

    common = {
        "benchmark": "kmeans", "dataset": args.dataset, "data": desc, "n": int(X.shape[0]), "d": int(X.shape[1]),
        "k": args.k, "iters": args.iters, "metric": args.metric, "init_mode": args.init, "seed": args.seed,
        "threads": args.threads or torch.get_num_threads(), "host": platform.node(),
        "cpu": describe_device(torch.device("cpu")),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {**versions(), "faiss": _safe_version("faiss")}, **machine_load(),
        **({"shared_init_seconds": shared_seconds} if shared_seconds is not None else {}),
    }
    records = []
    for lib in args.libs:
        print(f"running {lib} ...", flush=True)
        res = RUNNERS[lib](X, args, shared)
        t0 = time.perf_counter()
        inertia = exact_inertia(X, res.pop("centers"), args.metric)
        rec = {**common, "library": lib, "library_version": library_version(lib), **res,
               "inertia": inertia, "seconds_per_iteration": res["seconds"]["iterations"] / max(1, res["n_iter"]),
               "scoring_seconds": time.perf_counter() - t0}
        records.append(rec)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with args.out.open("a") as fh:
                fh.write(json.dumps(rec) + "\n")

    print_table(records)
    if args.out:
        print(f"records appended to {args.out}")
    return 0


def _safe_version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except Exception:  # noqa: BLE001 - optional dependency
        return None


def print_table(records: list[dict]) -> None:
    best = min(r["inertia"] for r in records) if records else 0.0
    head = f"{'library':<10} {'device':<8} {'thr':>3} {'n_iter':>6} {'init s':>8} {'iter s':>8} {'s/iter':>7} " \
           f"{'total s':>8} {'inertia':>14} {'vs best':>8}"
    print(head)
    print("-" * len(head))
    for r in records:
        s = r["seconds"]
        print(f"{r['library']:<10} {r['device']:<8} {r['threads']:>3} {r['n_iter']:>6} {s['init']:>8.2f} "
              f"{s['iterations']:>8.2f} {r['seconds_per_iteration']:>7.3f} {s['total']:>8.2f} {r['inertia']:>14.6g} "
              f"{r['inertia'] / best:>8.4f}")


if __name__ == "__main__":
    sys.exit(main())
