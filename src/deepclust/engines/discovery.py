"""Novel-class discovery: labelled known classes, and novel classes to find among the unlabelled samples.

Troisemaine, Reiffers-Masson, Gosselin, Lemaire & Vaton, "A Practical Approach to Novel Class
Discovery in Tabular Data", Data Mining and Knowledge Discovery 2024 (arXiv 2311.05440; authors'
code: github.com/ColinTr/PracticalNCD). The shared parts of that paper live here:

* :func:`ncd_kmeans` — *NCD k-means* (their Section 3.2): the known classes' means take part in the
  k-means++ draw of the novel centres (so that these start away from the known classes), then only
  the novel centres move, by Lloyd iterations on the unlabelled samples; best of ``n_init``.
* :func:`spectral_embedding` — the embedding of *NCD spectral clustering* (Section 3.3): a Gaussian
  affinity whose width makes the longest edge of the minimum spanning tree weigh ``min_dist``, the
  normalised Laplacian's first non-trivial eigenvectors, for the known and unlabelled samples together.
* :func:`estimate_n_novel` — the number of novel classes as the maximum of the silhouette coefficient
  of k-means on the unlabelled samples over k = 2 … ``k_max`` (their Section 5; silhouette was the
  best of the six indices they compared).
* :func:`tune_on_hidden_classes` — their hyper-parameter search (Section 4): k-fold cross-validation
  over the *known* classes; each fold hides some known classes among the unlabelled samples, and a
  setting is scored by the clustering accuracy on those hidden classes only. The novel classes'
  labels are never used (they are not known).

The estimators follow the NCD setting: ``fit(X, y)`` with ``y[i]`` a known class for a labelled sample
and ``-1`` for an unlabelled one; the unlabelled samples are taken to belong to the novel classes
(for unlabelled data that also hold known classes, use :class:`deepclust.engines.gpc.GPC`). A
labelled sample keeps its class; the novel clusters get the ids after the largest known id
(``novel_classes_``). ``n_novel="auto"`` estimates their number; ``n_clusters`` (known + novel), when
given, fixes it. ``predict`` on new samples assigns the nearest centre, known or novel.
"""

from __future__ import annotations

import itertools
import math
import warnings
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from deepclust import metrics
from deepclust.device import resolve_device
from deepclust.engines.constrained import complete_centers
from deepclust.engines.kmeans import KMeans, _sq_distances, _to_device, _torch_generator
from deepclust.errors import DeepclustError
from deepclust.supervision import SemiSupervisedClusterer

__all__ = ["class_means", "NCDKMeans", "NearestCentre", "NCDSpectralClustering", "estimate_n_novel", "ncd_kmeans", "spectral_embedding",
           "tune_on_hidden_classes"]


# ---------------------------------------------------------------------------------------------- shared parts
def class_means(Z: np.ndarray, codes: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes × d) means of the rows of ``Z`` by class code 0 … n_classes-1 (0 rows when there is none)."""
    if not n_classes:
        return np.zeros((0, Z.shape[1]), np.float32)
    return np.stack([Z[codes == c].mean(0) for c in range(n_classes)]).astype(np.float32)


def ncd_kmeans(Z: np.ndarray, known_centres: np.ndarray, n_novel: int, *, n_init: int = 10, random_state: int = 0,
               device: Any = "cpu") -> tuple[np.ndarray, np.ndarray, float]:
    """NCD k-means of the unlabelled samples ``Z``: (novel centres, labels 0 … n_novel-1, inertia).

    The novel centres are drawn k-means++ style after the ``known_centres`` (m × d, m may be 0), then
    Lloyd iterations move the novel centres only; the run of least inertia out of ``n_init`` is kept."""
    dev = resolve_device(device)
    Zt = _to_device(np.ascontiguousarray(Z, dtype=np.float32), dev)
    known = torch.as_tensor(np.asarray(known_centres, np.float32).reshape(-1, Z.shape[1]), device=dev)
    rng = np.random.default_rng(random_state)
    best: tuple[np.ndarray, np.ndarray, float] | None = None
    for _ in range(int(n_init)):
        seed = int(rng.integers(2**31))
        start = complete_centers(Zt, known, len(known) + n_novel, _torch_generator(seed, dev))[len(known):]
        km = KMeans(n_novel, init=start.cpu().numpy(), device=dev, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            km.fit(Z)
        if best is None or km.inertia_ < best[2]:
            best = (km.cluster_centers_, km.labels_, float(km.inertia_))
    assert best is not None
    return best


def estimate_n_novel(Z: np.ndarray, k_max: int = 30, *, random_state: int = 0, sample_size: int = 4000,
                     device: Any = "cpu") -> tuple[int, dict[int, float]]:
    """(k of the largest silhouette, the silhouette curve) of k-means on ``Z`` for k = 2 … ``k_max``
    (Troisemaine et al., Section 5). The silhouette is computed on at most ``sample_size`` samples."""
    k_max = min(int(k_max), len(Z) - 1)
    if k_max < 2:
        return 1, {}
    curve = {}
    for k in range(2, k_max + 1):
        km = KMeans(k, n_init=3, device=device, random_state=random_state)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            labels = km.fit(Z).labels_
        score = metrics.silhouette(Z, labels, sample_size=sample_size, random_state=random_state)
        curve[k] = -1.0 if math.isnan(score) else score
    return max(curve, key=curve.get), curve


def spectral_embedding(X: np.ndarray, n_components: int, min_dist: float = 0.6) -> np.ndarray:
    """The first ``n_components`` non-trivial eigenvectors of the normalised Laplacian of a Gaussian
    affinity on ``X`` whose width σ makes the longest edge of the minimum spanning tree (in squared
    distance) weigh ``min_dist``: exp(-d²max / 2σ²) = min_dist (Troisemaine et al., Section 3.3).
    Dense: quadratic memory in the number of samples."""
    from scipy.sparse.csgraph import minimum_spanning_tree
    from scipy.sparse.linalg import eigsh

    Xt = torch.as_tensor(np.asarray(X, np.float32).reshape(len(X), -1))
    d2 = _sq_distances(Xt, Xt, len(Xt)).double().clamp_(min=0).numpy()
    np.fill_diagonal(d2, 0.0)
    longest = float(minimum_spanning_tree(d2).max())  # zero entries are absent edges: duplicates stay joined
    sigma2 = max(longest, 1e-12) / (-2.0 * math.log(min_dist))
    A = np.exp(-d2 / (2.0 * sigma2))
    np.fill_diagonal(A, 0.0)
    deg = A.sum(1)
    inv_sqrt = np.where(deg > 0, 1.0 / np.sqrt(np.where(deg > 0, deg, 1.0)), 0.0)
    M = A * inv_sqrt[:, None] * inv_sqrt[None, :]  # I - L: its largest eigenvectors are L's smallest
    m = min(int(n_components) + 1, len(X) - 1)
    values, vectors = eigsh(M, k=m, which="LA", v0=np.ones(len(X)))
    order = np.argsort(-values)
    return vectors[:, order[1:]].astype(np.float32)


def tune_on_hidden_classes(estimator: "_DiscoveryBase", param_grid: dict[str, list[Any]], X: np.ndarray,
                           y: np.ndarray, *, n_folds: int = 3, random_state: int = 0
                           ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Troisemaine et al.'s cross-validation for NCD: the known classes of ``y`` (-1 = unlabelled) are
    shuffled into ``n_folds`` groups; for every setting of ``param_grid`` and every fold, the fold's
    classes are hidden (made unlabelled, beside the novel samples), the estimator is fitted, and its
    clustering accuracy on the hidden classes' samples is recorded. Returns the setting of the best
    mean accuracy and every setting's record. Needs at least two known classes."""
    known = np.unique(y[y >= 0])
    if len(known) < 2:
        raise DeepclustError(f"tuning hides some known classes in turn and needs at least 2 known classes; "
                             f"the labels hold {len(known)}")
    rng = np.random.default_rng(random_state)
    folds = [f for f in np.array_split(rng.permutation(known), min(int(n_folds), len(known))) if len(f)]
    records = []
    names = sorted(param_grid)
    for values in itertools.product(*(param_grid[n] for n in names)):
        params = dict(zip(names, values))
        accs = []
        for hidden in folds:
            mask = np.isin(y, hidden)
            y_cv = np.where(mask, -1, y)
            est = clone(estimator).set_params(tune=False, **params)
            if isinstance(estimator.n_novel, (int, np.integer)) and estimator.n_clusters is None:
                est.set_params(n_novel=int(estimator.n_novel) + len(hidden))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est.fit(X, y_cv)
            accs.append(metrics.accuracy(y[mask], est.labels_[mask]))
        records.append({"params": params, "hidden_acc": float(np.mean(accs)), "fold_accs": [float(a) for a in accs]})
    best = max(records, key=lambda r: r["hidden_acc"])
    return dict(best["params"]), records


# ---------------------------------------------------------------------------------------------- estimators
class NearestCentre:
    """Prediction of a model whose classes ``classes_`` have centres ``cluster_centers_`` in the space
    ``_space(X)``: the class of the nearest centre; soft assignments from the squared distances."""

    def _predict(self, X: np.ndarray) -> np.ndarray:
        Z = torch.as_tensor(self._space(X))
        d = _sq_distances(Z, torch.as_tensor(self.cluster_centers_), len(Z))
        return self.classes_[d.argmin(1).numpy()]

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        Z = torch.as_tensor(self._space(X))
        d = _sq_distances(Z, torch.as_tensor(self.cluster_centers_), len(Z)).double()
        scale = d.min(1).values.mean().clamp(min=1e-12)
        p = torch.softmax(-d / scale, dim=1).numpy()
        out = np.zeros((len(X), self.n_clusters_), np.float32)
        out[:, self.classes_] = p
        return out

    @property
    def n_clusters_(self) -> int:
        return int(self.classes_.max()) + 1


class _DiscoveryBase(NearestCentre, SemiSupervisedClusterer):
    """Known classes from partial labels, the number of novel classes, the label ids, tuning and
    prediction shared by the NCD estimators. Subclasses implement ``_space`` (the clustering space of
    the fitted model, for new samples) and ``_discover`` (fit; returns the space of the training
    samples, the number of novel classes used and the novel labels of the unlabelled samples)."""

    _takes = ("labels",)
    _requires_n_clusters = False
    _min_samples = 3
    _max_input_dims = 2
    _saved_arrays = ("labels_", "cluster_centers_", "classes_", "known_classes_", "novel_classes_")
    _saved_values = ("n_novel_", "n_novel_curve_", "best_params_", "n_labelled_", "n_must_link_", "n_cannot_link_")
    #: hyper-parameters searched by ``tune=True`` when ``param_grid`` is None
    default_grid: ClassVar[dict[str, list[Any]]] = {}

    def _check_n_novel(self, n_known: int, n_unlabelled: int) -> int | None:
        """The number of novel classes asked for (None: estimate it)."""
        if self.n_clusters is not None:
            if isinstance(self.n_clusters, bool) or not isinstance(self.n_clusters, (int, np.integer)):
                raise DeepclustError(f"n_clusters must be a whole number or None, got {self.n_clusters!r}")
            n_novel = int(self.n_clusters) - n_known
            if n_novel < 1:
                raise DeepclustError(f"n_clusters={self.n_clusters} leaves no novel class beside the {n_known} "
                                     "labelled classes; give n_clusters > the number of known classes")
        elif isinstance(self.n_novel, str) and self.n_novel == "auto":
            return None
        elif isinstance(self.n_novel, bool) or not isinstance(self.n_novel, (int, np.integer)) or self.n_novel < 1:
            raise DeepclustError(f"n_novel must be 'auto' or a whole number >= 1, got {self.n_novel!r}")
        else:
            n_novel = int(self.n_novel)
        if n_novel > n_unlabelled:
            raise DeepclustError(f"{n_novel} novel classes were asked for but only {n_unlabelled} samples are "
                                 "unlabelled")
        return n_novel

    def _fit(self, X: np.ndarray) -> None:
        y = self._supervision.y
        y = np.full(len(X), -1, np.int64) if y is None else y
        unlabelled = y < 0
        if unlabelled.sum() < 2:
            raise DeepclustError(f"{type(self).__name__} discovers novel classes among the unlabelled samples, but "
                                 f"{int(unlabelled.sum())} sample(s) are unlabelled")
        known = np.unique(y[~unlabelled])
        n_novel = self._check_n_novel(len(known), int(unlabelled.sum()))
        self.best_params_ = None
        if self.tune:
            grid = self.param_grid if self.param_grid is not None else self.default_grid
            self.best_params_, _ = tune_on_hidden_classes(self, grid, X, y, n_folds=self.cv_folds,
                                                          random_state=self.random_state)
        codes = np.searchsorted(known, y[~unlabelled])
        Z, self.n_novel_, self.n_novel_curve_, novel_labels, novel_centres = self._discover(
            X, ~unlabelled, codes, len(known), n_novel)
        first_novel = int(known.max()) + 1 if len(known) else 0
        self.known_classes_ = known.astype(np.int64)
        self.novel_classes_ = np.arange(first_novel, first_novel + self.n_novel_, dtype=np.int64)
        self.classes_ = np.concatenate([self.known_classes_, self.novel_classes_])
        known_centres = class_means(Z[~unlabelled], codes, len(known))
        self.cluster_centers_ = np.concatenate([known_centres, novel_centres]).astype(np.float32)
        labels = y.copy()
        labels[unlabelled] = self.novel_classes_[novel_labels]
        self.labels_ = labels

    def _hp(self, name: str) -> Any:
        """A hyper-parameter as used by the fit: the tuned value when ``tune`` chose one."""
        return (self.best_params_ or {}).get(name, getattr(self, name))

    def _estimate(self, Z_unlabelled: np.ndarray) -> tuple[int, dict[int, float]]:
        return estimate_n_novel(Z_unlabelled, self.k_max, random_state=self.random_state, device=self.device)

    def predict_novel(self, X: Any) -> np.ndarray:
        """The nearest *novel* class of every sample of ``X`` (for new samples known to be novel, as the
        paper's evaluation on its test split)."""
        Z = torch.as_tensor(self._space(self._validate_new_input(X)))
        novel = torch.as_tensor(self.cluster_centers_[len(self.known_classes_):])
        return self.novel_classes_[_sq_distances(Z, novel, len(Z)).argmin(1).numpy()]

    def _space(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _discover(self, X, labelled, codes, n_known, n_novel):  # pragma: no cover - abstract
        raise NotImplementedError


class NCDKMeans(_DiscoveryBase):
    """NCD k-means (Troisemaine et al., DMKD 2024, Section 3.2) on the given features; see the module notes.

    Parameters: ``n_novel`` (``"auto"``: the silhouette maximum over 2 … ``k_max``), ``n_clusters``
    (known + novel; fixes ``n_novel``), ``n_init`` (restarts), ``tune`` / ``param_grid`` / ``cv_folds``
    (hidden-class cross-validation; NCD k-means has no hyper-parameter of its own, so a grid must be given).

    Attributes: ``labels_``, ``classes_`` (the class of each centre: known ones, then
    ``novel_classes_``), ``cluster_centers_``, ``n_novel_``, ``n_novel_curve_`` (silhouette by k).
    """

    def __init__(self, n_clusters: int | None = None, *, n_novel: int | str = "auto", n_init: int = 10,
                 k_max: int = 30, tune: bool = False, param_grid: dict | None = None, cv_folds: int = 3,
                 device: Any = "auto", random_state: int = 0):
        self.n_clusters = n_clusters
        self.n_novel = n_novel
        self.n_init = n_init
        self.k_max = k_max
        self.tune = tune
        self.param_grid = param_grid
        self.cv_folds = cv_folds
        self.device = device
        self.random_state = random_state

    def _space(self, X: np.ndarray) -> np.ndarray:
        return X.reshape(len(X), -1)

    def _discover(self, X, labelled, codes, n_known, n_novel):
        Z = self._space(X)
        known_centres = class_means(Z[labelled], codes, n_known)
        curve = {}
        if n_novel is None:
            n_novel, curve = self._estimate(Z[~labelled])
        centres, labels, _ = ncd_kmeans(Z[~labelled], known_centres, n_novel, n_init=self.n_init,
                                        random_state=self.random_state, device=self.device)
        return Z, n_novel, curve, labels, centres


class NCDSpectralClustering(_DiscoveryBase):
    """NCD spectral clustering (Troisemaine et al., DMKD 2024, Section 3.3): the spectral embedding of
    the known and unlabelled samples together (:func:`spectral_embedding`), then NCD k-means in it with
    the known classes' means. ``min_dist`` sets the affinity's width; ``n_components`` eigenvectors
    (None: known + novel classes). The paper tunes both by :func:`tune_on_hidden_classes`
    (``tune=True``). With ``n_novel="auto"`` the count is estimated in the embedding (whose size is
    then the known classes plus the silhouette estimate on the given features). The embedding is
    transductive: ``predict`` on new samples uses the nearest centre in the given feature space.
    Dense affinity: quadratic memory (about 10,000 samples at most).
    """

    default_grid: ClassVar[dict[str, list[Any]]] = {"min_dist": [0.2, 0.4, 0.6, 0.8]}

    def __init__(self, n_clusters: int | None = None, *, n_novel: int | str = "auto", min_dist: float = 0.6,
                 n_components: int | None = None, n_init: int = 10, k_max: int = 30, tune: bool = False,
                 param_grid: dict | None = None, cv_folds: int = 3, device: Any = "auto", random_state: int = 0):
        self.n_clusters = n_clusters
        self.n_novel = n_novel
        self.min_dist = min_dist
        self.n_components = n_components
        self.n_init = n_init
        self.k_max = k_max
        self.tune = tune
        self.param_grid = param_grid
        self.cv_folds = cv_folds
        self.device = device
        self.random_state = random_state

    def _discover(self, X, labelled, codes, n_known, n_novel):
        min_dist = float(self._hp("min_dist"))
        if not 0 < min_dist < 1:
            raise DeepclustError(f"min_dist must be between 0 and 1 (exclusive), got {min_dist!r}")
        if len(X) > 20_000:
            raise DeepclustError(f"ncd-spectral builds a dense {len(X)}×{len(X)} affinity; use at most 20,000 "
                                 "samples, or ncd-kmeans / pbn")
        flat = X.reshape(len(X), -1)
        curve = {}
        n_comp = self._hp("n_components")
        if n_comp is None:
            n_comp = n_known + (n_novel if n_novel is not None else self._estimate(flat[~labelled])[0])
        E = spectral_embedding(flat, n_comp, min_dist)
        if n_novel is None:
            n_novel, curve = self._estimate(E[~labelled])
        known_centres = class_means(E[labelled], codes, n_known)
        _, labels, _ = ncd_kmeans(E[~labelled], known_centres, n_novel, n_init=self.n_init,
                                  random_state=self.random_state, device=self.device)
        # centres for new samples: class means in the given feature space
        novel_centres = np.stack([flat[~labelled][labels == j].mean(0) if (labels == j).any()
                                  else flat[~labelled].mean(0) for j in range(n_novel)])
        return flat, n_novel, curve, labels, novel_centres

    def _space(self, X: np.ndarray) -> np.ndarray:
        return X.reshape(len(X), -1)
