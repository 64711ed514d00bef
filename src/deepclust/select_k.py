"""Choosing the number of clusters without labels, with the evidence (one curve per criterion).

Criteria (each gives a curve over ``k_range`` and its own choice):

* ``ppp`` — a criterion *after* Probabilistic Partitive Partitioning (M. Sultan, arXiv 2003.04372,
  2020), not a reproduction of it. What we follow is the paper's abstract only (the full text could
  not be retrieved here): k-means partitions the data, a Gaussian mixture model *validates* the k-means
  partitions, the clusters should be repeatable and insensitive to initial conditions, and the number
  of clusters need not be given in advance (the abstract also mentions reducing the input space for
  large data, which our PCA and subsample do). How the GMM is set up (initialisation, covariance),
  what is measured per k and how k is chosen are NOT taken from the paper; they are our own choices:
  for every k, k-means runs from ``n_runs`` seeds; each partition initialises a diagonal-covariance
  GMM (means, weights and variances of the partition's clusters), which is then fitted by EM. The
  score is the mean adjusted Rand index between each k-means partition and its GMM partition
  ("validation") times the mean pairwise ARI between the GMM partitions of the different seeds
  ("repeatability"). The chosen k is the largest k whose score is within ``ppp_tolerance`` of the
  best. Treat its curve and choice as this project's heuristic in the spirit of PPP.
* ``umap_silhouette`` — UMAP reduction of the embedding (10-D, ``min_dist=0``), k-means in that
  space, silhouette there; the largest wins. Lowe et al., "An Empirical Study into Clustering of
  Unseen Datasets with Self-Supervised Encoders" (2024) found the silhouette in a UMAP reduction
  tracks clustering quality (AMI) across encoders and data sets.
* ``bic`` — Bayesian information criterion of a diagonal GMM (Schwarz 1978); smallest wins.
* ``gap`` — gap statistic with uniform references in the principal-axes box (Tibshirani, Walther
  & Hastie, JRSS-B 2001); the smallest k with ``gap(k) >= gap(k+1) - s(k+1)``.
* ``eigengap`` — eigenvalues of the normalised Laplacian of a symmetric k-NN graph; k is where
  the gap ``λ_{k+1} - λ_k`` is largest (von Luxburg, Statistics and Computing 2007).

The final k is a vote: the k chosen by most criteria; a tie goes to the tied k that
``umap_silhouette`` ranks highest (the criterion the empirical study supports). Everything runs on
a random subsample of at most ``max_samples`` points, after PCA to at most ``n_components``
dimensions (GMM, gap, eigengap and PPP; UMAP sees the subsample itself), and is deterministic for
a given ``random_state``.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from deepclust.engines.kmeans import KMeans, inner_kmeans
from deepclust.errors import DeepclustError
from deepclust.progress import progress
from deepclust.runtime import keep_torch_threads
from deepclust.validation import as_float_array

CRITERIA = ("ppp", "umap_silhouette", "bic", "gap", "eigengap")
#: direction of each curve, for plots: "max" (higher is better), "min" or "rule" (gap's own rule)
DIRECTIONS = {"ppp": "max", "umap_silhouette": "max", "bic": "min", "gap": "rule", "eigengap": "max"}
DESCRIPTIONS = {
    "ppp": "PPP-inspired (our reading of arXiv 2003.04372's abstract): k-means partitions validated by a GMM × their repeatability over seeds (higher is better)",
    "umap_silhouette": "silhouette of k-means in a 10-D UMAP reduction (higher is better)",
    "bic": "BIC of a diagonal Gaussian mixture (lower is better)",
    "gap": "gap statistic (smallest k with gap(k) ≥ gap(k+1) − s(k+1))",
    "eigengap": "eigengap λ(k+1) − λ(k) of the normalised k-NN graph Laplacian (higher is better)",
}


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
        d["descriptions"] = {c: DESCRIPTIONS[c] for c in self.curves}
        d["directions"] = {c: DIRECTIONS[c] for c in self.curves}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "KSelection":
        curves = {k: [float("nan") if v is None else float(v) for v in c] for k, c in d["curves"].items()}
        return cls(k=int(d["k"]), k_values=[int(k) for k in d["k_values"]], curves=curves,
                   choices={k: int(v) for k, v in d["choices"].items()}, rule=d.get("rule", ""),
                   n_samples_used=int(d.get("n_samples_used", 0)), seconds=d.get("seconds", {}),
                   extra=d.get("extra", {}))


# ---------------------------------------------------------------------------------- helpers
def _kmeans(X: np.ndarray, k: int, seed: int, n_init: int = 1, device: Any = "cpu", max_iter: int = 100) -> KMeans:
    return inner_kmeans(X, k, n_init=n_init, random_state=seed, device=device, max_iter=max_iter)


def _pca(X: np.ndarray, n_components: int, seed: int) -> np.ndarray:
    if X.shape[1] <= n_components:
        return X.astype(np.float64)
    from sklearn.decomposition import PCA

    return PCA(n_components=n_components, random_state=seed).fit_transform(X).astype(np.float64)


def _gmm_from_partition(X: np.ndarray, labels: np.ndarray, k: int, seed: int, max_iter: int = 100):
    """A diagonal GMM started from the clusters of ``labels`` (means, weights, variances), fitted by EM."""
    from sklearn.mixture import GaussianMixture

    counts = np.bincount(labels, minlength=k).astype(np.float64)
    counts = np.maximum(counts, 1.0)
    means = np.zeros((k, X.shape[1]))
    np.add.at(means, labels, X)
    means /= counts[:, None]
    sq = np.zeros((k, X.shape[1]))
    np.add.at(sq, labels, X * X)
    var = np.maximum(sq / counts[:, None] - means ** 2, 1e-6 * X.var(0).mean() + 1e-12)
    gmm = GaussianMixture(k, covariance_type="diag", weights_init=counts / counts.sum(), means_init=means,
                          precisions_init=1.0 / var, max_iter=max_iter, random_state=seed, reg_covar=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gmm.fit(X)
    return gmm


def _ari(a: np.ndarray, b: np.ndarray) -> float:
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(a, b))


# ---------------------------------------------------------------------------------- criteria
def ppp_curve(X: np.ndarray, k_values: Sequence[int], *, n_runs: int = 3, random_state: int = 0,
              device: Any = "cpu") -> tuple[list[float], dict[str, list[float]]]:
    """PPP-inspired score per k: validation (ARI k-means vs. its GMM) × repeatability (ARI between seeds' GMMs).

    Only the idea (k-means partitions, validated by a GMM, repeatable over initialisations) comes from
    the abstract of Sultan, arXiv 2003.04372; the diagonal GMM started from each k-means partition,
    the ARI measures and their product are this project's choices (see the module notes).
    """
    scores, validation, repeat = [], [], []
    for k in progress(k_values, desc="select k: PPP", unit="k"):
        parts = []
        agree = []
        for r in range(n_runs):
            km = _kmeans(X, k, seed=random_state * 1000 + r, device=device)
            gmm = _gmm_from_partition(X, km.labels_, k, seed=random_state + r)
            g = gmm.predict(X)
            parts.append(g)
            agree.append(_ari(km.labels_, g))
        pairs = [_ari(parts[i], parts[j]) for i in range(n_runs) for j in range(i + 1, n_runs)] or [1.0]
        v, s = float(np.mean(agree)), float(np.mean(pairs))
        validation.append(v)
        repeat.append(s)
        scores.append(max(v, 0.0) * max(s, 0.0))
    return scores, {"ppp_validation": validation, "ppp_repeatability": repeat}


def ppp_choice(k_values: Sequence[int], scores: Sequence[float], tolerance: float = 0.02) -> int:
    """The largest k scoring within ``tolerance`` of the best: the finest partition still validated and
    repeatable. Our rule, not the paper's (its abstract says no more than that k need not be given)."""
    best = np.nanmax(scores)
    ok = [k for k, s in zip(k_values, scores) if s >= best - tolerance]
    return int(max(ok))


def umap_silhouette_curve(X: np.ndarray, k_values: Sequence[int], *, random_state: int = 0,
                          n_components: int = 10, device: Any = "cpu") -> tuple[list[float], np.ndarray]:
    """Silhouette of k-means in a UMAP reduction, per k; also returns the reduction."""
    from sklearn.metrics import silhouette_score

    Z = umap_reduce(X, n_components=n_components, random_state=random_state, min_dist=0.0)
    out = []
    for k in progress(k_values, desc="select k: UMAP silhouette", unit="k"):
        lab = _kmeans(Z, k, seed=random_state, n_init=2, device=device).labels_
        out.append(float(silhouette_score(Z, lab)) if len(np.unique(lab)) > 1 else float("nan"))
    return out, Z


def umap_reduce(X: np.ndarray, *, n_components: int = 2, random_state: int = 0, min_dist: float = 0.1,
                n_neighbors: int = 15) -> np.ndarray:
    """UMAP embedding (deterministic for a seed; single-threaded then). PCA to 50-D first for wide inputs."""
    import umap

    X = np.asarray(X, dtype=np.float32).reshape(len(X), -1)
    if X.shape[1] > 50:
        X = _pca(X, 50, random_state).astype(np.float32)
    n_neighbors = max(2, min(n_neighbors, len(X) - 1))
    with warnings.catch_warnings(), keep_torch_threads():
        warnings.simplefilter("ignore")
        reducer = umap.UMAP(n_components=n_components, n_neighbors=n_neighbors, min_dist=min_dist,
                            random_state=random_state, init="spectral" if len(X) > n_components + 1 else "random")
        return reducer.fit_transform(X).astype(np.float32)


def bic_curve(X: np.ndarray, k_values: Sequence[int], *, random_state: int = 0) -> list[float]:
    from sklearn.mixture import GaussianMixture

    out = []
    for k in progress(k_values, desc="select k: BIC", unit="k"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            g = GaussianMixture(k, covariance_type="diag", random_state=random_state, max_iter=100).fit(X)
        out.append(float(g.bic(X)))
    return out


def gap_curve(X: np.ndarray, k_values: Sequence[int], *, n_refs: int = 3, random_state: int = 0,
              device: Any = "cpu") -> tuple[list[float], list[float]]:
    """Gap statistic and its standard error s_k, references uniform in the principal-axes box."""
    rng = np.random.default_rng(random_state)
    Xc = X - X.mean(0)
    _, _, vt = np.linalg.svd(Xc, full_matrices=False)
    Xp = Xc @ vt.T
    lo, hi = Xp.min(0), Xp.max(0)
    refs = [(rng.uniform(lo, hi, size=Xp.shape) @ vt).astype(np.float32) for _ in range(n_refs)]
    Xf = X.astype(np.float32)
    gaps, sks = [], []
    for k in progress(k_values, desc="select k: gap", unit="k"):
        log_w = math.log(max(_kmeans(Xf, k, seed=random_state, device=device).inertia_, 1e-300))
        ref_logs = np.array([math.log(max(_kmeans(R, k, seed=random_state + b, device=device, max_iter=30).inertia_, 1e-300))
                             for b, R in enumerate(refs)])
        gaps.append(float(ref_logs.mean() - log_w))
        sks.append(float(ref_logs.std() * math.sqrt(1 + 1 / n_refs)))
    return gaps, sks


def gap_choice(k_values: Sequence[int], gaps: Sequence[float], sks: Sequence[float]) -> int:
    for i in range(len(k_values) - 1):
        if gaps[i] >= gaps[i + 1] - sks[i + 1]:
            return int(k_values[i])
    return int(k_values[int(np.nanargmax(gaps))])


def eigengap_curve(X: np.ndarray, k_values: Sequence[int], *, n_neighbors: int = 10,
                   max_points: int = 2000, random_state: int = 0) -> tuple[list[float], list[float]]:
    """Eigengaps λ_{k+1} - λ_k of the symmetric normalised Laplacian of a k-NN graph (self-tuning weights)."""
    from scipy.sparse import csgraph
    from sklearn.neighbors import NearestNeighbors

    if len(X) > max_points:
        X = X[np.random.default_rng(random_state).choice(len(X), max_points, replace=False)]
    n = len(X)
    nn = min(n_neighbors, n - 1)
    dist, idx = NearestNeighbors(n_neighbors=nn + 1).fit(X).kneighbors(X)
    sigma = np.maximum(dist[:, -1], 1e-12)  # local scale (Zelnik-Manor & Perona 2004)
    w = np.exp(-dist[:, 1:] ** 2 / (sigma[:, None] * sigma[idx[:, 1:]]))
    W = np.zeros((n, n))
    W[np.repeat(np.arange(n), nn), idx[:, 1:].ravel()] = w.ravel()
    W = np.maximum(W, W.T)
    L = csgraph.laplacian(W, normed=True)
    kmax = min(max(k_values) + 1, n - 1)
    evals = np.linalg.eigvalsh(L)[: kmax + 1]
    gaps = [float(evals[k] - evals[k - 1]) if k < len(evals) else float("nan") for k in k_values]
    return gaps, [float(e) for e in evals]


# ---------------------------------------------------------------------------------- the choice
def vote(choices: dict[str, int], tie_break: Sequence[int] | None = None) -> int:
    """The k chosen by most criteria; ties go to the earliest k in ``tie_break`` (a preference order)."""
    counts: dict[int, int] = {}
    for k in choices.values():
        counts[k] = counts.get(k, 0) + 1
    top = max(counts.values())
    tied = [k for k, c in counts.items() if c == top]
    if len(tied) == 1:
        return tied[0]
    for k in tie_break or ():
        if k in tied:
            return int(k)
    return int(min(tied))


@contextlib.contextmanager
def _single_thread():
    """Run small subsample work on one thread: on a busy machine, torch's and BLAS's thread pools
    spin against each other (measured: 1,797 × 32 k-means took 2-3 s with 2 threads under load, 0.04 s with 1)."""
    import torch
    from threadpoolctl import threadpool_limits

    with keep_torch_threads(), threadpool_limits(1):
        torch.set_num_threads(1)
        yield


def select_k(X: Any, k_range: Sequence[int] | tuple[int, int] = (2, 15), *,
             criteria: Sequence[str] = CRITERIA, max_samples: int = 2000, n_components: int = 32,
             n_runs: int = 3, n_refs: int = 3, ppp_tolerance: float = 0.02, random_state: int = 0,
             device: Any = "cpu") -> KSelection:
    """Choose k for ``X`` (N×D embedding or images) by the criteria above; see the module notes.

    ``k_range`` is ``(k_min, k_max)`` inclusive, or an explicit list of k values (each >= 2).
    """
    X = as_float_array(X, name="X")
    X = X.reshape(len(X), -1)
    unknown = [c for c in criteria if c not in CRITERIA]
    if unknown or not criteria:
        raise DeepclustError(f"unknown k-selection criteria {unknown}; choose from {', '.join(CRITERIA)}")
    if isinstance(k_range, tuple) and len(k_range) == 2:
        k_values = list(range(int(k_range[0]), int(k_range[1]) + 1))
    else:
        k_values = sorted({int(k) for k in k_range})
    if not k_values or k_values[0] < 2:
        raise DeepclustError(f"k_range must hold whole numbers >= 2, got {k_range!r}")
    n = len(X)
    if n < 2 * k_values[-1] + 2:
        k_values = [k for k in k_values if 2 * k + 2 <= n]
        if not k_values:
            raise DeepclustError(f"too few samples ({n}) to choose a number of clusters; need at least 6")
    rng = np.random.default_rng(random_state)
    if n > max_samples:
        X = X[np.sort(rng.choice(n, max_samples, replace=False))]
    Xr = _pca(X, n_components, random_state)
    scale = float(np.sqrt((Xr ** 2).sum(1).mean())) or 1.0
    Xr = Xr / scale  # unit mean norm: keeps GMM/BIC well conditioned

    if "umap_silhouette" in criteria:
        try:
            import umap  # noqa: F401
        except ImportError:  # optional extra: choose without it, and say so
            warnings.warn("umap-learn is not installed (pip install 'deepclust[umap]'): k is chosen without the "
                          "UMAP silhouette", RuntimeWarning, stacklevel=2)
            criteria = [c for c in criteria if c != "umap_silhouette"]
    with _single_thread():
        return _select(X, Xr, k_values, criteria, n_runs, n_refs, ppp_tolerance, random_state, device)


def _select(X: np.ndarray, Xr: np.ndarray, k_values: list[int], criteria: Sequence[str], n_runs: int, n_refs: int,
            ppp_tolerance: float, random_state: int, device: Any) -> KSelection:
    Xr32 = Xr.astype(np.float32)
    curves: dict[str, list[float]] = {}
    choices: dict[str, int] = {}
    seconds: dict[str, float] = {}
    extra: dict[str, Any] = {}
    for crit in criteria:
        t0 = time.perf_counter()
        if crit == "ppp":
            scores, parts = ppp_curve(Xr32, k_values, n_runs=n_runs, random_state=random_state, device=device)
            curves["ppp"] = scores
            extra.update(parts)
            choices["ppp"] = ppp_choice(k_values, scores, ppp_tolerance)
        elif crit == "umap_silhouette":
            scores, _ = umap_silhouette_curve(X, k_values, random_state=random_state, device=device)
            curves[crit] = scores
            choices[crit] = int(k_values[int(np.nanargmax(scores))])
        elif crit == "bic":
            scores = bic_curve(Xr, k_values, random_state=random_state)
            curves[crit] = scores
            choices[crit] = int(k_values[int(np.nanargmin(scores))])
        elif crit == "gap":
            gaps, sks = gap_curve(Xr32, k_values, n_refs=n_refs, random_state=random_state, device=device)
            curves[crit] = gaps
            extra["gap_sk"] = sks
            choices[crit] = gap_choice(k_values, gaps, sks)
        elif crit == "eigengap":
            gaps, evals = eigengap_curve(Xr, k_values, random_state=random_state)
            curves[crit] = gaps
            extra["laplacian_eigenvalues"] = evals
            choices[crit] = int(k_values[int(np.nanargmax(gaps))])
        seconds[crit] = round(time.perf_counter() - t0, 3)

    pref = None
    if "umap_silhouette" in curves:
        order = np.argsort(-np.nan_to_num(np.asarray(curves["umap_silhouette"]), nan=-np.inf), kind="stable")
        pref = [k_values[i] for i in order]
    k = vote(choices, pref)
    rule = ("vote of " + ", ".join(curves) + "; ties go to the tied k with the highest UMAP silhouette"
            if len(curves) > 1 else f"the choice of {next(iter(curves))}")
    return KSelection(k=k, k_values=k_values, curves=curves, choices=choices, rule=rule,
                      n_samples_used=len(X), seconds=seconds, extra=extra)


__all__ = ["CRITERIA", "KSelection", "select_k", "umap_reduce", "vote"]
