"""Cluster, then label: the label-free clustering, its clusters named by the few labels.

The oldest semi-supervised use of clusters (the "cluster-then-label" of Chapelle, Schölkopf & Zien,
*Semi-Supervised Learning*, MIT Press 2006, §1.2.2, after the cluster assumption): cluster all the
samples without looking at the labels, then give each cluster a class. Here the clusters are those
of any method of the catalogue (by default ``umap``: UMAP layout + Gaussian mixture, the best single
label-free pipeline of ``deepclust run``'s benchmark), and the classes are matched one to one to the
clusters by the Hungarian method on the labelled samples' cluster × class counts (the matching that
scores a clustering, made from the given labels only); labelled samples keep their class.

Its use: where the label-free clustering is already right (digits, autoencoder embeddings: UMAP +
GMM at 0.95 ACC), methods that let a few labels pull prototypes or spread over a graph can do worse
than it; as a candidate of :class:`~deepclust.engines.fewlabels.FewLabelsAuto` it lets the
cross-validation keep the label-free answer where the labels say it is the best one.

New samples take the class most common among their ``n_neighbors`` nearest fitted samples in the
input space (the k-NN induction of the other transductive methods here).
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from deepclust.engines.neighbors import neighbour_mean
from deepclust.errors import DeepclustError
from deepclust.reduction import keep_anchors
from deepclust.supervision import SemiSupervisedClusterer

__all__ = ["ClusterThenLabel", "match_clusters"]


def match_clusters(clusters: np.ndarray, y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(classes, slot of every cluster): ``classes`` are the labelled classes (sorted), and cluster ``c``
    becomes cluster ``slot[c]``, one to one, maximising the labelled samples whose new cluster ``j`` is
    their class ``classes[j]`` (Hungarian method); clusters matched to no labelled class take the slots
    from ``len(classes)`` on."""
    labelled = y >= 0
    classes, codes = np.unique(y[labelled], return_inverse=True)
    counts = np.zeros((k, k))
    np.add.at(counts, (clusters[labelled], codes), 1)
    rows, cols = linear_sum_assignment(-counts)
    slot = np.empty(k, dtype=np.int64)
    slot[rows] = cols
    return classes.astype(np.int64), slot


class ClusterThenLabel(SemiSupervisedClusterer):
    """A label-free clustering (``method`` of the catalogue, with ``params``) whose clusters are matched
    one to one to the labelled classes on the labelled samples; see the module notes.

    ``fit(X, y)`` with ``y[i]`` a class id, ``-1`` for unlabelled samples. Cluster ``j`` is class
    ``classes_[j]`` for ``j < len(classes_)``; labelled samples keep their class.

    Parameters: ``method`` (a catalogue method that takes ``n_clusters`` and no supervision; default
    ``"umap"``), ``params`` (its hyper-parameters), ``n_neighbors`` and ``max_anchors`` (the k-NN
    induction for new samples).

    Attributes: ``labels_``, ``classes_``, ``cluster_labels_`` (the label-free clustering, before
    matching), ``agreement_`` (share of the labelled samples whose matched cluster is their class),
    ``anchors_``, ``anchor_labels_``.
    """

    _takes = ("labels",)
    _saved_arrays = ("labels_", "classes_", "cluster_labels_", "anchors_", "anchor_labels_")
    _saved_values = ("agreement_", "n_labelled_", "n_must_link_", "n_cannot_link_")
    _min_samples = 2

    def __init__(self, n_clusters: int = 8, *, method: str = "umap", params: dict[str, Any] | None = None,
                 n_neighbors: int = 15, max_anchors: int = 20_000, device: Any = "auto",
                 random_state: int | None = 0):
        self.n_clusters = n_clusters
        self.method = method
        self.params = params
        self.n_neighbors = n_neighbors
        self.max_anchors = max_anchors
        self.device = device
        self.random_state = random_state

    def _inner(self) -> Any:
        from deepclust.methods import get_method_info, make_method
        from deepclust.supervision import takes_supervision

        if not isinstance(self.method, str):
            raise DeepclustError(f"method must be the name of a catalogue method, got {self.method!r}")
        if self.params is not None and not isinstance(self.params, dict):
            raise DeepclustError(f"params must be a dict of the method's hyper-parameters, got {self.params!r}")
        info = get_method_info(self.method)
        if takes_supervision(info.load_class()) or info.name in ("hdbscan", "cluster-then-label"):
            raise DeepclustError(f"method {info.name!r} cannot be the clustering of cluster-then-label: it needs "
                                 "a method that clusters without supervision into n_clusters groups")
        takes_device = "device" in inspect.signature(info.load_class()).parameters
        return make_method(info.name, **{"n_clusters": int(self.n_clusters), "random_state": self.random_state,
                                         **({"device": self.device} if takes_device else {}), **(self.params or {})})

    def _fit(self, X: np.ndarray) -> None:
        for name in ("n_neighbors", "max_anchors"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise DeepclustError(f"{name} must be a whole number >= 1, got {v!r}")
        k = int(self.n_clusters)
        clusters = np.asarray(self._inner().fit(X).labels_, dtype=np.int64)
        if clusters.min() < 0 or clusters.max() >= k:
            raise DeepclustError(f"method {self.method!r} gave cluster ids outside 0…{k - 1}")
        y = self._supervision.y
        y = np.full(len(X), -1, dtype=np.int64) if y is None else y
        labelled = y >= 0
        self.classes_, slot = match_clusters(clusters, y, k)
        labels = slot[clusters]
        codes = np.searchsorted(self.classes_, y[labelled])
        self.agreement_ = float((labels[labelled] == codes).mean()) if labelled.any() else None
        labels[labelled] = codes  # labelled samples keep their class
        self.cluster_labels_ = clusters
        self.labels_ = labels
        flat = X.reshape(len(X), -1)
        self.anchors_, _, keep = keep_anchors(flat, flat, int(self.max_anchors), self.random_state)
        self.anchor_labels_ = labels if keep is None else labels[keep]

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        one_hot = np.eye(int(self.n_clusters), dtype=np.float32)[np.asarray(self.anchor_labels_)]
        return neighbour_mean(self.anchors_, X.reshape(len(X), -1), one_hot, int(self.n_neighbors)).astype(np.float32)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return self._predict_proba(X).argmax(1).astype(np.int64)
