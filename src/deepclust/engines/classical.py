"""Classical clusterers from well-kept libraries, behind the deepclust estimator API.

* :class:`GaussianMixture` — EM for a Gaussian mixture (scikit-learn).
* :class:`HDBSCAN` — density-based hierarchical clustering (scikit-learn); finds k itself.
* :class:`AgglomerativeClustering` — Ward linkage (scikit-learn), with subsampling above
  ``max_samples`` because it needs O(n²) memory.
* :class:`KMedoids` — FasterPAM (the ``kmedoids`` package) on any dissimilarity.

All take ``n_clusters``, ``device`` and ``random_state`` like every deepclust method, set
``labels_`` and ``timings_`` (seconds per phase), and save/load through
:meth:`~deepclust.base.BaseClusterer.save` / :func:`~deepclust.base.load_model` with identical
predictions. They run on the CPU: ``device`` is accepted for a uniform API and ignored.
Images (N, C, H, W) are flattened to vectors.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from deepclust.base import BaseClusterer
from deepclust.errors import DeepclustError
from deepclust.validation import check_n_clusters

__all__ = ["AgglomerativeClustering", "GaussianMixture", "HDBSCAN", "KMedoids"]


def _flat(X: np.ndarray) -> np.ndarray:
    return X.reshape(X.shape[0], -1)


def _flat64(X: np.ndarray) -> np.ndarray:
    """Samples as float64 vectors: EM and the posterior in double precision, so that the saved
    (float64) parameters give back exactly the same predictions."""
    return _flat(X).astype(np.float64)


def _nearest(X: np.ndarray, centers: np.ndarray, metric: str = "euclidean") -> np.ndarray:
    """Index of the nearest row of ``centers`` for every row of ``X`` (chunked; no n×k matrix for big n)."""
    if metric == "euclidean":
        from deepclust.engines.kmeans import _assign

        Xt = torch.from_numpy(np.ascontiguousarray(_flat(X), dtype=np.float32))
        Ct = torch.from_numpy(np.ascontiguousarray(centers, dtype=np.float32))
        k = Ct.shape[0]
        chunk = max(64, min(Xt.shape[0], (1 << 22) // max(1, k, Ct.shape[1])))
        labels, _ = _assign(Xt, Ct, chunk)
        return labels.numpy()
    from sklearn.metrics import pairwise_distances_argmin

    return pairwise_distances_argmin(_flat(X), centers, metric=metric).astype(np.int64)


def centroids(X: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Mean of each cluster's points, float32 (points labelled < 0 are left out)."""
    keep = labels >= 0
    sums = np.zeros((k, X.shape[1]), dtype=np.float64)
    np.add.at(sums, labels[keep], X[keep])
    return (sums / np.maximum(np.bincount(labels[keep], minlength=k), 1)[:, None]).astype(np.float32)


class _NearestCentroid:
    """``predict`` and ``transform`` of a clusterer that keeps ``cluster_centers_`` (agglomerative
    ones): nearest centroid, Euclidean distances."""

    cluster_centers_: np.ndarray

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return _nearest(_flat(X), self.cluster_centers_)

    def _transform(self, X: np.ndarray) -> np.ndarray:
        from sklearn.metrics import pairwise_distances

        return pairwise_distances(_flat(X), self.cluster_centers_)


def _subsample(n: int, max_samples: int | None, random_state: Any) -> np.ndarray | None:
    if max_samples is None or n <= max_samples:
        return None
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(n, int(max_samples), replace=False))


def _check_max_samples(max_samples: Any, n_clusters: int) -> None:
    if max_samples is None:
        return
    if isinstance(max_samples, bool) or not isinstance(max_samples, (int, np.integer)) or max_samples < n_clusters:
        raise DeepclustError(f"max_samples must be None or a whole number >= n_clusters ({n_clusters}), "
                             f"got {max_samples!r}")


# ---------------------------------------------------------------------------------- GaussianMixture
class GaussianMixture(BaseClusterer):
    """Gaussian mixture fitted by EM (:class:`sklearn.mixture.GaussianMixture`).

    ``covariance_type`` is ``"full"`` (default), ``"tied"``, ``"diag"`` or ``"spherical"``; the
    other parameters are scikit-learn's. ``predict_proba`` gives the posterior responsibilities,
    ``predict`` their arg-max; there is no ``transform``. ``labels_`` are the predictions on the
    training data. EM runs in float64 (a float64 copy of ``X``); the fitted ``weights_``, ``means_``,
    ``covariances_``, ``precisions_cholesky_`` are saved in float64, so a reloaded model predicts
    bit-identically.

    A full covariance on d features costs O(n·k·d²) per EM step: for raw images (d = 784) prefer
    ``"diag"`` or reduce the dimension first.
    """

    _saved_arrays = ("labels_", "weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_")
    _saved_values = ("converged_", "n_iter_", "lower_bound_", "timings_")

    def __init__(self, n_clusters: int = 8, *, covariance_type: str = "full", max_iter: int = 100, n_init: int = 1,
                 tol: float = 1e-3, reg_covar: float = 1e-6, init_params: str = "kmeans", device: Any = "auto",
                 random_state: Any = 0, verbose: bool = False):
        self.n_clusters = n_clusters
        self.covariance_type = covariance_type
        self.max_iter = max_iter
        self.n_init = n_init
        self.tol = tol
        self.reg_covar = reg_covar
        self.init_params = init_params
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _make(self):
        from sklearn.mixture import GaussianMixture as SkGMM

        if self.covariance_type not in ("full", "tied", "diag", "spherical"):
            raise DeepclustError("covariance_type must be 'full', 'tied', 'diag' or 'spherical', "
                                 f"got {self.covariance_type!r}")
        return SkGMM(n_components=int(self.n_clusters), covariance_type=self.covariance_type, max_iter=self.max_iter,
                     n_init=self.n_init, tol=self.tol, reg_covar=self.reg_covar, init_params=self.init_params,
                     random_state=self.random_state, verbose=int(bool(self.verbose)))

    def _fit(self, X: np.ndarray) -> None:
        gmm = self._make()
        t0 = time.perf_counter()
        try:
            gmm.fit(_flat64(X))
        except ValueError as exc:  # e.g. ill-defined covariance: say what to change
            raise DeepclustError(f"GaussianMixture could not be fitted: {exc} "
                                 "(try covariance_type='diag' or a larger reg_covar)") from exc
        t1 = time.perf_counter()
        self._gmm = gmm
        for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_",
                     "converged_", "n_iter_", "lower_bound_"):
            setattr(self, name, getattr(gmm, name))
        self.converged_ = bool(self.converged_)
        self.lower_bound_ = float(self.lower_bound_)
        self.labels_ = gmm.predict(_flat64(X)).astype(np.int64)
        self.timings_ = {"fit": t1 - t0, "labels": time.perf_counter() - t1}

    def _model(self):
        if getattr(self, "_gmm", None) is None:  # reloaded: rebuild scikit-learn's object from the arrays
            gmm = self._make()
            for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"):
                setattr(gmm, name, np.asarray(getattr(self, name), dtype=np.float64))
            gmm.converged_ = self.converged_
            gmm.n_iter_ = self.n_iter_
            gmm.lower_bound_ = self.lower_bound_
            gmm.n_features_in_ = self.n_features_in_
            self._gmm = gmm
        return self._gmm

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return self._model().predict(_flat64(X))

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self._model().predict_proba(_flat64(X))



# ---------------------------------------------------------------------------------- HDBSCAN
class HDBSCAN(BaseClusterer):
    """HDBSCAN (:class:`sklearn.cluster.HDBSCAN`): finds the number of clusters itself; noise is ``-1``.

    ``n_clusters`` is accepted (so every method takes it) and **ignored**; ``n_clusters_`` is the
    number of clusters found. ``min_cluster_size``, ``min_samples``, ``cluster_selection_epsilon``,
    ``cluster_selection_method`` and ``metric`` are scikit-learn's.

    Prediction on new points (scikit-learn's HDBSCAN has none): a point takes the label of its
    nearest training point, noise included — so a point in a noise region is predicted as noise,
    and ``predict`` on the training data gives back ``labels_``. This keeps the training data
    (``X_fit_``, saved with the model). With ``metric="precomputed"``, ``predict`` takes the
    dissimilarities of the new points to the training points (shape (m, n_train)).
    ``predict_proba``: one-hot on the predicted cluster, uniform over the clusters for noise.
    """

    _requires_n_clusters = False
    _saved_arrays = ("labels_", "X_fit_", "probabilities_")
    _saved_values = ("n_found_", "timings_")

    def __init__(self, n_clusters: int | None = None, *, min_cluster_size: int = 5, min_samples: int | None = None,
                 cluster_selection_epsilon: float = 0.0, cluster_selection_method: str = "eom",
                 metric: str = "euclidean", device: Any = "auto", random_state: Any = 0):
        self.n_clusters = n_clusters
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.cluster_selection_epsilon = cluster_selection_epsilon
        self.cluster_selection_method = cluster_selection_method
        self.metric = metric
        self.device = device
        self.random_state = random_state

    @property
    def n_clusters_(self) -> int:
        return int(self.n_found_)

    def _fit(self, X: np.ndarray) -> None:
        from sklearn.cluster import HDBSCAN as SkHDBSCAN

        Xf = _flat(X)
        if self.metric == "precomputed" and Xf.shape[0] != Xf.shape[1]:
            raise DeepclustError(f"metric='precomputed' needs a square dissimilarity matrix, got shape {Xf.shape}")
        if isinstance(self.min_cluster_size, bool) or not isinstance(self.min_cluster_size, (int, np.integer)) \
                or self.min_cluster_size < 2:
            raise DeepclustError(f"min_cluster_size must be a whole number >= 2, got {self.min_cluster_size!r}")
        t0 = time.perf_counter()
        try:
            model = SkHDBSCAN(min_cluster_size=int(min(self.min_cluster_size, max(2, Xf.shape[0]))),
                              min_samples=self.min_samples, cluster_selection_epsilon=self.cluster_selection_epsilon,
                              cluster_selection_method=self.cluster_selection_method, metric=self.metric,
                              copy=True).fit(Xf)
        except ValueError as exc:
            raise DeepclustError(f"HDBSCAN could not be fitted: {exc}") from exc
        self.labels_ = model.labels_.astype(np.int64)
        self.probabilities_ = model.probabilities_.astype(np.float32)
        self.n_found_ = int(self.labels_.max() + 1) if self.labels_.size else 0
        # kept for predict (nearest training point); not needed with precomputed dissimilarities
        self.X_fit_ = None if self.metric == "precomputed" else np.ascontiguousarray(Xf, dtype=np.float32)
        self.timings_ = {"fit": time.perf_counter() - t0}

    def _predict(self, X: np.ndarray) -> np.ndarray:
        Xf = _flat(X)
        if self.metric == "precomputed":
            nearest = np.argmin(Xf, axis=1)
        else:
            nearest = _nearest(Xf, self.X_fit_, self.metric)
        return np.asarray(self.labels_)[nearest]

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        labels = self._predict(X)
        k = self.n_clusters_
        proba = np.zeros((len(labels), k), dtype=np.float32)
        if k == 0:
            return proba
        noise = labels < 0
        proba[np.flatnonzero(~noise), labels[~noise]] = 1.0
        proba[noise] = 1.0 / k
        return proba


# ---------------------------------------------------------------------------------- Agglomerative
class AgglomerativeClustering(_NearestCentroid, BaseClusterer):
    """Agglomerative clustering (:class:`sklearn.cluster.AgglomerativeClustering`), Ward linkage by default.

    Ward needs the full pairwise distance matrix: O(n²) memory (about 1.6 GB at n = 20,000) and
    more than O(n²) time. Above ``max_samples`` points (default 20,000; ``None`` = never), the
    hierarchy is built on a random subsample of ``max_samples`` points and every other point is
    assigned to the nearest cluster centroid. ``cluster_centers_`` are the centroids of the
    (subsample's) clusters; ``predict`` and ``transform`` use them (nearest centroid, Euclidean
    distances), so ``predict`` on training points can differ from ``labels_`` for a few points
    near cluster borders. ``predict_proba`` is one-hot.
    """

    _saved_arrays = ("labels_", "cluster_centers_")
    _saved_values = ("timings_", "n_fit_samples_")

    def __init__(self, n_clusters: int = 8, *, linkage: str = "ward", max_samples: int | None = 20_000,
                 device: Any = "auto", random_state: Any = 0):
        self.n_clusters = n_clusters
        self.linkage = linkage
        self.max_samples = max_samples
        self.device = device
        self.random_state = random_state

    def _fit(self, X: np.ndarray) -> None:
        from sklearn.cluster import AgglomerativeClustering as SkAgglo

        k = check_n_clusters(self.n_clusters)
        _check_max_samples(self.max_samples, k)
        if self.linkage not in ("ward", "complete", "average", "single"):
            raise DeepclustError(f"linkage must be 'ward', 'complete', 'average' or 'single', got {self.linkage!r}")
        Xf = _flat(X)
        sub = _subsample(Xf.shape[0], self.max_samples, self.random_state)
        Xs = Xf if sub is None else Xf[sub]
        t0 = time.perf_counter()
        sub_labels = SkAgglo(n_clusters=k, linkage=self.linkage).fit_predict(Xs)
        t1 = time.perf_counter()
        self.cluster_centers_ = centroids(Xs, sub_labels, k)
        if sub is None:
            labels = sub_labels.astype(np.int64)
        else:
            labels = _nearest(Xf, self.cluster_centers_)
            labels[sub] = sub_labels
        self.labels_ = labels
        self.n_fit_samples_ = int(Xs.shape[0])
        self.timings_ = {"fit": t1 - t0, "labels": time.perf_counter() - t1}


# ---------------------------------------------------------------------------------- KMedoids
class KMedoids(BaseClusterer):
    """k-medoids by FasterPAM (Schubert & Rousseeuw 2021; the ``kmedoids`` package).

    ``metric``: ``"euclidean"`` (default), any metric of :func:`sklearn.metrics.pairwise_distances`
    (``"manhattan"``, ``"cosine"``, ...), or ``"precomputed"``: ``X`` is then a square (n × n)
    dissimilarity matrix, and ``predict`` takes the dissimilarities of new points to the training
    points, shape (m, n_train).

    The dissimilarity matrix is O(n²) (float32): above ``max_samples`` points (default 10,000,
    about 400 MB; not for ``"precomputed"``) FasterPAM runs on a random subsample (CLARA-style)
    and every point is then assigned to its nearest medoid. ``medoid_indices_`` index the full
    training data; ``cluster_centers_`` are the medoids themselves (not for ``"precomputed"``).
    ``inertia_`` is the sum of dissimilarities to the medoid (FasterPAM's loss; on the subsample
    when one is used). ``predict`` = nearest medoid; ``transform`` = dissimilarities to the medoids;
    ``predict_proba`` is one-hot.
    """

    _saved_arrays = ("labels_", "medoid_indices_", "cluster_centers_")
    _saved_values = ("inertia_", "n_iter_", "converged_", "timings_")

    def __init__(self, n_clusters: int = 8, *, metric: str = "euclidean", init: str = "build", max_iter: int = 300,
                 max_samples: int | None = 10_000, device: Any = "auto", random_state: Any = 0):
        self.n_clusters = n_clusters
        self.metric = metric
        self.init = init
        self.max_iter = max_iter
        self.max_samples = max_samples
        self.device = device
        self.random_state = random_state

    def _fit(self, X: np.ndarray) -> None:
        import kmedoids
        from sklearn.metrics import pairwise_distances

        k = check_n_clusters(self.n_clusters)
        _check_max_samples(self.max_samples, k)
        if self.init not in ("build", "random", "first"):
            raise DeepclustError(f"init must be 'build', 'random' or 'first', got {self.init!r}")
        Xf = _flat(X)
        n = Xf.shape[0]
        seed = None if self.random_state is None else int(np.random.default_rng(self.random_state).integers(2**31))
        t0 = time.perf_counter()
        if self.metric == "precomputed":
            if Xf.shape[0] != Xf.shape[1]:
                raise DeepclustError(f"metric='precomputed' needs a square dissimilarity matrix, got shape {Xf.shape}")
            if (Xf < 0).any():
                raise DeepclustError("a precomputed dissimilarity matrix must not contain negative values")
            sub, diss = None, np.ascontiguousarray(Xf, dtype=np.float32)
        else:
            sub = _subsample(n, self.max_samples, self.random_state)
            Xs = Xf if sub is None else Xf[sub]
            try:
                diss = pairwise_distances(Xs, metric=self.metric).astype(np.float32, copy=False)
            except (ValueError, TypeError) as exc:
                raise DeepclustError(f"unknown or unusable metric {self.metric!r} for KMedoids: {exc}") from exc
        t1 = time.perf_counter()
        res = kmedoids.fasterpam(diss, k, max_iter=self.max_iter, init=self.init, random_state=seed)
        t2 = time.perf_counter()
        medoids = np.asarray(res.medoids, dtype=np.int64)
        self.inertia_ = float(res.loss)
        self.n_iter_ = int(res.n_iter)
        self.converged_ = self.n_iter_ < int(self.max_iter)
        if not self.converged_:
            warnings.warn(f"KMedoids stopped at max_iter = {self.max_iter} swap passes while medoids still changed; "
                          "raise max_iter (metrics.json records converged: false)", ConvergenceWarning, stacklevel=3)
        if sub is None:
            self.medoid_indices_ = medoids
            labels = np.asarray(res.labels, dtype=np.int64)
        else:
            self.medoid_indices_ = sub[medoids]
        self.cluster_centers_ = None if self.metric == "precomputed" else np.ascontiguousarray(Xf[self.medoid_indices_])
        if sub is not None:
            labels = self._predict(Xf)
        self.labels_ = labels
        self.timings_ = {"distances": t1 - t0, "fit": t2 - t1, "labels": time.perf_counter() - t2}

    def _set_state(self, arrays: dict[str, np.ndarray], values: dict[str, Any]) -> None:
        super()._set_state(arrays, values)
        if "cluster_centers_" not in arrays:
            self.cluster_centers_ = None

    def _dissimilarities(self, X: np.ndarray) -> np.ndarray:
        from sklearn.metrics import pairwise_distances

        Xf = _flat(X)
        if self.metric == "precomputed":
            return Xf[:, np.asarray(self.medoid_indices_)]
        return pairwise_distances(Xf, self.cluster_centers_, metric=self.metric)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        if self.metric == "euclidean":
            return _nearest(_flat(X), self.cluster_centers_)
        return np.argmin(self._dissimilarities(X), axis=1)

    def _transform(self, X: np.ndarray) -> np.ndarray:
        return self._dissimilarities(X)
