"""Beyond one machine with Dask: the cluster to run on, inputs as Dask arrays, embeddings computed on
the workers, and ``deepclust cluster --distributed`` (k-means by :class:`~deepclust.engines.dask_kmeans.DaskKMeans`).

* :func:`dask_client` connects to a running Dask scheduler (``--scheduler ADDRESS`` or
  ``$DEEPCLUST_DASK_SCHEDULER``) or starts a ``LocalCluster`` (``--distributed``).
* :func:`as_dask_array` turns a Dask array or DataFrame, a folder of Parquet files, a ``.npy`` file
  (read by the workers through a memory map, never sent through the scheduler) or a NumPy array into
  a float32 Dask array of row partitions.
* :func:`encode_on_dask` computes embeddings partition by partition on the workers and writes one
  Parquet file per partition, named by the partition's cache key (encoder identity + data
  fingerprint, as :mod:`deepclust.encoders.cache`): a rerun after a failure reuses the finished
  files, and a worker lost mid-run has its partitions recomputed by Dask.
* :func:`cluster_on_dask` is the command line's distributed k-means run.

Needs the ``dask`` extra: ``pip install 'deepclust[dask]'``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from deepclust.data.readers import IMAGE_SUFFIXES
from deepclust.errors import DeepclustError

#: environment variable holding the address of the Dask scheduler to use
SCHEDULER_ENV = "DEEPCLUST_DASK_SCHEDULER"
#: bytes of one partition when deepclust chooses the partitioning
PARTITION_BYTES = 64 << 20
#: a LocalCluster's worker processes run one task at a time, on one core each
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
#: seconds to wait for a scheduler to answer
CONNECT_TIMEOUT = 10.0
#: rows on which the label-free scores of a distributed run are computed
SCORE_SAMPLE = 10_000


def _require_dask() -> None:
    try:
        import dask.array  # noqa: F401 - only whether they import
        import distributed  # noqa: F401
    except ImportError as exc:
        raise DeepclustError("Dask is not installed: pip install 'deepclust[dask]' "
                             f"(dask[distributed], dask[dataframe]); {exc}") from None


def is_dask_collection(X: Any) -> bool:
    """Whether ``X`` is a Dask array, DataFrame or Series (without importing Dask when it is not)."""
    return type(X).__module__.split(".")[0] in ("dask", "dask_expr") and hasattr(X, "__dask_graph__")


# ---------------------------------------------------------------------------------- cluster
@contextlib.contextmanager
def dask_client(scheduler: str | None = None, distributed: bool = False, *, n_workers: int | None = None,
                timeout: float | None = None) -> Iterator[Any]:
    """The Dask client to run on: connected to ``scheduler`` (else ``$DEEPCLUST_DASK_SCHEDULER``), or a
    ``LocalCluster`` of ``n_workers`` processes when ``distributed``; None (Dask's local threads) when
    neither is asked for. The client is closed (and a local cluster stopped) on exit."""
    address = scheduler or os.environ.get(SCHEDULER_ENV) or None
    if address is None and not distributed:
        yield None
        return
    _require_dask()
    from distributed import Client, LocalCluster

    if address is not None:
        try:
            client = Client(address, timeout=timeout or CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as exc:
            raise DeepclustError(f"cannot reach the Dask scheduler at {address!r} "
                                 f"(--scheduler / ${SCHEDULER_ENV}): {exc}") from None
        with client:
            _prepare_workers(client, address)
            yield client
        return
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, dashboard_address=":0", silence_logs=logging.ERROR,
                      env=ONE_THREAD_ENV) as cluster, \
            Client(cluster) as client:
        _prepare_workers(client, "the local cluster")
        client.run(_one_torch_thread)  # one thread per worker process, as Dask was told
        yield client


def _one_torch_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _prepare_workers(client: Any, where: str) -> None:
    """Import the k-means kernels on every worker now (torch's import is then not counted in the fit), and
    say so clearly when a worker cannot."""
    try:
        client.run(importlib.import_module, "deepclust.engines.dask_kmeans")
    except ImportError as exc:
        raise DeepclustError(f"the Dask workers at {where} cannot import deepclust ({exc}): install "
                             "deepclust[dask] in every worker's environment") from None


def describe_cluster(client: Any) -> dict[str, Any]:
    """Scheduler address, workers and threads (for metrics.json and benchmark records)."""
    if client is None:
        return {"scheduler": "dask threads (no distributed cluster)"}
    workers = client.scheduler_info(n_workers=-1)["workers"]
    return {"scheduler": client.scheduler.address, "n_workers": len(workers),
            "threads": sum(w["nthreads"] for w in workers.values())}


# ---------------------------------------------------------------------------------- inputs
def _partition_rows(n: int, d: int) -> int:
    """Rows per partition: about ``PARTITION_BYTES`` of float32, and at least 8 partitions of >= 1024 rows."""
    return max(1, min(PARTITION_BYTES // (4 * max(d, 1)), max(1024, -(-n // 8))))


def _read_rows(path: str, offset: int, shape: tuple[int, ...], dtype: str, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of a memory-mapped array, read on the worker, as float32."""
    mm = np.memmap(path, dtype=np.dtype(dtype), mode="r", offset=offset, shape=shape)
    return np.asarray(mm[start:stop], dtype=np.float32).reshape(stop - start, -1)


def _from_memmap(mm: np.memmap, chunk_rows: int | None) -> Any:
    """A Dask array whose tasks read their rows from the file behind ``mm`` (no data in the graph)."""
    import dask
    import dask.array as da

    n, d = mm.shape[0], int(np.prod(mm.shape[1:]))
    step = chunk_rows or _partition_rows(n, d)
    offset = int(mm.offset) if isinstance(mm, np.memmap) else 0
    read = functools.partial(_read_rows, str(mm.filename), offset, tuple(mm.shape), mm.dtype.str)
    blocks = [da.from_delayed(dask.delayed(read)(s, min(n, s + step)), shape=(min(n, s + step) - s, d),
                              dtype=np.float32) for s in range(0, n, step)]
    return da.concatenate(blocks, axis=0)


def _memmap_base(X: np.ndarray) -> np.memmap | None:
    """The file-backed ``np.memmap`` that ``X`` is (not a slice or view of one), if any."""
    if isinstance(X, np.memmap) and getattr(X, "filename", None) and X.flags.c_contiguous:
        base = X.base
        if base is None or not isinstance(base, np.ndarray):
            return X
    return None


def read_parquet_folder(path: str | os.PathLike, *, label_column: str | None = None) -> tuple[Any, Any]:
    """(float32 Dask array of the numeric columns, Dask series of ``label_column`` or None)."""
    import dask.dataframe as dd

    p = Path(path).expanduser()
    if p.is_dir() and not any(f.suffix.lower() in (".parquet", ".pq") for f in p.rglob("*") if f.is_file()):
        raise DeepclustError(f"{p} holds no Parquet files (*.parquet)")
    try:
        df = dd.read_parquet(str(p))
    except (OSError, ValueError) as exc:
        raise DeepclustError(f"cannot read the Parquet data in {p}: {exc}") from None
    y = None
    if label_column is not None:
        if label_column not in df.columns:
            raise DeepclustError(f"{p} has no column {label_column!r}; its columns: {', '.join(map(str, df.columns))}")
        y = df[label_column]
        df = df.drop(columns=[label_column])
    return dataframe_to_array(df, name=str(p)), y


def dataframe_to_array(df: Any, *, name: str = "the DataFrame") -> Any:
    """The numeric columns of a Dask DataFrame as a float32 Dask array (other columns are refused)."""
    bad = [str(c) for c, t in df.dtypes.items() if not (np.issubdtype(t, np.number) or np.issubdtype(t, np.bool_))]
    if bad:
        raise DeepclustError(f"{name} has non-numeric columns ({', '.join(bad[:5])}); give the label column with "
                             "--label-column, or drop the others")
    if len(df.columns) == 0:
        raise DeepclustError(f"{name} has no feature columns")
    X = df.to_dask_array(lengths=True).astype(np.float32)
    if X.shape[0] == 0:
        raise DeepclustError(f"{name} is empty: it has no rows")
    return X


def as_dask_array(X: Any, *, chunk_rows: int | None = None) -> Any:
    """A 2-D float32 Dask array of row partitions (one chunk across the columns) from a Dask array or
    DataFrame, a path (``.npy``, a ``.parquet`` file or a folder of them) or a NumPy array/memmap."""
    _require_dask()
    import dask.array as da
    import dask.dataframe as dd

    if isinstance(X, (str, os.PathLike)):
        p = Path(X).expanduser()
        if not p.exists():
            raise DeepclustError(f"input {p} does not exist")
        if p.suffix.lower() == ".npy":
            try:
                X = np.load(p, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise DeepclustError(f"cannot read {p} as a .npy array: {exc}") from None
        elif p.is_dir() or p.suffix.lower() in (".parquet", ".pq"):
            return read_parquet_folder(p)[0]
        else:
            raise DeepclustError(f"{p}: Dask reads a .npy file or Parquet files (a folder of *.parquet)")
    if isinstance(X, dd.DataFrame):
        return dataframe_to_array(X)
    if isinstance(X, np.ndarray):
        if X.ndim < 2 or X.shape[0] == 0 or X.dtype.kind not in "biuf":
            from deepclust.validation import as_float_array

            as_float_array(X[:1] if X.ndim >= 2 and X.shape[0] else X)  # the usual one-line message
        mm = _memmap_base(X)
        if mm is not None:
            return _from_memmap(mm, chunk_rows)
        X2 = X.reshape(len(X), -1)
        step = chunk_rows or _partition_rows(*X2.shape)
        X = da.from_array(X2, chunks=(step, X2.shape[1])).astype(np.float32).persist()  # sent to the workers once
    if not isinstance(X, da.Array):
        raise DeepclustError(f"cannot use a {type(X).__name__} as Dask input: give a Dask array or DataFrame, a .npy "
                             "file, a folder of Parquet files or a NumPy array")
    if any(np.isnan(c) for c in X.chunks[0]):
        X = X.compute_chunk_sizes()
    if X.ndim != 2:
        if X.ndim < 2:
            raise DeepclustError(f"X must have at least 2 dimensions (samples × features), got shape {X.shape}")
        X = X.reshape(X.shape[0], -1)
    if X.shape[0] == 0:
        raise DeepclustError("X is empty: it has no samples")
    if X.dtype != np.float32:
        X = X.astype(np.float32)
    return X.rechunk({1: -1}) if len(X.chunks[1]) > 1 else X


def sample_rows(X: Any, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct random rows of the Dask array ``X`` (in index order), as a NumPy array."""
    idx = np.sort(rng.choice(int(X.shape[0]), size=min(int(n), int(X.shape[0])), replace=False))
    return np.ascontiguousarray(X[idx].compute(), dtype=np.float32)


# ---------------------------------------------------------------------------------- embeddings on the workers
@functools.lru_cache(maxsize=4)
def _worker_encoder(name: str, options: str, random_state: int) -> Any:
    """The encoder, built once per worker process (its weights load once)."""
    from deepclust.encoders.api import get_encoder

    return get_encoder(name, random_state=random_state, **json.loads(options))


def _encode_partition(part: Any, index: int, folder: str, name: str, options: str, random_state: int,
                      device: str, batch_size: int | None) -> str:
    """Embed one partition and write ``part-<index>-<key>.parquet``, unless that file is already there."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from deepclust.device import resolve_device
    from deepclust.encoders.cache import cache_key, fingerprint_data

    data = part.tolist() if hasattr(part, "tolist") and getattr(part, "dtype", None) == object else part
    if hasattr(data, "to_numpy"):  # a pandas Series of texts
        data = [str(t) for t in data.to_numpy()]
    enc = _worker_encoder(name, options, random_state)
    path = Path(folder) / f"part-{index:06d}-{cache_key(enc.identity(), fingerprint_data(data))[:24]}.parquet"
    if path.is_file():
        try:
            pq.read_metadata(path)
            return str(path)
        except (OSError, pa.ArrowInvalid):
            pass  # unreadable: recompute
    Z = enc.encode(data, device=resolve_device(device), batch_size=batch_size)
    table = pa.table({f"e{j}": Z[:, j] for j in range(Z.shape[1])})
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return str(path)


def encode_on_dask(data: Any, name: str = "minilm", *, out_dir: str | os.PathLike | None = None,
                   device: str = "auto", batch_size: int | None = None, random_state: int = 0,
                   **options: Any) -> tuple[Any, dict[str, Any]]:
    """Embed a Dask collection partition by partition on the workers (see the module notes).

    ``data``: a Dask Series of texts or a Dask array of images/vectors. The files go to ``out_dir``
    (default: ``dask-<key>/`` in the embedding cache, the key made of the encoder's identity and
    Dask's token of the data). Returns (a float32 Dask array read back from those files, info).
    """
    _require_dask()
    import dask
    import dask.array as da
    import dask.dataframe as dd

    from deepclust.encoders.cache import cache_key, resolve_cache_dir

    enc = _worker_encoder(str(name), json.dumps(options, sort_keys=True), random_state)
    identity = enc.identity()
    if out_dir is None:
        out_dir = resolve_cache_dir() / f"dask-{cache_key(identity, dask.base.tokenize(data))}"
    folder = Path(out_dir).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(data, da.Array):
        parts = data.rechunk({i: -1 for i in range(1, data.ndim)}).to_delayed().ravel()
    elif isinstance(data, (dd.Series, dd.DataFrame)):
        parts = data.to_delayed()
    else:
        raise DeepclustError(f"encode_on_dask takes a Dask array or Series, got a {type(data).__name__}")
    t0 = time.perf_counter()
    done_before = {p.name for p in folder.glob("part-*.parquet")}
    task = functools.partial(_encode_partition, folder=str(folder), name=str(name),
                             options=json.dumps(options, sort_keys=True), random_state=random_state,
                             device=device, batch_size=batch_size)
    paths = dask.compute(*[dask.delayed(task)(p, i) for i, p in enumerate(parts)])
    Z = dd.read_parquet(list(paths)).to_dask_array(lengths=True)
    reused = sum(Path(p).name in done_before for p in paths)
    return Z, {"name": enc.name, "identity": identity, "cached": reused == len(paths), "dim": int(Z.shape[1]),
               "partitions": len(paths), "partitions_reused": reused, "folder": str(folder),
               "seconds": round(time.perf_counter() - t0, 4)}


# ---------------------------------------------------------------------------------- deepclust cluster --distributed
def load_for_dask(spec: str, *, data_dir: str | None = None, label_column: str | None = None) -> tuple[Any, Any, str]:
    """(data, labels (NumPy, Dask series or None), name) of a command-line input, before any cluster is
    started: a ``.npy`` file or Parquet data as a lazy Dask array (read by the workers later); other
    inputs (built-in datasets, CSV ...) read into a NumPy array, to be sent to the workers by
    :func:`as_dask_array` once the client is open."""
    p = Path(str(spec)).expanduser()
    if p.suffix.lower() == ".npy" and p.is_file():
        if label_column:
            raise DeepclustError("--label-column applies to tables; a .npy array has no columns")
        return as_dask_array(p), None, p.name
    if p.suffix.lower() in (".parquet", ".pq") and p.exists() or p.is_dir() and not any(
            f.suffix.lower() in IMAGE_SUFFIXES for f in p.rglob("*")):
        _require_dask()
        X, y = read_parquet_folder(p, label_column=label_column)
        return X, y, p.name
    from deepclust.data import load_input

    ds = load_input(spec, data_dir=data_dir, **({"label_column": label_column} if label_column else {}))
    if ds.meta.modality not in ("array", "table", "image"):
        raise DeepclustError(f"{ds.meta.name} is {ds.meta.modality} data: embed it first (deepclust.encode, or "
                             "deepclust.scale.encode_on_dask on the workers), then cluster the embeddings")
    return np.asarray(ds.X), ds.y, ds.meta.name


def cluster_on_dask(spec: str, out: Path, *, n_clusters: int | None, method: str = "kmeans", seed: int = 0,
                    device: str = "auto", params: dict[str, Any] | None = None, data_dir: str | None = None,
                    label_column: str | None = None, scheduler: str | None = None, distributed: bool = False,
                    overwrite: bool = False) -> dict[str, Any]:
    """``deepclust cluster … --distributed``: k-means by DaskKMeans on the workers, then assignments.csv
    (written partition by partition), metrics.json (label-free scores on a sample of ``SCORE_SAMPLE``
    rows; ACC/NMI/ARI on all rows when labels are known) and model/ (an in-memory ``kmeans`` model)."""
    import csv

    import dask

    from deepclust import metrics
    from deepclust.engines.dask_kmeans import DaskKMeans
    from deepclust.methods import check_params
    from deepclust.output import check_out_dir, write_run_dir
    from deepclust.runtime import json_safe, versions
    from deepclust.validation import check_n_clusters

    if method.strip().lower() != "kmeans":
        raise DeepclustError(f"--scheduler/--distributed run k-means (--method kmeans) on Dask; {method!r} runs in "
                             "one process (drop --scheduler/--distributed and unset $" + SCHEDULER_ENV + ")")
    for key, option in (("n_clusters", "-k/--n-clusters"), ("random_state", "--seed"), ("device", "--device")):
        if key in (params or {}):
            raise DeepclustError(f"--param {key}=… is not taken: give it with {option}")
    check_params(DaskKMeans, params or {}, method="kmeans (Dask)")
    check_out_dir(out, overwrite, (spec, data_dir))  # before any work
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    X, y, name = load_for_dask(spec, data_dir=data_dir, label_column=label_column)
    with dask_client(scheduler, distributed) as client:
        X = as_dask_array(X)  # an in-memory input goes to the workers once
        seconds["load"] = time.perf_counter() - t0
        if n_clusters is None:
            if y is None:
                raise DeepclustError("--n-clusters is required: this input has no known number of classes")
            n_clusters = int(len(np.unique(np.asarray(y))))
        k = check_n_clusters(n_clusters, int(X.shape[0]))
        model = DaskKMeans(k, random_state=seed, device=device, **(params or {}))
        t0 = time.perf_counter()
        model.fit(X)
        seconds["fit"] = time.perf_counter() - t0
        for phase, sec in model.timings_.items():
            if isinstance(sec, float):
                seconds[f"fit.{phase}"] = sec

        t0 = time.perf_counter()
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(int(X.shape[0]), size=min(SCORE_SAMPLE, int(X.shape[0])), replace=False))
        sample = np.asarray(X[idx].compute())
        kmeans = model.to_kmeans()
        scores = metrics.internal_scores(sample, kmeans.predict(sample), random_state=seed)
        scores["inertia"] = model.inertia_
        seconds["score"] = time.perf_counter() - t0
        blocks = list(model.label_confidence(X).to_delayed().ravel())
        n_workers = max(1, describe_cluster(client).get("n_workers", 2))

        def fill(folder: Path) -> None:
            labels = []
            with open(folder / "assignments.csv", "w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["index", "cluster", "confidence"])
                start = 0
                for i in range(0, len(blocks), 2 * n_workers):  # a few partitions at a time, in order
                    for part in dask.compute(*blocks[i:i + 2 * n_workers]):
                        lab = part[:, 0].astype(np.int64)
                        writer.writerows(zip(range(start, start + len(lab)), lab.tolist(),
                                             np.round(part[:, 1], 6).tolist()))
                        start += len(lab)
                        if y is not None:
                            labels.append(lab)
            if y is not None:
                truth = np.asarray(y.compute() if hasattr(y, "compute") else y)
                scores.update(metrics.external_scores(truth, np.concatenate(labels)))
            summary["scores"] = scores
            (folder / "metrics.json").write_text(json.dumps(json_safe(summary), indent=2, allow_nan=False))
            kmeans.save(folder / "model")

        summary = {"dataset": name, "n_samples": int(X.shape[0]), "method": "kmeans", "engine": "dask",
                   "params": {**model.get_params(), "init": model.init if isinstance(model.init, str) else "array"},
                   "n_clusters": k, "converged": model.converged_, "n_iter": model.n_iter_,
                   "partitions": int(X.numblocks[0]), "dask": describe_cluster(client),
                   "score_sample": int(len(idx)), "seconds": seconds,
                   "iteration_seconds": model.timings_["iteration_seconds"], "versions": versions()}
        t0 = time.perf_counter()
        out = write_run_dir(out, fill, overwrite=overwrite, inputs=(spec, data_dir))
        seconds["write"] = time.perf_counter() - t0
    return {**summary, "out": str(out)}
