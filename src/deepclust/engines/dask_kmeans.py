"""k-means on a Dask cluster, for data larger than one machine's memory (:class:`DaskKMeans`).

Every pass over the data is a map-reduce over the partitions (row blocks) of a Dask array:

* **map**: on the worker that holds (or reads) a partition, the torch kernel of
  :mod:`deepclust.engines.kmeans` (``_assign``: chunked ``addmm`` + row arg-min, on the worker's GPU
  when it has one) gives the per-cluster sums and counts, the partition's inertia, and its few
  points farthest from their centre (for empty clusters);
* **reduce**: these small results (k × d) are summed in a tree of fan-in 8; the client makes the
  centre update, exactly as :class:`~deepclust.engines.kmeans.KMeans` does in memory (empty
  clusters take the points farthest from their centres, as scikit-learn). With the same starting
  centres both give the same centres up to float rounding (float32 sums per chunk, float64 across).

Initialisation ``"k-means||"`` (Bahmani et al., "Scalable k-means++", VLDB 2012; Spark MLlib's
default): from one random point, ``init_rounds`` rounds each sample every point independently with
probability ``min(1, ℓ·d²(x, C)/φ(C))``, ℓ = ``oversampling_factor · k``; the candidates are
weighted by the number of points nearest to them and reduced to k centres by weighted k-means++
and Lloyd (scikit-learn) on the client. Spark's defaults (ℓ = 2k, 2 rounds) are ours. dask-ml's
``KMeans`` draws ℓ = ``oversampling_factor`` (= 2) points per round, not 2k, and does not weight
the candidates; with k = 1000 it ends with far fewer candidates than k and fills the rest at random
(measured in ``benchmarks/dask_bench.py``). ``"k-means++"`` runs our greedy k-means++ on a random
sample of ``max(100·k, 20_000)`` rows gathered to the client.

Which scheduler runs the work: the active one (a ``distributed.Client`` opened by the user or by
:func:`deepclust.scale.dask_client`), else Dask's local threads. A worker that dies mid-pass loses
nothing: its tasks are recomputed elsewhere (the partitions are re-read from their source).
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from deepclust.base import BaseClusterer
from deepclust.device import resolve_device
from deepclust.engines.kmeans import (
    KMeans, _assign, _check_common, _check_random_state, _chunk_rows, _default_init_sample, _row_sq_norms,
    _sq_distances, _to_device, _torch_generator, kmeans_plusplus,
)
from deepclust.errors import DeepclustError
from deepclust.validation import as_float_array

__all__ = ["DaskKMeans"]

#: points farthest from their centre that every partition reports (candidates for empty clusters)
_FAR = 8
#: partial results summed per reduce task
_FAN_IN = 8


# ---------------------------------------------------------------------------------- per-partition kernels
def _block(x: np.ndarray, C: np.ndarray, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.device]:
    dev = resolve_device(device)  # resolved on the worker: "auto" is its own GPU when it has one
    return _to_device(np.asarray(x), dev), torch.as_tensor(C, device=dev), dev


@torch.no_grad()
def _lloyd_stats(x: np.ndarray, C: np.ndarray, device: str, moments: bool = False) -> dict[str, np.ndarray]:
    """One partition's share of a Lloyd step under centres ``C`` (with ``moments``: also Σx and Σ||x||²,
    for the tolerance; the first pass only)."""
    xt, Ct, dev = _block(x, C, device)
    k, d = Ct.shape
    sums = torch.zeros((k, d), dtype=torch.float64, device=dev)
    counts = torch.zeros(k, dtype=torch.float64, device=dev)
    labels, dist = _assign(xt, Ct, _chunk_rows(len(xt), k, dev, None, d), sums=sums, counts=counts, exact_sq=True)
    far = torch.topk(dist, min(_FAR, len(xt))).indices
    out = {"sums": sums.cpu().numpy(), "counts": counts.cpu().numpy(),
           "inertia": np.array([float(dist.sum(dtype=torch.float64))]),
           "far_dist": dist[far].cpu().numpy(), "far_x": xt[far].cpu().numpy(), "far_label": labels[far].cpu().numpy()}
    if moments:
        out["x_sum"] = sums.sum(0).cpu().numpy()  # the cluster sums add up to Σ x
        out["x_sq"] = np.array([float(_row_sq_norms(xt).sum(dtype=torch.float64))])
    return out


def _combine(*parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Sum partial results; keep the ``_FAR`` farthest points overall."""
    out = {key: sum(p[key] for p in parts) for key in parts[0] if not key.startswith("far_")}
    far = {key: np.concatenate([p[key] for p in parts]) for key in ("far_dist", "far_x", "far_label")}
    keep = np.argsort(-far["far_dist"], kind="stable")[:_FAR]
    return {**out, **{key: v[keep] for key, v in far.items()}}


@torch.no_grad()
def _min_sq_dist(x: np.ndarray, C: np.ndarray, device: str) -> np.ndarray:
    """Squared distance of every row to its nearest centre (clamped at 0), float32."""
    xt, Ct, dev = _block(x, C, device)
    _, min_dist = _assign(xt, Ct, _chunk_rows(len(xt), len(Ct), dev, None, xt.shape[1]))
    return (min_dist + _row_sq_norms(xt)).clamp_(min=0).cpu().numpy()


def _oversample(x: np.ndarray, d2: np.ndarray, scale: float, seed: int, block_id: int) -> np.ndarray:
    """Rows drawn independently with probability ``min(1, scale · d²)`` (one k-means|| round)."""
    rng = np.random.default_rng([seed, block_id])
    return np.asarray(x, dtype=np.float32)[rng.random(len(d2)) < scale * d2]


def _nearest_counts(x: np.ndarray, C: np.ndarray, device: str) -> np.ndarray:
    """How many rows of the partition have each centre as their nearest."""
    xt, Ct, dev = _block(x, C, device)
    labels, _ = _assign(xt, Ct, _chunk_rows(len(xt), len(Ct), dev, None, xt.shape[1]))
    return np.bincount(labels.cpu().numpy(), minlength=len(C)).astype(np.float64)


def _predict_block(x: np.ndarray, C: np.ndarray, device: str) -> np.ndarray:
    xt, Ct, dev = _block(x, C, device)
    labels, _ = _assign(xt, Ct, _chunk_rows(len(xt), len(Ct), dev, None, xt.shape[1]))
    return labels.cpu().numpy()


def _distances_block(x: np.ndarray, C: np.ndarray, device: str, temperature: float | None) -> np.ndarray:
    """Euclidean distances to the centres, or (with ``temperature``) the soft assignment of KMeans."""
    xt, Ct, dev = _block(x, C, device)
    d2 = _sq_distances(xt, Ct, _chunk_rows(len(xt), len(Ct), dev, None, xt.shape[1]))
    if temperature is None:
        return d2.sqrt_().cpu().numpy()
    return torch.softmax(d2.div_(-max(temperature, 1e-12)), dim=1).cpu().numpy()


@torch.no_grad()
def _label_confidence_block(x: np.ndarray, C: np.ndarray, device: str, temperature: float) -> np.ndarray:
    """(n, 2): nearest centre and its soft-assignment probability (the max of ``predict_proba``), computed
    in row chunks so that no (partition × k) matrix is held."""
    xt, Ct, dev = _block(x, C, device)
    chunk = _chunk_rows(len(xt), len(Ct), dev, None, xt.shape[1])
    out = np.empty((len(xt), 2), dtype=np.float64)
    for s in range(0, len(xt), chunk):
        p = torch.softmax(_sq_distances(xt[s:s + chunk], Ct, chunk).div_(-max(temperature, 1e-12)), dim=1)
        conf, lab = p.max(dim=1)
        out[s:s + chunk, 0] = lab.cpu().numpy()
        out[s:s + chunk, 1] = conf.cpu().numpy()
    return out


def _tree_sum(parts: list) -> Any:
    """Reduce delayed partial results pairwise in a tree of fan-in ``_FAN_IN``."""
    import dask

    while len(parts) > 1:
        parts = [dask.delayed(_combine)(*parts[i:i + _FAN_IN]) for i in range(0, len(parts), _FAN_IN)]
    return parts[0]


# ---------------------------------------------------------------------------------- estimator
class DaskKMeans(BaseClusterer):
    """k-means (Lloyd) over the partitions of a Dask array, with k-means|| initialisation.

    Parameters
    ----------
    n_clusters : number of clusters k.
    init : ``"k-means||"`` (default), ``"k-means++"`` (on a sample gathered to the client),
        ``"random"`` (k random rows) or an array of initial centres (k, n_features).
    max_iter, tol : as :class:`~deepclust.engines.kmeans.KMeans` (stop when the squared centre shift
        is at most ``tol`` × the mean per-feature variance).
    oversampling_factor, init_rounds : k-means|| draws about ``oversampling_factor · k`` candidates
        in each of ``init_rounds`` rounds (Spark MLlib's defaults: 2 and 2).
    chunk_rows : rows per partition when the input is a NumPy array, a ``.npy`` file or a memory map
        (``None``: about 64 MiB each); a Dask array or DataFrame keeps its own partitions.
    device : where the partition kernels run, resolved on each worker: ``"auto"`` (its GPU when it has
        one, else its CPU), ``"cpu"``, ``"cuda"``.
    random_state, verbose : as :class:`~deepclust.engines.kmeans.KMeans`.

    ``fit`` takes a Dask array or DataFrame (numeric columns), a path to a ``.npy`` file or a folder
    of Parquet files, or any NumPy array (see :func:`deepclust.scale.as_dask_array`).
    ``predict``, ``transform`` and ``predict_proba`` work partition by partition and return a lazy
    Dask array for such input (a NumPy array for NumPy input). ``labels_`` is a lazy Dask array.

    Attributes: ``cluster_centers_``, ``labels_``, ``inertia_``, ``n_iter_``, ``converged_``,
    ``temperature_`` (``inertia_ / n``), ``timings_`` (``init``, ``iterations``, ``labels`` and the
    seconds of every Lloyd pass in ``iteration_seconds``).
    """

    _saved_arrays = ("cluster_centers_",)
    _saved_values = ("inertia_", "n_iter_", "converged_", "temperature_")
    _max_input_dims = 2

    def __init__(self, n_clusters: int = 8, *, init: Any = "k-means||", max_iter: int = 300, tol: float = 1e-4,
                 oversampling_factor: float = 2.0, init_rounds: int = 2, chunk_rows: int | None = None,
                 device: Any = "auto", random_state: Any = 0, verbose: bool = False):
        self.n_clusters = n_clusters
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.oversampling_factor = oversampling_factor
        self.init_rounds = init_rounds
        self.chunk_rows = chunk_rows
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ input
    def _validate_input(self, X: Any) -> Any:
        from deepclust.scale import _memmap_base, as_dask_array

        self._numpy_input = isinstance(X, np.ndarray) and _memmap_base(X) is None
        return as_dask_array(X, chunk_rows=self.chunk_rows)

    def _check_params(self) -> None:
        _check_common(self.n_clusters, "euclidean", self.max_iter, self.tol, None)
        if not isinstance(self.oversampling_factor, (int, float)) or not self.oversampling_factor > 0:
            raise DeepclustError(f"oversampling_factor must be a number > 0, got {self.oversampling_factor!r}")
        if isinstance(self.init_rounds, bool) or not isinstance(self.init_rounds, int) or self.init_rounds < 1:
            raise DeepclustError(f"init_rounds must be a whole number >= 1, got {self.init_rounds!r}")

    # ------------------------------------------------------------------ fit
    def _fit(self, X: Any) -> None:
        import dask

        self._check_params()
        rng = _check_random_state(self.random_state)
        k, n = int(self.n_clusters), int(X.shape[0])
        self.timings_: dict[str, Any] = {}
        t0 = time.perf_counter()
        C = self._init_centers(X, k, rng)
        self.timings_["init"] = time.perf_counter() - t0

        blocks = list(X.to_delayed().ravel())
        dev = str(self.device)
        tol_abs, self.converged_, per_iter = None, False, []
        t0 = time.perf_counter()
        for it in range(int(self.max_iter)):
            t_it = time.perf_counter()
            Cd = dask.delayed(C, pure=True)
            s = _tree_sum([dask.delayed(_lloyd_stats)(b, Cd, dev, tol_abs is None) for b in blocks]).compute()
            if tol_abs is None:  # the data's mean per-feature variance, from the first pass (as KMeans)
                mean = s["x_sum"] / n
                tol_abs = max(0.0, float(s["x_sq"][0] / n - mean @ mean) / X.shape[1]) * float(self.tol)
            self.inertia_ = float(s["inertia"][0])
            new_C = self._update(C, s)
            shift = float(((new_C.astype(np.float64) - C) ** 2).sum())
            per_iter.append(round(time.perf_counter() - t_it, 4))
            self.n_iter_ = it + 1
            if self.verbose:
                print(f"DaskKMeans iteration {it + 1}: inertia {self.inertia_:.6g}, centre shift {shift:.6g} "
                      f"({per_iter[-1]:.2f} s)")
            if shift == 0:  # labels did not change: C is final and inertia_ is under it
                self.converged_ = True
                break
            C = new_C
            if shift <= tol_abs:
                self.converged_ = True
                break
        self.timings_["iterations"] = time.perf_counter() - t0
        self.timings_["iteration_seconds"] = per_iter
        t0 = time.perf_counter()
        if shift != 0:  # inertia under the final centres
            Cd = dask.delayed(C, pure=True)
            self.inertia_ = float(_tree_sum([dask.delayed(_lloyd_stats)(b, Cd, dev) for b in blocks])
                                  .compute()["inertia"][0])
        self.timings_["labels"] = time.perf_counter() - t0
        self.cluster_centers_ = C
        self.temperature_ = self.inertia_ / n
        self.labels_ = self._map_rows(X, _predict_block, np.int64)
        if not self.converged_:
            warnings.warn(f"DaskKMeans stopped at max_iter = {self.max_iter} Lloyd iterations before the centres "
                          f"settled (shift above tol = {self.tol}); raise max_iter", ConvergenceWarning, stacklevel=3)

    @staticmethod
    def _update(C: np.ndarray, s: dict[str, np.ndarray]) -> np.ndarray:
        """New centres from the reduced sums; empty clusters take the farthest points (KMeans' rule)."""
        sums, counts = s["sums"].copy(), s["counts"].copy()
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            m = min(len(empty), len(s["far_dist"]))
            pts = s["far_x"][:m].astype(np.float64)
            np.add.at(sums, s["far_label"][:m], -pts)
            np.add.at(counts, s["far_label"][:m], -1.0)
            sums[empty[:m]] = pts
            counts[empty[:m]] = 1.0
        new_C = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
        new_C[counts == 0] = C[counts == 0]
        return new_C

    def _init_centers(self, X: Any, k: int, rng: np.random.Generator) -> np.ndarray:
        from deepclust.scale import sample_rows

        n, d = (int(s) for s in X.shape)
        if not isinstance(self.init, str):
            C = as_float_array(self.init, name="init")
            if C.shape != (k, d):
                raise DeepclustError(f"init has shape {C.shape} but must be (n_clusters, n_features) = ({k}, {d})")
            return np.ascontiguousarray(C)
        if self.init == "random":
            return sample_rows(X, k, rng)
        if self.init == "k-means++":
            sample = torch.from_numpy(sample_rows(X, min(n, _default_init_sample(k)), rng))
            return sample[kmeans_plusplus(sample, k, _torch_generator(int(rng.integers(2**62)), sample.device))].numpy()
        if self.init == "k-means||":
            return self._kmeans_parallel(X, k, rng)
        raise DeepclustError(f"init must be 'k-means||', 'k-means++', 'random' or an array of centres, "
                             f"got {self.init!r}")

    def _kmeans_parallel(self, X: Any, k: int, rng: np.random.Generator) -> np.ndarray:
        """k-means|| (Bahmani et al. 2012): oversample ``init_rounds`` times, then weighted k-means++ + Lloyd."""
        import dask
        import dask.array as da
        from sklearn.cluster import KMeans as SkKMeans

        from deepclust.scale import sample_rows

        dev = str(self.device)

        cand = sample_rows(X, 1, rng)
        d2 = X.map_blocks(_min_sq_dist, dask.delayed(cand, pure=True), dev, drop_axis=1, dtype=np.float32).persist()
        for r in range(int(self.init_rounds)):
            phi = float(d2.sum(dtype=np.float64).compute())
            if phi <= 0:
                break
            scale = float(self.oversampling_factor) * k / phi
            seed = int(rng.integers(2**62))
            drawn = [dask.delayed(_oversample)(xb, db, scale, seed, i)
                     for i, (xb, db) in enumerate(zip(X.to_delayed().ravel(), d2.to_delayed().ravel()))]
            new = np.concatenate(dask.compute(*drawn))
            if len(new) == 0:
                continue
            cand = np.concatenate([cand, new])
            if r + 1 < self.init_rounds:
                d2 = da.minimum(d2, X.map_blocks(_min_sq_dist, dask.delayed(new, pure=True), dev, drop_axis=1,
                                                 dtype=np.float32)).persist()
        del d2
        if len(cand) < k:  # tiny or highly duplicated data: fill up with random rows
            cand = np.concatenate([cand, sample_rows(X, k - len(cand), rng)])
        Cd = dask.delayed(cand, pure=True)
        weights = sum(dask.compute(*[dask.delayed(_nearest_counts)(b, Cd, dev) for b in X.to_delayed().ravel()]))
        if self.verbose:
            print(f"DaskKMeans k-means||: {len(cand)} candidates after {self.init_rounds} rounds")
        self.n_init_candidates_ = int(len(cand))
        km = SkKMeans(k, init="k-means++", n_init=1, random_state=int(rng.integers(2**31 - 1)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return km.fit(cand, sample_weight=np.maximum(weights, 1e-12)).cluster_centers_.astype(np.float32)

    # ------------------------------------------------------------------ partition-wise outputs
    def _map_rows(self, X: Any, func: Any, dtype: Any, *extra: Any) -> Any:
        import dask

        C = dask.delayed(np.asarray(self.cluster_centers_, dtype=np.float32), pure=True)
        if np.dtype(dtype) == np.int64:
            return X.map_blocks(func, C, str(self.device), *extra, drop_axis=1, dtype=dtype)
        return X.map_blocks(func, C, str(self.device), *extra, chunks=(X.chunks[0], (len(self.cluster_centers_),)),
                            dtype=dtype)

    def _out(self, result: Any) -> Any:
        return result.compute() if self._numpy_input else result

    def predict(self, X: Any) -> Any:
        """Nearest centre of every row, partition by partition."""
        return self._out(self._map_rows(self._validate_new_input(X), _predict_block, np.int64))

    def transform(self, X: Any) -> Any:
        """Euclidean distances to the centres, partition by partition."""
        return self._out(self._map_rows(self._validate_new_input(X), _distances_block, np.float32, None))

    def predict_proba(self, X: Any) -> Any:
        """Soft assignment as :meth:`KMeans.predict_proba` (softmax of ``-d² / temperature_``)."""
        return self._out(self._map_rows(self._validate_new_input(X), _distances_block, np.float32,
                                        float(self.temperature_)))

    def label_confidence(self, X: Any) -> Any:
        """(n, 2) float64 per partition: ``predict`` and the largest ``predict_proba`` (no n × k matrix)."""
        Xd = self._validate_new_input(X)
        C = np.asarray(self.cluster_centers_, dtype=np.float32)
        return self._out(Xd.map_blocks(_label_confidence_block, C, str(self.device), float(self.temperature_),
                                       chunks=(Xd.chunks[0], (2,)), dtype=np.float64))

    def fit_predict(self, X: Any, y: Any = None, **kwargs: Any) -> Any:
        return self._out(self.fit(X).labels_)

    def _transform(self, X: Any) -> Any:  # pragma: no cover - transform is overridden
        raise NotImplementedError

    def save(self, path: Any) -> Any:
        """Save the fitted centres as an in-memory ``kmeans`` model (:meth:`to_kmeans`): loading it needs no Dask."""
        return self.to_kmeans().save(path)

    def to_kmeans(self) -> KMeans:
        """The fitted centres as an in-memory :class:`~deepclust.engines.kmeans.KMeans` (predicts without
        Dask; this is what a run folder's ``model/`` holds)."""
        self._check_is_fitted()
        km = KMeans(int(self.n_clusters), init=self.cluster_centers_, n_init=1, max_iter=int(self.max_iter),
                    tol=self.tol, device=self.device, random_state=self.random_state)
        km.cluster_centers_ = np.asarray(self.cluster_centers_, dtype=np.float32)
        km.labels_ = None
        for name in ("inertia_", "n_iter_", "converged_", "temperature_", "n_features_in_", "input_shape_"):
            setattr(km, name, getattr(self, name))
        km.timings_ = {key: v for key, v in self.timings_.items() if isinstance(v, float)}
        return km
