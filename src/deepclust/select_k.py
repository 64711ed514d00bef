"""Choosing the number of clusters without labels, from 2 to the hundreds, in O(log k) fits.

One fixed procedure (the reasons follow each step):

1. **Subsample and reduce.** At most ``max_samples`` points (default 6,000) drawn at random, then
   UMAP to ``n_components`` = 5 dimensions with ``min_dist = 0`` on a 15-nearest-neighbour graph
   (McInnes, Healy & Melville 2018; the settings UMAP's documentation gives for clustering). That
   graph is built once and everything below runs in its reduction. Why: on 384-D sentence
   embeddings or 784-D pixels, Gaussian and distance criteria keep improving to the end of any
   range (our v1 benchmark: BIC and the gap statistic chose 21–25 of 2…25 on most sets), while in a
   low-dimensional UMAP reduction clusters become compact, so a mixture model or a density
   estimate can see them; Lowe et al. (2024, "An Empirical Study into Clustering of Unseen
   Datasets with Self-Supervised Encoders") found clustering in such a reduction works across
   encoders and data sets.
2. **A range that follows the data.** A cluster must hold at least ``min_cluster_size`` = 2 × 15
   points of the subsample (twice the neighbourhood size: a smaller group is only a patch of the
   neighbour graph), so k runs from 2 to ``n_used // min_cluster_size`` (200 at 6,000 points).
   Raise ``max_samples`` to search further.
3. **Coarse to fine, O(log k_max) fits.** k-means (with the criterion that needs it) runs on the
   geometric grid 2, 3, 4, 5, 6, 8, 10, 12, 15, 18, 22, 27, … (each k about 1.2 × the previous,
   ``grid``), then bisects the two gaps beside the grid's best k until they close
   (``refine``). About 23 fits reach k = 200 and refinement adds about ``2 log2(0.2 k)``;
   the k values tried and ``n_fits`` are in the result.

Criteria (each gives its own choice; all share step 1):

* ``bic`` — a full-covariance Gaussian mixture started from each k-means partition and fitted by
  EM, scored by the Bayesian information criterion (Schwarz 1978); the smallest wins. The
  classical model-selection answer, made usable by the 5-D reduction.
* ``silhouette`` — the silhouette (Rousseeuw 1987) of the k-means partition in the reduction; the
  largest wins (the criterion Lowe et al. found to track clustering quality).
* ``hdbscan`` — the number of clusters HDBSCAN (Campello, Moulavi & Sander 2013) finds in the
  reduction with the same ``min_cluster_size``: density, no search over k at all.
* ``coding_length`` — CPP's principle (Chu et al., ICLR 2024, §3.1): the lossy coding length
  (Ma et al., TPAMI 2007; :func:`deepclust.losses.coding_length`, ε² = 0.1) of the samples on the
  unit sphere (rows L2-normalised; PCA to 128 dimensions first for wider inputs, then normalised
  again) segmented by each k-means partition of the reduction; the smallest wins. Computed only
  when asked for. CPP itself scores the partitions of its learned membership on its learned
  features (:meth:`deepclust.methods.cpp.CPP.estimate_k`).
* ``ppp`` — after Probabilistic Partitive Partitioning (M. Sultan, arXiv 2003.04372, 2020), not a
  reproduction of it: only the paper's abstract could be read here, and what we take from it is
  the idea: k-means partitions the data, a Gaussian mixture model *validates* the k-means
  partitions, and good clusters are repeatable, insensitive to the initial conditions, with no k
  given in advance. Everything else is ours: for each k, :data:`PPP_RUNS` k-means partitions of the
  reduction (the shared fit and further seeds, each best of 3 starts) each start a full-covariance
  GMM (the one ``bic`` fits), fitted by EM; the score is the mean adjusted Rand index between each
  k-means partition and its GMM's ("validation") times the mean ARI between the GMM partitions of
  the different seeds ("repeatability"); k is the *largest* k scoring within :data:`PPP_TOLERANCE`
  of the best (the finest partition still validated and repeatable), found coarse to fine
  (:func:`refine_largest`). The tolerance is in ARI units, and with many clusters one more split
  costs less than that: on 40 well-separated blobs it says 43. Computed only when asked for; an anchor
  in the k-selection benchmark (``benchmarks/select_k_bench.py --only ppp``).

**Other supported k.** ``extra["alternatives"]`` lists the other local maxima of the silhouette
curve (each better than its tried neighbours) whose score is within :data:`ALT_TOLERANCE` = 0.05
of the best: e.g. 10 and 20 on a hierarchy. The chosen k stays one number; ``deepclust run`` adds
the levels its merge tree shows (:func:`deepclust.merge.tree_levels`) and suggests
``deepclust merge`` for the coarser ones.

The final k is the choice of ``rule`` (default ``"silhouette"``), or with ``rule="median"`` the
median of the three choices (the lower middle one for an even count), a consensus that one
criterion going astray cannot move. The default was chosen by the aggregate only: the four rules
were measured once, with this procedure fixed, on the 17 benchmark sets
(``benchmarks/select_k_bench.py``, ``benchmarks/results/select-k-v2.jsonl``; labels only score it),
and the silhouette had the most sets right (4: digits, optdigits, biomedical, CLINC150; BIC 0,
HDBSCAN 1, median 0). That is far from good: on raw pixels it merges classes (6 of 10 on MNIST), BIC splits
them (28–40), and no rule here is right on most sets. Deterministic for a given ``random_state``.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from deepclust.engines.kmeans import KMeans, inner_kmeans
from deepclust.errors import DeepclustError
from deepclust.runtime import keep_torch_threads
from deepclust.validation import as_float_array

CRITERIA = ("bic", "silhouette", "hdbscan", "coding_length", "ppp")
#: what ``select_k`` computes unless told: the rule and HDBSCAN's count as evidence; BIC (right on no
#: benchmark set, and the slowest) only when asked for
DEFAULT_CRITERIA = ("silhouette", "hdbscan")
#: direction of each curve, for plots: "max" (higher is better), "min"; hdbscan has no curve
DIRECTIONS = {"bic": "min", "silhouette": "max", "hdbscan": "count", "coding_length": "min", "ppp": "max"}
DESCRIPTIONS = {
    "bic": "BIC of a full-covariance Gaussian mixture started from k-means, in the 5-D UMAP reduction (lower is better)",
    "silhouette": "silhouette of k-means in the 5-D UMAP reduction (higher is better)",
    "hdbscan": "number of clusters HDBSCAN finds in the 5-D UMAP reduction (no search over k)",
    "coding_length": "coding length (nats) of the L2-normalised samples segmented by k-means in the 5-D UMAP "
                     "reduction (CPP's criterion; lower is better)",
    "ppp": "PPP after Sultan (arXiv 2003.04372; our reading of its abstract): agreement of k-means with the GMM "
           "started from it × agreement across k-means seeds, in the 5-D UMAP reduction (higher is better; the "
           "largest k within 0.02 of the best is chosen)",
}
#: widest input the coding length is computed on (PCA beyond): CPP codes 128-dimensional features
CODING_LENGTH_DIM = 128
#: neighbours of the one graph (UMAP); a cluster needs twice as many points of the subsample
N_NEIGHBORS = 15
#: each grid k is about this factor times the previous one
GRID_RATIO = 1.2
#: another local maximum of the silhouette curve this close to the best is listed as also supported
#: (a fixed margin on the silhouette's -1…1 scale, set before measuring and not tuned on the benchmark sets)
ALT_TOLERANCE = 0.05
#: PPP (ours, as in the project's first PPP criterion): k-means seeds per k, and how far below the best
#: score the chosen (largest) k may be; fixed before measuring, not tuned on the benchmark sets
PPP_RUNS, PPP_TOLERANCE = 3, 0.02


@dataclass
class KSelection:
    """The chosen k and the evidence: per-criterion curves over ``k_values`` and choices."""

    k: int
    k_values: list[int]
    curves: dict[str, list[float]]
    choices: dict[str, int]
    rule: str
    n_samples_used: int
    seconds: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["curves"] = {k: [None if not math.isfinite(v) else round(float(v), 6) for v in c]
                       for k, c in self.curves.items()}
        d["descriptions"] = {c: DESCRIPTIONS.get(c, c) for c in self.choices}
        d["directions"] = {c: DIRECTIONS.get(c, "") for c in self.choices}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "KSelection":
        curves = {k: [float("nan") if v is None else float(v) for v in c] for k, c in d["curves"].items()}
        return cls(k=int(d["k"]), k_values=[int(k) for k in d["k_values"]], curves=curves,
                   choices={k: int(v) for k, v in d["choices"].items()}, rule=d.get("rule", ""),
                   n_samples_used=int(d.get("n_samples_used", 0)), seconds=d.get("seconds", {}),
                   extra=d.get("extra", {}))


# ---------------------------------------------------------------------------------- search
def grid(k_min: int, k_max: int, ratio: float = GRID_RATIO) -> list[int]:
    """Geometric grid from ``k_min`` to ``k_max`` (both included): each k about ``ratio`` × the last."""
    ks = [k_min]
    while ks[-1] < k_max:
        ks.append(min(k_max, max(ks[-1] + 1, math.ceil(ks[-1] * ratio))))
    return ks


def refine(score: Callable[[int], float], ks: Sequence[int], scores: dict[int, float]) -> int:
    """Coarse to fine: the best of ``ks`` (by ``score``, higher better; cached in ``scores``), then the
    midpoints of the gaps on either side of the current best, until no gap is left. Returns the best k."""
    for k in ks:
        if k not in scores:
            scores[k] = score(k)
    while True:
        tried = sorted(scores)
        best = max(tried, key=lambda k: (scores[k], -k))
        i = tried.index(best)
        mids = [(a + b) // 2 for a, b in ((tried[i - 1] if i else best, best),
                                          (best, tried[i + 1] if i + 1 < len(tried) else best)) if b - a > 1]
        if not mids:
            return best
        for k in mids:
            scores[k] = score(k)


def refine_largest(score: Callable[[int], float], ks: Sequence[int], scores: dict[int, float],
                   tolerance: float) -> int:
    """Coarse to fine for the *largest* k scoring within ``tolerance`` of the best: score ``ks`` (cached in
    ``scores``), then bisect the gap above the largest such k tried until it closes. Returns that k."""
    for k in ks:
        if k not in scores:
            scores[k] = score(k)
    while True:
        tried = sorted(scores)
        best = max(scores.values())
        top = max(k for k in tried if scores[k] >= best - tolerance)
        i = tried.index(top)
        if i + 1 == len(tried) or tried[i + 1] - top <= 1:
            return top
        mid = (top + tried[i + 1]) // 2
        scores[mid] = score(mid)


def alternatives(curve: dict[int, float], chosen: int, tolerance: float = ALT_TOLERANCE) -> list[dict[str, Any]]:
    """The local maxima of ``curve`` (k → score, higher better; over the k tried) other than ``chosen``
    whose score is within ``tolerance`` of the best, best first."""
    ks = [k for k in sorted(curve) if math.isfinite(curve[k])]
    if not ks:
        return []
    best = max(curve[k] for k in ks)
    peaks = [k for i, k in enumerate(ks) if (i == 0 or curve[k] > curve[ks[i - 1]])
             and (i + 1 == len(ks) or curve[k] > curve[ks[i + 1]])]
    return [{"k": k, "score": round(float(curve[k]), 4)} for k in sorted(peaks, key=lambda k: -curve[k])
            if k != chosen and curve[k] >= best - tolerance]


# ---------------------------------------------------------------------------------- helpers
def _kmeans(X: np.ndarray, k: int, seed: int, n_init: int = 1, device: Any = "cpu", max_iter: int = 100) -> KMeans:
    return inner_kmeans(X, k, n_init=n_init, random_state=seed, device=device, max_iter=max_iter)


def _pca(X: np.ndarray, n_components: int, seed: int) -> np.ndarray:
    if X.shape[1] <= n_components:
        return X.astype(np.float64)
    from sklearn.decomposition import PCA

    return PCA(n_components=n_components, random_state=seed).fit_transform(X).astype(np.float64)


def gmm_from_partition(Z: np.ndarray, labels: np.ndarray, k: int, seed: int, max_iter: int = 50) -> Any:
    """A full-covariance Gaussian mixture started from the clusters of ``labels`` (weights, means,
    covariances + a small ridge) and fitted by EM on ``Z`` (float64)."""
    from sklearn.mixture import GaussianMixture

    n, d = Z.shape
    reg = 1e-3 * float(Z.var(0).mean()) + 1e-9
    counts = np.maximum(np.bincount(labels, minlength=k).astype(np.float64), 1.0)
    means = np.zeros((k, d))
    np.add.at(means, labels, Z)
    means /= counts[:, None]
    diff = Z - means[labels]
    cov = np.zeros((k, d * d))
    np.add.at(cov, labels, (diff[:, :, None] * diff[:, None, :]).reshape(n, d * d))
    cov = cov.reshape(k, d, d) / counts[:, None, None] + reg * np.eye(d)
    gmm = GaussianMixture(k, covariance_type="full", weights_init=counts / counts.sum(), means_init=means,
                          precisions_init=np.linalg.inv(cov), max_iter=max_iter, random_state=seed, reg_covar=reg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gmm.fit(Z)
    return gmm


def gmm_bic(Z: np.ndarray, labels: np.ndarray, k: int, seed: int, max_iter: int = 50) -> float:
    """BIC of a full-covariance Gaussian mixture started from the clusters of ``labels`` and fitted by EM."""
    Z = Z.astype(np.float64)
    return float(gmm_from_partition(Z, labels, k, seed, max_iter).bic(Z))


def ppp_score(Z: np.ndarray, partitions: Sequence[np.ndarray], k: int, seed: int) -> tuple[float, float, float]:
    """(score, validation, repeatability) of ``k`` for the ``ppp`` criterion (see the module notes): each
    k-means partition starts a GMM; validation = mean ARI(k-means, its GMM), repeatability = mean ARI
    between the GMM partitions; score = their product (negative ARIs count as 0)."""
    from sklearn.metrics import adjusted_rand_score as ari

    Z = Z.astype(np.float64)
    gmms = [gmm_from_partition(Z, p, k, seed).predict(Z) for p in partitions]
    validation = float(np.mean([ari(p, g) for p, g in zip(partitions, gmms)]))
    pairs = [ari(gmms[i], gmms[j]) for i in range(len(gmms)) for j in range(i + 1, len(gmms))]
    repeatability = float(np.mean(pairs)) if pairs else 1.0
    return max(validation, 0.0) * max(repeatability, 0.0), validation, repeatability


def umap_reduce(X: np.ndarray, *, n_components: int = 2, random_state: int = 0, min_dist: float = 0.1,
                n_neighbors: int = N_NEIGHBORS) -> np.ndarray:
    """UMAP embedding (deterministic for a seed; single-threaded then) by :func:`deepclust.reduction.umap_layout`,
    after PCA to 50-D for wide inputs, with the neighbourhood shrunk to fit tiny inputs."""
    from deepclust.reduction import umap_layout

    X = np.asarray(X, dtype=np.float32).reshape(len(X), -1)
    if X.shape[1] > 50:
        X = _pca(X, 50, random_state).astype(np.float32)
    return umap_layout(X, n_components=n_components, n_neighbors=max(2, min(n_neighbors, len(X) - 1)),
                       min_dist=min_dist, random_state=random_state)


def _reduce(X: np.ndarray, n_components: int, random_state: int) -> tuple[np.ndarray, str]:
    """Step 1's reduction: UMAP, or PCA (with a warning) where umap-learn is not installed."""
    try:
        import umap  # noqa: F401
    except ImportError:
        warnings.warn("umap-learn is not installed (pip install 'deepclust[umap]'): k is chosen in a PCA reduction, "
                      "which finds it less often", RuntimeWarning, stacklevel=3)
        return _pca(X, n_components, random_state).astype(np.float32), "PCA"
    if len(X) <= n_components + 2:
        return _pca(X, n_components, random_state).astype(np.float32), "PCA"
    return umap_reduce(X, n_components=n_components, random_state=random_state, min_dist=0.0), "UMAP"


def hdbscan_count(Z: np.ndarray, min_cluster_size: int) -> int:
    """Number of clusters HDBSCAN finds in ``Z`` (noise not counted)."""
    from sklearn.cluster import HDBSCAN

    labels = HDBSCAN(min_cluster_size=max(2, min(min_cluster_size, len(Z))), copy=True).fit_predict(Z)
    return int(len(set(labels.tolist()) - {-1}))


@contextlib.contextmanager
def _single_thread():
    """Run small subsample work on one thread: on a busy machine, torch's and BLAS's thread pools
    spin against each other (measured: 1,797 × 32 k-means took 2-3 s with 2 threads under load, 0.04 s with 1)."""
    import torch
    from threadpoolctl import threadpool_limits

    with keep_torch_threads(), threadpool_limits(1):
        torch.set_num_threads(1)
        yield


# ---------------------------------------------------------------------------------- the choice
def k_limit(n: int, min_cluster_size: int = 2 * N_NEIGHBORS) -> int:
    """The largest k searched on ``n`` points: every cluster holds ``min_cluster_size`` of them (at least 2)."""
    return max(2, min(n // max(1, min_cluster_size), (n - 2) // 2))


def select_k(X: Any, k_range: Sequence[int] | tuple[int, int] | None = None, *,
             criteria: Sequence[str] = DEFAULT_CRITERIA, rule: str = "silhouette", max_samples: int = 6000,
             n_components: int = 5, min_cluster_size: int = 2 * N_NEIGHBORS, random_state: int = 0,
             device: Any = "cpu", reduce: bool = True) -> KSelection:
    """Choose k for ``X`` (N×D embedding or images); see the module notes.

    ``k_range``: None (2 … :func:`k_limit` of the subsample), ``(k_min, k_max)`` inclusive, or a list
    of k values (each >= 2) to search among. ``rule``: the criterion whose choice is the k returned.
    ``reduce=False`` skips step 1's reduction: ``X`` is already the space to search in (e.g. a layout
    made by :func:`umap_reduce`).
    """
    X = as_float_array(X, name="X")
    X = X.reshape(len(X), -1)
    unknown = [c for c in criteria if c not in CRITERIA]
    if unknown or not criteria:
        raise DeepclustError(f"unknown k-selection criteria {unknown}; choose from {', '.join(CRITERIA)}")
    if rule not in (*criteria, "median"):
        raise DeepclustError(f"rule {rule!r} must be 'median' or one of the criteria computed ({', '.join(criteria)})")
    n = len(X)
    if n < 6:
        raise DeepclustError(f"too few samples ({n}) to choose a number of clusters; need at least 6")
    rng = np.random.default_rng(random_state)
    if n > max_samples:
        X = X[np.sort(rng.choice(n, max_samples, replace=False))]
    n_used = len(X)
    if k_range is None:
        allowed = list(range(2, k_limit(n_used, min_cluster_size) + 1))
    elif isinstance(k_range, tuple) and len(k_range) == 2:
        allowed = list(range(int(k_range[0]), int(k_range[1]) + 1))
    else:
        allowed = sorted({int(k) for k in k_range})
    if not allowed or allowed[0] < 2:
        raise DeepclustError(f"k_range must hold whole numbers >= 2, got {k_range!r}")
    allowed = [k for k in allowed if 2 * k + 2 <= n_used] or [2]
    with _single_thread():
        return _select(X, allowed, criteria, rule, n_components, min_cluster_size, random_state, device, reduce)


def _select(X: np.ndarray, allowed: list[int], criteria: Sequence[str], rule: str, n_components: int,
            min_cluster_size: int, random_state: int, device: Any, reduce: bool = True) -> KSelection:
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    Z, how = _reduce(X, n_components, random_state) if reduce else (np.asarray(X, np.float32), "")
    seconds["reduce"] = round(time.perf_counter() - t0, 3)

    fits: dict[int, np.ndarray] = {}
    pos = {k: i for i, k in enumerate(allowed)}  # search over positions in ``allowed`` (it may have holes)

    def labels(k: int) -> np.ndarray:
        if k not in fits:
            fits[k] = _kmeans(Z, k, seed=random_state, n_init=3, device=device).labels_
        return fits[k]

    def silhouette(k: int) -> float:
        from sklearn.metrics import silhouette_score

        lab = labels(k)
        if len(np.unique(lab)) < 2:
            return float("nan")
        return float(silhouette_score(Z, lab, sample_size=min(len(Z), 3000), random_state=random_state))

    def bic(k: int) -> float:
        return gmm_bic(Z, labels(k), k, random_state)

    sphere: list[Any] = []

    def code_length(k: int) -> float:
        import torch

        from deepclust.losses import coding_length

        if not sphere:
            unit = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
            if unit.shape[1] > CODING_LENGTH_DIM:
                unit = _pca(unit, CODING_LENGTH_DIM, random_state)
                unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
            sphere.append(torch.from_numpy(np.asarray(unit, dtype=np.float64)))
        return coding_length(sphere[0], torch.from_numpy(labels(k)))

    ppp_parts: dict[int, tuple[float, float]] = {}

    def ppp(k: int) -> float:
        parts = [labels(k)] + [_kmeans(Z, k, seed=random_state + 1000 * r, n_init=3, device=device).labels_
                               for r in range(1, PPP_RUNS)]
        score, validation, repeatability = ppp_score(Z, parts, k, random_state)
        ppp_parts[k] = (validation, repeatability)
        return score

    score_fns = {"bic": lambda k: -bic(k), "silhouette": silhouette, "coding_length": lambda k: -code_length(k),
                 "ppp": ppp}
    coarse = sorted({allowed[min(i, len(allowed) - 1)] for i in (g - 2 for g in grid(2, len(allowed) + 1))})
    raw: dict[str, dict[int, float]] = {}
    choices: dict[str, int] = {}
    for crit in criteria:
        t0 = time.perf_counter()
        if crit == "hdbscan":
            choices[crit] = hdbscan_count(Z, min_cluster_size)
        else:
            fn = score_fns[crit]
            by_pos: dict[int, float] = {}
            search = refine if crit != "ppp" else lambda *a: refine_largest(*a, tolerance=PPP_TOLERANCE)
            best = search(lambda p: float(np.nan_to_num(fn(allowed[p]), nan=-np.inf)), [pos[k] for k in coarse],
                          by_pos)
            raw[crit] = {allowed[p]: (-s if DIRECTIONS[crit] == "min" else s) for p, s in by_pos.items()}
            choices[crit] = allowed[best]
        seconds[crit] = round(time.perf_counter() - t0, 3)
    k_values = sorted({k for r in raw.values() for k in r} | set(fits))
    curves = {c: [r.get(k, float("nan")) for k in k_values] for c, r in raw.items()}
    space = f"{how} reduction" if how else "space given"
    extra = {"n_fits": len(fits), "reduction": f"{how} to {Z.shape[1]}-D" if how else "none", "k_min": allowed[0],
             "k_max": allowed[-1], "min_cluster_size": min_cluster_size}
    k = int(np.sort(list(choices.values()))[(len(choices) - 1) // 2]) if rule == "median" else choices[rule]
    if ppp_parts:
        ks = sorted(ppp_parts)
        extra["ppp"] = {"k": ks, "validation": [round(ppp_parts[k][0], 4) for k in ks],
                        "repeatability": [round(ppp_parts[k][1], 4) for k in ks], "runs": PPP_RUNS,
                        "tolerance": PPP_TOLERANCE, "extra_kmeans_fits": (PPP_RUNS - 1) * len(ks)}
    if "silhouette" in raw:
        extra["alternatives"] = alternatives(raw["silhouette"], k)
        extra["alternatives_rule"] = (f"other local maxima of the silhouette curve within {ALT_TOLERANCE} of the best")
    return KSelection(k=k, k_values=k_values, curves=curves, choices=choices,
                      rule=f"the choice of {rule} (searched k = {allowed[0]}…{allowed[-1]} coarse to fine in the "
                           f"{space})", n_samples_used=len(X), seconds=seconds, extra=extra)


__all__ = ["ALT_TOLERANCE", "CRITERIA", "DEFAULT_CRITERIA", "KSelection", "alternatives", "grid", "k_limit", "refine",
           "refine_largest", "select_k", "umap_reduce"]
