"""k-means in torch: Lloyd iterations (:class:`KMeans`) and streaming mini-batch k-means
(:class:`MiniBatchKMeans`), on the CPU or a CUDA GPU.

How the work is done (the same code runs on CPU and CUDA):

* The data are moved to the device **once**, as float32 (on the CPU a C-contiguous float32
  array is used in place, without a copy).
* Distances are computed in row chunks as ``||x||² - 2 x·c + ||c||²`` with one ``torch.addmm``
  per chunk (the ``||x||²`` term is the same for every centre, so the arg-min does not need it),
  followed at once by the row-wise arg-min of that chunk; no N×k matrix is ever held.
  Float32 throughout; the matrix product follows torch's float32 precision settings (TF32 is
  off by default in torch and this module does not turn it on).
* The centre update is accumulated in the same pass with ``index_add_`` and ``bincount``
  (float32 within a chunk, float64 across chunks), with no Python loop over samples or clusters.
* k-means++ is the greedy variant of scikit-learn (``2 + ln k`` candidates per step, keep the one
  that lowers the potential most). It is sequential in k and reads its whole input at every
  step, so for large data it runs on a random subsample of ``max(100·k, 20_000)`` points
  (``init_sample_size``). Measured on 1,000,000 × 128 blobs with k = 1000 (10 Lloyd iterations
  after; seeds 0 and 1): samples of 50·k, 100·k, 200·k points and all points ended at inertias
  1.3289 / 1.3204 / 1.3188 / 1.3200 ×10⁸ (seed 0; scikit-learn's k-means++ on all points:
  1.3229) and 1.3297 / 1.3246 / 1.3254 ×10⁸ (seed 1), the seeding costing about 11 / 24–29 /
  44–54 / 318 s on one core shared with other jobs (``benchmarks/results/kmeans-init-sample.jsonl``):
  beyond about 100 points per cluster a larger sample buys nothing measurable.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from deepclust.base import BaseClusterer
from deepclust.device import resolve_device
from deepclust.errors import DeepclustError
from deepclust.validation import ArrayLike, as_float_array, check_finite, check_n_clusters

__all__ = ["KMeans", "MiniBatchKMeans", "kmeans_plusplus"]

_METRICS = ("euclidean", "cosine")
#: elements (rows × k) of one distance chunk: about 4 MiB on the CPU (stays in cache), 256 MiB on a GPU
_CHUNK_ELEMS = {"cpu": 1 << 20, "cuda": 1 << 26}
#: largest k for the CPU arg-min shortcut (index sums must stay exact in float32)
_FAST_ARGMIN_MAX_K = 4096
#: bytes of one block read from a memory-mapped array by MiniBatchKMeans
_BLOCK_BYTES = 64 << 20


# ---------------------------------------------------------------------------------- kernels
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _chunk_rows(n: int, k: int, device: torch.device, batch_size: int | None, d: int = 1) -> int:
    """Rows per chunk: about ``_CHUNK_ELEMS`` elements in both the (rows × k) distance block and the
    (rows × d) data block, so that both stay in cache on the CPU."""
    if batch_size is not None:
        return max(1, min(n, int(batch_size)))
    elems = _CHUNK_ELEMS.get(device.type, 1 << 22)
    return max(1, min(n, elems // max(1, k, d)))


def _to_device(X: np.ndarray, device: torch.device) -> torch.Tensor:
    """(N, ...) float32 NumPy array -> (N, d) float32 tensor on ``device`` (no copy on the CPU when possible)."""
    X2 = X.reshape(X.shape[0], -1)
    if X2.dtype != np.float32:
        X2 = X2.astype(np.float32)
    with warnings.catch_warnings():  # read-only (e.g. memory-mapped) input: we never write to it
        warnings.simplefilter("ignore", UserWarning)
        t = torch.from_numpy(np.ascontiguousarray(X2))
    return t.to(device) if device.type != "cpu" else t


def _normalize_rows(t: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(t, dim=1, eps=1e-12)


class _RowMin:
    """Row-wise (min, arg-min) of a distance chunk, reusing buffers.

    On the CPU, ``torch.min(dim=1)`` with indices is not vectorised (about 1 G elements/s); this
    does it as ``amin`` (vectorised), ``sign(b - min)`` in place (exactly 0 at the minima, 1
    elsewhere) and one matrix-vector product with ``0..k-1``, which gives
    ``k(k-1)/2 - index`` when the minimum is unique. Every index is checked (it must point at a
    0); rows where it does not (ties) fall back to ``argmin`` of the sign row. The result is always
    a true minimum (with ties, possibly another one than ``torch.min`` picks). ``b`` is overwritten.
    """

    def __init__(self, k: int, device: torch.device, rows: int):
        self.k = k
        self.fast = device.type == "cpu" and 1 < k <= _FAST_ARGMIN_MAX_K
        if self.fast:
            self.arange = torch.arange(k, dtype=torch.float32, device=device)
            self.total = float(k * (k - 1) // 2)
            self.scratch = torch.empty(rows, dtype=torch.float32, device=device)

    def __call__(self, b: torch.Tensor, vals: torch.Tensor, idx: torch.Tensor) -> None:
        """Write the row minima of ``b`` into ``vals`` and their indices into ``idx`` (int64)."""
        if not self.fast:
            torch.min(b, dim=1, out=(vals, idx))
            return
        torch.amin(b, dim=1, out=vals)
        b.sub_(vals[:, None]).sign_()
        f = self.scratch[: b.shape[0]]
        torch.mv(b, self.arange, out=f)
        idx.copy_(f.neg_().add_(self.total))  # exact: integers < 2**24
        bad = idx >= self.k
        idx.clamp_(max=self.k - 1)
        bad |= b.gather(1, idx[:, None]).squeeze(1) != 0
        if bool(bad.any()):
            rows = bad.nonzero().squeeze(1)
            idx[rows] = torch.argmin(b[rows], dim=1)


@torch.no_grad()
def _assign(X: torch.Tensor, centers: torch.Tensor, chunk: int, *,
            labels: torch.Tensor | None = None, min_dist: torch.Tensor | None = None,
            sums: torch.Tensor | None = None, counts: torch.Tensor | None = None,
            exact_sq: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centre of every row of ``X``, in chunks.

    Returns ``(labels, min_dist)``; ``min_dist`` holds ``||c||² - 2 x·c`` for the nearest centre
    (add ``||x||²`` for the squared distance), or, with ``exact_sq``, the squared distance
    ``||x - c||²`` computed directly (no cancellation). When ``sums`` (k×d float64) and ``counts``
    (k float64) are given, the per-cluster sums and sizes are accumulated into them.
    """
    n, d = X.shape
    k = centers.shape[0]
    dev = X.device
    if labels is None:
        labels = torch.empty(n, dtype=torch.int64, device=dev)
    if min_dist is None:
        min_dist = torch.empty(n, dtype=torch.float32, device=dev)
    c_sq = (centers * centers).sum(1)
    ct = centers.t()
    rows = min(chunk, n)
    rowmin = _RowMin(k, dev, rows)
    buf = torch.empty((rows, k), dtype=torch.float32, device=dev)
    scratch = torch.empty(rows, dtype=torch.float32, device=dev) if exact_sq else None
    local = torch.empty((k, d), dtype=torch.float32, device=dev) if sums is not None else None
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        xb = X[s:e]
        b = buf[: e - s]
        torch.addmm(c_sq, xb, ct, beta=1, alpha=-2, out=b)
        idx = labels[s:e]
        rowmin(b, scratch[: e - s] if exact_sq else min_dist[s:e], idx)
        if exact_sq:
            diff = xb - centers[idx]
            min_dist[s:e] = torch.einsum("nd,nd->n", diff, diff)
        if sums is not None:
            local.zero_()
            local.index_add_(0, idx, xb)
            sums += local
            counts += torch.bincount(idx, minlength=k)
    return labels, min_dist


@torch.no_grad()
def _sq_distances(X: torch.Tensor, centers: torch.Tensor, chunk: int) -> torch.Tensor:
    """Full (n × k) matrix of squared Euclidean distances, clamped at 0 (used for predict_proba/transform)."""
    n = X.shape[0]
    c_sq = (centers * centers).sum(1)
    out = torch.empty((n, centers.shape[0]), dtype=torch.float32, device=X.device)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        xb = X[s:e]
        b = out[s:e]
        torch.addmm(c_sq, xb, centers.t(), beta=1, alpha=-2, out=b)
        b.add_((xb * xb).sum(1, keepdim=True)).clamp_(min=0)
    return out


@torch.no_grad()
def kmeans_plusplus(X: torch.Tensor, n_clusters: int, generator: torch.Generator,
                    n_local_trials: int | None = None) -> torch.Tensor:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007; greedy variant as in scikit-learn).

    ``X`` is an (n, d) float32 tensor (already on its device); returns the indices of the chosen
    seeds. At every step ``2 + ln k`` candidates are drawn with probability proportional to the
    squared distance to the nearest seed so far, and the one giving the lowest potential is kept.
    Runs without host synchronisation on CUDA.
    """
    n = X.shape[0]
    dev = X.device
    if n_local_trials is None:
        n_local_trials = 2 + int(math.log(n_clusters))
    x_sq = _row_sq_norms(X)[:, None]  # (n, 1)
    chosen = torch.empty(n_clusters, dtype=torch.int64, device=dev)
    first = torch.randint(n, (1,), generator=generator, device=dev)
    chosen[0] = first[0]
    c = X[first]  # (1, d)
    closest = torch.addmm(x_sq, X, c.t(), beta=1, alpha=-2).add_((c * c).sum()).clamp_(min=0)  # (n, 1)
    # candidates along the columns: X @ cand.T is a tall-skinny product that BLAS runs near memory speed
    trials = torch.empty((n, n_local_trials), dtype=torch.float32, device=dev)
    for i in range(1, n_clusters):
        cum = torch.cumsum(closest.squeeze(1), 0, dtype=torch.float64)
        r = torch.rand(n_local_trials, generator=generator, device=dev, dtype=torch.float64) * cum[-1]
        cand = torch.searchsorted(cum, r).clamp_(max=n - 1)
        cc = X[cand]
        torch.addmm(x_sq, X, cc.t(), beta=1, alpha=-2, out=trials)
        trials.add_((cc * cc).sum(1)).clamp_(min=0)
        torch.minimum(trials, closest, out=trials)
        best = torch.argmin(trials.sum(0, dtype=torch.float64))
        chosen[i] = cand[best]
        closest = trials[:, best].unsqueeze(1).contiguous()
    return chosen


def _row_sq_norms(X: torch.Tensor) -> torch.Tensor:
    """Squared norm of every row, float32 (einsum: no N×d temporary)."""
    return torch.einsum("nd,nd->n", X, X)


def _mean_variance(X: torch.Tensor, x_sq: torch.Tensor | None = None) -> float:
    """Mean over features of the per-feature variance, in float64: (E||x||² - ||E x||²) / d."""
    n, d = X.shape
    if x_sq is None:
        x_sq = _row_sq_norms(X)
    mean = X.sum(0).double() / n
    return max(0.0, float(x_sq.sum(dtype=torch.float64) / n - (mean * mean).sum()) / d)


def _default_init_sample(k: int) -> int:
    """Points k-means++ runs on by default (see the module notes)."""
    return max(100 * k, 20_000)


def _check_random_state(random_state: Any) -> np.random.Generator:
    try:
        return np.random.default_rng(random_state)
    except (TypeError, ValueError) as exc:
        raise DeepclustError(f"random_state must be an integer or None, got {random_state!r}") from exc


def _torch_generator(seed: int, device: torch.device) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    return gen


def _check_common(n_clusters: Any, metric: str, max_iter: Any, tol: Any, batch_size: Any,
                  *, batch_name: str = "batch_size") -> None:
    check_n_clusters(n_clusters)
    if metric not in _METRICS:
        raise DeepclustError(f"metric must be one of {_METRICS}, got {metric!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise DeepclustError(f"max_iter must be a whole number >= 1, got {max_iter!r}")
    if not isinstance(tol, (int, float, np.number)) or not tol >= 0:
        raise DeepclustError(f"tol must be a number >= 0, got {tol!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                   or batch_size < 1):
        raise DeepclustError(f"{batch_name} must be None or a whole number >= 1, got {batch_size!r}")


class _KMeansPredictMixin:
    """predict / predict_proba / transform shared by both k-means estimators."""

    cluster_centers_: np.ndarray
    temperature_: float
    metric: str
    device: Any

    def _chunk_param(self) -> int | None:
        return None

    def _prepare(self, X: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, int]:
        dev = resolve_device(self.device)
        Xt = _to_device(X, dev)
        C = torch.as_tensor(np.asarray(self.cluster_centers_, dtype=np.float32), device=dev)
        if self.metric == "cosine":
            Xt = _normalize_rows(Xt)
            C = _normalize_rows(C)
        chunk = _chunk_rows(Xt.shape[0], C.shape[0], dev, self._chunk_param(), Xt.shape[1])
        return Xt, C, chunk

    def _predict(self, X: np.ndarray) -> np.ndarray:
        Xt, C, chunk = self._prepare(X)
        labels, _ = _assign(Xt, C, chunk)
        return labels.cpu().numpy()

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Soft assignment: softmax over the centres of ``-d² / T``, where ``d²`` is the squared distance
        to a centre and ``T = temperature_`` the mean squared distance of the training points to their
        own centre (``inertia_ / n``). Scale-free (multiplying the data by a constant changes nothing),
        its arg-max is ``predict``; points half-way between two centres get about 1/2 each, a point at
        its centre, far from the others, almost 1. A smooth score, not a calibrated probability."""
        Xt, C, chunk = self._prepare(X)
        d2 = _sq_distances(Xt, C, chunk)
        t = max(float(self.temperature_), 1e-12)
        return torch.softmax(d2.div_(-t), dim=1).cpu().numpy()

    def _transform(self, X: np.ndarray) -> np.ndarray:
        """Distances to the centres: Euclidean, or cosine distance ``1 - cos`` with ``metric="cosine"``."""
        Xt, C, chunk = self._prepare(X)
        d2 = _sq_distances(Xt, C, chunk)
        if self.metric == "cosine":
            return d2.mul_(0.5).cpu().numpy()  # ||x̂ - ĉ||² = 2 (1 - cos)
        return d2.sqrt_().cpu().numpy()


# ---------------------------------------------------------------------------------- KMeans
class KMeans(_KMeansPredictMixin, BaseClusterer):
    """k-means (Lloyd's algorithm) in torch, on the CPU or a CUDA GPU.

    Parameters
    ----------
    n_clusters : number of clusters k.
    init : ``"k-means++"`` (greedy, as scikit-learn), ``"random"`` (k distinct data points), or an
        array of initial centres of shape (k, n_features) (or (k, C, H, W) for images); with an
        array, ``n_init`` is 1.
    n_init : number of runs from different seeds; the run with the lowest inertia is kept.
    max_iter : maximum number of Lloyd iterations per run.
    tol : convergence tolerance as in scikit-learn: stop when the squared shift of all centres
        in one iteration is at most ``tol`` × the mean per-feature variance of the data.
        A run also stops when no label changes. ``tol=0`` runs until labels stop changing or
        ``max_iter``.
    metric : ``"euclidean"``, or ``"cosine"`` for spherical k-means: data and centres are
        unit-normalised, a centre is the normalised mean direction of its members.
    batch_size : rows per distance chunk (``None``: chunks of about 1 Mi elements, ``rows × max(k, d)``,
        on the CPU so that they stay in cache; 64 Mi on a GPU). It sets memory use and speed; the
        result changes only by floating-point rounding.
    init_sample_size : number of points k-means++ runs on (``None``: ``max(100·k, 20_000)``; all
        points when there are fewer).
    device : ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    random_state : seed; the same seed gives the same result on the same device and thread count
        (on CUDA up to the order of the atomic additions of ``index_add_``, unless
        ``torch.use_deterministic_algorithms(True)``).
    verbose : print the inertia of every iteration.

    Attributes
    ----------
    cluster_centers_ : (k, n_features) float32 NumPy array (unit vectors with ``metric="cosine"``).
    labels_ : cluster of every training sample, under the final centres.
    inertia_ : sum of squared Euclidean distances of the samples to their centre (as scikit-learn;
        with ``metric="cosine"`` measured between unit vectors, i.e. ``2 Σ (1 - cos)``).
    n_iter_ : Lloyd iterations run by the kept run.
    converged_ : whether that run settled before ``max_iter`` (if not, fit warns).
    temperature_ : scale of :meth:`predict_proba` (``inertia_ / n_samples``). :meth:`transform`
        gives the distances to the centres (Euclidean, or ``1 - cos`` with ``metric="cosine"``).
    timings_ : seconds per phase: ``to_device``, ``init``, ``iterations``, ``labels`` (summed
        over the ``n_init`` runs).

    Empty clusters (a centre that wins no point) are re-seeded, as in scikit-learn, with the
    points that are farthest from their current centres (those points leave their old cluster).
    """

    _saved_arrays = ("cluster_centers_", "labels_")
    _saved_values = ("inertia_", "n_iter_", "converged_", "temperature_", "timings_")

    def __init__(self, n_clusters: int = 8, *, init: Any = "k-means++", n_init: int = 1, max_iter: int = 300,
                 tol: float = 1e-4, metric: str = "euclidean", batch_size: int | None = None,
                 init_sample_size: int | None = None, device: Any = "auto", random_state: Any = 0,
                 verbose: bool = False):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.metric = metric
        self.batch_size = batch_size
        self.init_sample_size = init_sample_size
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _chunk_param(self) -> int | None:
        return self.batch_size

    # ------------------------------------------------------------------ checks
    def _check_params(self, n_features: int) -> tuple[torch.Tensor | None, int]:
        _check_common(self.n_clusters, self.metric, self.max_iter, self.tol, self.batch_size)
        if isinstance(self.n_init, bool) or not isinstance(self.n_init, (int, np.integer)) or self.n_init < 1:
            raise DeepclustError(f"n_init must be a whole number >= 1, got {self.n_init!r}")
        if self.init_sample_size is not None and (not isinstance(self.init_sample_size, (int, np.integer))
                                                  or self.init_sample_size < 1):
            raise DeepclustError(f"init_sample_size must be None or a whole number >= 1, got {self.init_sample_size!r}")
        if isinstance(self.init, str):
            if self.init not in ("k-means++", "random"):
                raise DeepclustError(f"init must be 'k-means++', 'random' or an array of centres, got {self.init!r}")
            return None, int(self.n_init)
        centers = as_float_array(self.init, name="init")
        centers = centers.reshape(centers.shape[0], -1)
        if centers.shape != (self.n_clusters, n_features):
            raise DeepclustError(
                f"init has shape {centers.shape} but must be (n_clusters, n_features) = "
                f"({self.n_clusters}, {n_features})"
            )
        return torch.from_numpy(np.ascontiguousarray(centers)), 1

    # ------------------------------------------------------------------ fit
    def _fit(self, X: np.ndarray) -> None:
        n = X.shape[0]
        init_centers, n_init = self._check_params(int(np.prod(X.shape[1:])))
        k = int(self.n_clusters)
        dev = resolve_device(self.device)
        rng = _check_random_state(self.random_state)
        timings = {"to_device": 0.0, "init": 0.0, "iterations": 0.0, "labels": 0.0}

        t0 = time.perf_counter()
        Xt = _to_device(X, dev)
        if self.metric == "cosine":
            Xt = _normalize_rows(Xt)
        chunk = _chunk_rows(n, k, dev, self.batch_size, Xt.shape[1])
        # tolerance relative to the data's mean per-feature variance, as scikit-learn
        x_sq = _row_sq_norms(Xt)
        tol_abs = _mean_variance(Xt, x_sq) * float(self.tol)
        _sync(dev)
        timings["to_device"] = time.perf_counter() - t0

        best = None
        for run in range(n_init):
            seed = int(rng.integers(2**62))
            t0 = time.perf_counter()
            if init_centers is not None:
                C = init_centers.to(dev).clone()
                if self.metric == "cosine":
                    C = _normalize_rows(C)
            else:
                C = self._init_centers(Xt, k, seed, dev)
            _sync(dev)
            timings["init"] += time.perf_counter() - t0

            t0 = time.perf_counter()
            C, n_iter, converged = self._lloyd(Xt, x_sq, C, chunk, tol_abs)
            _sync(dev)
            timings["iterations"] += time.perf_counter() - t0

            t0 = time.perf_counter()
            labels, sq = _assign(Xt, C, chunk, exact_sq=True)
            inertia = float(sq.sum(dtype=torch.float64))
            _sync(dev)
            timings["labels"] += time.perf_counter() - t0
            if self.verbose and n_init > 1:
                print(f"KMeans run {run + 1}/{n_init}: inertia {inertia:.6g} after {n_iter} iterations")
            if best is None or inertia < best[0]:
                best = (inertia, C, labels, n_iter, converged)

        inertia, C, labels, n_iter, converged = best
        self.cluster_centers_ = C.cpu().numpy()
        self.labels_ = labels.cpu().numpy()
        self.inertia_ = inertia
        self.n_iter_ = int(n_iter)
        self.converged_ = bool(converged)
        self.temperature_ = inertia / n
        self.timings_ = timings
        if not converged:
            warnings.warn(f"KMeans stopped at max_iter = {self.max_iter} Lloyd iterations before the centres "
                          f"settled (shift above tol = {self.tol}): the partition is usable but not converged; "
                          "raise max_iter", ConvergenceWarning, stacklevel=3)

    def _init_centers(self, Xt: torch.Tensor, k: int, seed: int, dev: torch.device) -> torch.Tensor:
        n = Xt.shape[0]
        gen = _torch_generator(seed, dev)
        if self.init == "random":
            idx = torch.randperm(n, generator=gen, device=dev)[:k]
            return Xt[idx].clone()
        size = self.init_sample_size or _default_init_sample(k)
        if size < n:
            sub = torch.randperm(n, generator=gen, device=dev)[: max(size, k)]
            sample = Xt[sub]
        else:
            sample = Xt
        idx = kmeans_plusplus(sample, k, gen)
        return sample[idx].clone()

    @torch.no_grad()
    def _lloyd(self, Xt: torch.Tensor, x_sq: torch.Tensor, C: torch.Tensor, chunk: int,
               tol_abs: float) -> tuple[torch.Tensor, int, bool]:
        """Lloyd iterations from centres ``C``: the centres, the iterations run and whether they
        converged (labels unchanged or centre shift <= ``tol_abs``) before ``max_iter``."""
        n, d = Xt.shape
        k = C.shape[0]
        dev = Xt.device
        labels = torch.empty(n, dtype=torch.int64, device=dev)
        prev = torch.full((n,), -1, dtype=torch.int64, device=dev)
        min_dist = torch.empty(n, dtype=torch.float32, device=dev)
        sums = torch.empty((k, d), dtype=torch.float64, device=dev)
        counts = torch.empty(k, dtype=torch.float64, device=dev)
        n_iter = 0
        for it in range(int(self.max_iter)):
            sums.zero_()
            counts.zero_()
            _assign(Xt, C, chunk, labels=labels, min_dist=min_dist, sums=sums, counts=counts)
            n_iter = it + 1
            if self.verbose:
                inertia = float((min_dist + x_sq).clamp_(min=0).sum(dtype=torch.float64))
                print(f"KMeans iteration {n_iter}: inertia {inertia:.6g}")
            if bool(torch.equal(labels, prev)):
                return C, n_iter, True  # strict convergence: centres would not move
            empty = counts == 0
            if bool(empty.any()):
                self._relocate_empty(Xt, x_sq, labels, min_dist, sums, counts, empty)
            new_C = (sums / counts.clamp(min=1)[:, None]).to(torch.float32)
            new_C[counts == 0] = C[counts == 0]
            if self.metric == "cosine":
                new_C = _normalize_rows(new_C)
            shift = float(((new_C - C) ** 2).sum(dtype=torch.float64))
            C = new_C
            labels, prev = prev, labels
            if shift <= tol_abs:
                return C, n_iter, True
        return C, n_iter, False

    @staticmethod
    def _relocate_empty(Xt, x_sq, labels, min_dist, sums, counts, empty) -> None:
        """Give every empty cluster one of the points farthest from their centre (scikit-learn's rule)."""
        empty_ids = empty.nonzero().squeeze(1)
        m = int(empty_ids.numel())
        far = torch.topk(min_dist + x_sq, m).indices
        old = labels[far]
        pts = Xt[far].double()
        sums.index_add_(0, old, -pts)
        counts.index_add_(0, old, -torch.ones(m, dtype=counts.dtype, device=counts.device))
        sums[empty_ids] = pts
        counts[empty_ids] = 1.0
        labels[far] = empty_ids


def inner_kmeans(X: np.ndarray, n_clusters: int, **params: Any) -> KMeans:
    """A k-means fitted inside another method (an initialisation, pseudo-labels, a score for a
    candidate k), without the convergence warning: the user cannot act on it through that
    method's parameters, and the method's own stopping rule is what its result reports."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return KMeans(n_clusters, **params).fit(X)


# ---------------------------------------------------------------------------------- MiniBatchKMeans
def _is_memory_mapped(a: np.ndarray) -> bool:
    import mmap

    while a is not None:
        if isinstance(a, (np.memmap, mmap.mmap)):
            return True
        a = getattr(a, "base", None)
    return False


class MiniBatchKMeans(_KMeansPredictMixin, BaseClusterer):
    """Mini-batch k-means (Sculley, WWW 2010) for data larger than memory.

    Every centre keeps the number of points it has absorbed (``counts_``); a mini-batch moves
    centre ``c`` to ``(counts_c · c + Σ batch points of c) / (counts_c + n_c)``, i.e. Sculley's
    per-centre learning rate ``1/counts`` applied to the batch at once (as scikit-learn).

    ``fit`` reads ``X`` batch by batch and never needs it whole: an ``np.memmap`` stays on disk
    (any numeric dtype; batches are converted to float32 as they are read). For a memory-mapped
    array, each pass visits blocks of up to ``16 × batch_size`` consecutive rows (at most 64 MiB) in
    random order and
    shuffles rows within a block (sequential disk reads); an in-memory array is shuffled fully.
    ``partial_fit`` takes one chunk of a stream at a time.

    Parameters
    ----------
    batch_size : points per mini-batch.
    max_iter : maximum number of passes over the data.
    tol : stop when the squared shift of all centres during one pass is at most ``tol`` × the
        mean per-feature variance (estimated on the initialisation sample).
    init : ``"k-means++"`` (on a random sample of ``init_size`` points), ``"random"`` or an array of centres.
    init_size : points used for the initialisation (``None``: ``max(3·batch_size, 100·k, 20_000)``).
    reassignment_ratio : every 10 batches, centres that absorbed fewer than this fraction of the
        largest count are moved to batch points drawn with probability ∝ squared distance to their
        centre (0 disables).
    compute_labels : after fitting, make a final pass for ``labels_`` and ``inertia_``.
    metric, device, random_state, verbose : as :class:`KMeans`.

    Attributes: ``cluster_centers_``, ``counts_``, ``labels_``, ``inertia_``, ``n_iter_`` (passes),
    ``converged_`` (the shift fell to ``tol`` before ``max_iter``; if not, fit warns),
    ``n_steps_`` (mini-batches), ``temperature_`` (scale of ``predict_proba``, as :class:`KMeans`;
    a running mean over the batches when ``compute_labels=False``), ``timings_``. After
    ``partial_fit``, ``labels_`` and ``inertia_`` describe the last chunk given.
    """

    _saved_arrays = ("cluster_centers_", "counts_", "labels_")
    _saved_values = ("inertia_", "n_iter_", "converged_", "n_steps_", "temperature_", "timings_", "tol_abs_")

    def __init__(self, n_clusters: int = 8, *, batch_size: int = 4096, max_iter: int = 100, tol: float = 1e-4,
                 init: Any = "k-means++", init_size: int | None = None, reassignment_ratio: float = 0.01,
                 metric: str = "euclidean", compute_labels: bool = True, device: Any = "auto",
                 random_state: Any = 0, verbose: bool = False):
        self.n_clusters = n_clusters
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.tol = tol
        self.init = init
        self.init_size = init_size
        self.reassignment_ratio = reassignment_ratio
        self.metric = metric
        self.compute_labels = compute_labels
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _check_params(self) -> None:
        _check_common(self.n_clusters, self.metric, self.max_iter, self.tol, self.batch_size)
        if self.batch_size is None:
            raise DeepclustError("batch_size must be a whole number >= 1")
        if self.init_size is not None and (isinstance(self.init_size, bool)
                                           or not isinstance(self.init_size, (int, np.integer)) or self.init_size < 1):
            raise DeepclustError(f"init_size must be None or a whole number >= 1, got {self.init_size!r}")
        if not isinstance(self.reassignment_ratio, (int, float, np.number)) or not 0 <= self.reassignment_ratio < 1:
            raise DeepclustError(f"reassignment_ratio must be a number in [0, 1), got {self.reassignment_ratio!r}")

    # ------------------------------------------------------------------ input: keep memmaps on disk
    def _validate_input(self, X: ArrayLike) -> np.ndarray:
        if isinstance(X, np.ndarray) and _is_memory_mapped(X) and X.dtype != np.float32:
            as_float_array(X[:1], max_dims=self._max_input_dims)  # dims, dtype, emptiness (cheap)
            if X.shape[0] == 0:
                raise DeepclustError("X is empty: it has no samples")
            check_finite(X)
            return X
        if isinstance(X, np.memmap):
            X = X.view(np.ndarray)  # keep the mapping (as_float_array does not copy float32)
        return as_float_array(X, max_dims=self._max_input_dims)

    @staticmethod
    def _rows(X: np.ndarray, idx: np.ndarray | slice, dev: torch.device) -> torch.Tensor:
        return _to_device(np.asarray(X[idx], dtype=np.float32), dev)

    # ------------------------------------------------------------------ fit
    def _fit(self, X: np.ndarray) -> None:
        self._check_params()
        n = X.shape[0]
        dev = resolve_device(self.device)
        rng = _check_random_state(self.random_state)
        self.timings_ = {"init": 0.0, "iterations": 0.0, "labels": 0.0}
        self._init_state(X, rng, dev)

        t0 = time.perf_counter()
        bs = int(self.batch_size)
        mapped = _is_memory_mapped(X)
        d = int(np.prod(X.shape[1:]))
        block = max(bs, min(16 * bs, _BLOCK_BYTES // (4 * d) // bs * bs))
        self.n_iter_, self.converged_ = 0, False
        for p in range(int(self.max_iter)):
            start_C = self._C.clone()
            if mapped:  # read blocks of consecutive rows in random order, shuffle within a block
                for s in rng.permutation(np.arange(0, n, block)):
                    Xblock = self._rows(X, slice(s, min(n, s + block)), dev)
                    perm = torch.from_numpy(rng.permutation(Xblock.shape[0])).to(dev)
                    for i in range(0, Xblock.shape[0], bs):
                        self._step(Xblock[perm[i:i + bs]], rng)
            else:
                perm = rng.permutation(n)
                for i in range(0, n, bs):
                    self._step(self._rows(X, np.sort(perm[i:i + bs]), dev), rng)
            self.n_iter_ = p + 1
            shift = float(((self._C - start_C) ** 2).sum(dtype=torch.float64))
            if self.verbose:
                print(f"MiniBatchKMeans pass {p + 1}: centre shift {shift:.6g}")
            if shift <= self.tol_abs_:
                self.converged_ = True
                break
        _sync(dev)
        if not self.converged_:
            warnings.warn(f"MiniBatchKMeans stopped at max_iter = {self.max_iter} passes before the centres settled "
                          f"(shift above tol = {self.tol}); raise max_iter (metrics.json records converged: false)",
                          ConvergenceWarning, stacklevel=3)
        self.timings_["iterations"] = time.perf_counter() - t0
        self._publish()
        if self.compute_labels:
            t0 = time.perf_counter()
            self.labels_, self.inertia_ = self._label_all(X, dev)
            self.temperature_ = self.inertia_ / n
            self.timings_["labels"] = time.perf_counter() - t0
        else:
            self.labels_, self.inertia_ = None, float("nan")
            self.temperature_ = self._batch_temperature

    def partial_fit(self, X: ArrayLike, y: Any = None) -> "MiniBatchKMeans":
        """Update the centres with one chunk of a stream (mini-batches of ``batch_size`` within it).

        The first call initialises the centres from this chunk (it needs at least ``n_clusters``
        samples). ``labels_`` and ``inertia_`` then describe this chunk under the updated centres.
        """
        X = self._validate_input(X)
        dev = resolve_device(self.device)
        if not hasattr(self, "_C"):
            if hasattr(self, "cluster_centers_"):  # loaded from disk, or fitted: continue from it
                self._restore_state(dev)
            else:
                self._check_params()
                check_n_clusters(self.n_clusters, X.shape[0])
                self.n_features_in_ = int(np.prod(X.shape[1:]))
                self.input_shape_ = tuple(int(s) for s in X.shape[1:])
                self.timings_ = {"init": 0.0, "iterations": 0.0, "labels": 0.0}
                self.n_iter_ = 0
                self._init_state(X, _check_random_state(self.random_state), dev)
        self._check_n_features(X)
        rng = self._rng
        t0 = time.perf_counter()
        bs = int(self.batch_size)
        for i in range(0, X.shape[0], bs):
            self._step(self._rows(X, slice(i, i + bs), dev), rng)
        _sync(dev)
        self.timings_["iterations"] = self.timings_.get("iterations", 0.0) + time.perf_counter() - t0
        self._publish()
        self.labels_, self.inertia_ = self._label_all(X, dev)
        self.temperature_ = max(self.inertia_ / X.shape[0], 1e-12)
        return self

    # ------------------------------------------------------------------ internals
    def _init_state(self, X: np.ndarray, rng: np.random.Generator, dev: torch.device) -> None:
        t0 = time.perf_counter()
        n = X.shape[0]
        k = int(self.n_clusters)
        d = int(np.prod(X.shape[1:]))
        size = min(n, self.init_size or max(3 * int(self.batch_size), _default_init_sample(k)))
        if size < k:
            raise DeepclustError(f"init_size={size} is smaller than n_clusters={k}")
        idx = np.sort(rng.choice(n, size, replace=False)) if size < n else slice(None)
        sample = self._rows(X, idx, dev)
        if self.metric == "cosine":
            sample = _normalize_rows(sample)
        gen = _torch_generator(int(rng.integers(2**62)), dev)
        if isinstance(self.init, str):
            if self.init == "k-means++":
                C = sample[kmeans_plusplus(sample, k, gen)].clone()
            elif self.init == "random":
                C = sample[torch.randperm(sample.shape[0], generator=gen, device=dev)[:k]].clone()
            else:
                raise DeepclustError(f"init must be 'k-means++', 'random' or an array of centres, got {self.init!r}")
        else:
            C = torch.from_numpy(as_float_array(self.init, name="init").reshape(len(self.init), -1)).to(dev)
            if C.shape != (k, d):
                raise DeepclustError(f"init has shape {tuple(C.shape)} but must be "
                                     f"(n_clusters, n_features) = ({k}, {d})")
            if self.metric == "cosine":
                C = _normalize_rows(C)
        self._C = C
        self._counts = torch.zeros(k, dtype=torch.float64, device=dev)
        self._rng = rng
        self.n_steps_ = 0
        self.tol_abs_ = _mean_variance(sample) * float(self.tol)
        self._batch_temperature = 1.0
        _sync(dev)
        self.timings_["init"] = self.timings_.get("init", 0.0) + time.perf_counter() - t0

    def _restore_state(self, dev: torch.device) -> None:
        self._C = torch.from_numpy(np.asarray(self.cluster_centers_, dtype=np.float32).copy()).to(dev)
        self._counts = torch.from_numpy(np.asarray(self.counts_, dtype=np.float64).copy()).to(dev)
        self._rng = _check_random_state(self.random_state)
        self._batch_temperature = float(getattr(self, "temperature_", 1.0))
        if not hasattr(self, "timings_"):
            self.timings_ = {}

    @torch.no_grad()
    def _step(self, xb: torch.Tensor, rng: np.random.Generator) -> None:
        if self.metric == "cosine":
            xb = _normalize_rows(xb)
        C, counts = self._C, self._counts
        k, d = C.shape
        chunk = _chunk_rows(xb.shape[0], k, xb.device, None, d)
        sums = torch.zeros((k, d), dtype=torch.float64, device=xb.device)
        n_b = torch.zeros(k, dtype=torch.float64, device=xb.device)
        labels, min_dist = _assign(xb, C, chunk, sums=sums, counts=n_b)
        sq = (min_dist + _row_sq_norms(xb)).clamp_(min=0)  # squared distance to the (old) centre
        # running mean squared distance: the scale of predict_proba when no final labelling pass is made
        self._batch_temperature = 0.9 * self._batch_temperature + 0.1 * float(sq.mean()) \
            if self.n_steps_ else float(sq.mean())
        new_counts = counts + n_b
        hit = n_b > 0
        upd = (C.double() * counts[:, None] + sums) / new_counts.clamp(min=1)[:, None]
        C = torch.where(hit[:, None], upd.float(), C)
        if self.metric == "cosine":
            C = _normalize_rows(C)
        counts = new_counts
        self.n_steps_ += 1
        if self.reassignment_ratio > 0 and self.n_steps_ % 10 == 0:
            C, counts = self._reassign(xb, sq, C, counts, rng)
        self._C, self._counts = C, counts

    def _reassign(self, xb: torch.Tensor, sq: torch.Tensor, C: torch.Tensor, counts: torch.Tensor,
                  rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Move centres that absorbed too few points to batch points drawn ∝ squared distance to their centre."""
        low = counts < self.reassignment_ratio * counts.max()
        n_low = min(int(low.sum()), xb.shape[0] // 2)
        if n_low == 0:
            return C, counts
        ids = low.nonzero().squeeze(1)[:n_low]
        w = sq.double().cpu().numpy()
        p = w / w.sum() if np.count_nonzero(w) >= n_low else None
        picks = torch.from_numpy(rng.choice(xb.shape[0], size=n_low, replace=False, p=p)).to(xb.device)
        C = C.clone()
        C[ids] = xb[picks]
        counts = counts.clone()
        counts[ids] = counts[~low].min() if bool((~low).any()) else 1.0
        return C, counts

    def _publish(self) -> None:
        self.cluster_centers_ = self._C.cpu().numpy()
        self.counts_ = self._counts.cpu().numpy()

    def _label_all(self, X: np.ndarray, dev: torch.device) -> tuple[np.ndarray, float]:
        n = X.shape[0]
        C = self._C
        step = max(int(self.batch_size), _chunk_rows(n, C.shape[0], dev, None, C.shape[1]))
        labels = np.empty(n, dtype=np.int64)
        inertia = 0.0
        for s in range(0, n, step):
            xb = self._rows(X, slice(s, s + step), dev)
            if self.metric == "cosine":
                xb = _normalize_rows(xb)
            lab, sq = _assign(xb, C, _chunk_rows(xb.shape[0], C.shape[0], dev, None, C.shape[1]), exact_sq=True)
            labels[s:s + step] = lab.cpu().numpy()
            inertia += float(sq.sum(dtype=torch.float64))
        return labels, inertia

    def _set_state(self, arrays: dict[str, np.ndarray], values: dict[str, Any]) -> None:
        super()._set_state(arrays, values)
        if "labels_" not in arrays:
            self.labels_ = None
