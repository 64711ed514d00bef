"""A few labels spread over the UMAP layout: label spreading on the layout's K-NN graph.

Where UMAP + k-means or UMAP + a Gaussian mixture is the best label-free clustering (digits, pen
strokes, autoencoder embeddings), the layout's clusters are already compact, and what the few
labels have to fix is which of them belong together: two classes merged into one blob, one class
split in two, a blob given to the wrong side. Methods that fit prototypes (seeded k-means, Basu,
Banerjee & Mooney, ICML 2002; transductive few-shot clustering, Ziko et al. 2021) keep one centre
per class and so cannot separate two classes that share a blob; label spreading can, since it
follows the graph, not a centre. :class:`ManifoldLabelSpreading`:

1. lays the samples out by UMAP without labels (McInnes, Healy & Melville, arXiv 1802.03426;
   ``min_dist`` 0, 10 dimensions: the layout of ``deepclust run``'s search, shared with it);
2. spreads the labels over the symmetric K-NN graph of that layout by label spreading (Zhou,
   Bousquet, Lal, Weston & Schölkopf, "Learning with Local and Global Consistency", NIPS 2004),
   ``F ← α S F + (1 − α) Y`` with ``S = D^{-1/2} W D^{-1/2}``, ``α`` = 0.99 as in the paper
   (scikit-learn's ``LabelSpreading``, K = UMAP's ``n_neighbors``);
3. gives each sample the class of the largest entry of its row of ``F``; labelled samples keep their
   label. UMAP with ``min_dist`` 0 often breaks a class into several pieces that share no K-NN edge
   (two moons of 1,000 points: 7-9 pieces); a sample in a piece that holds no labelled sample, which
   the labels therefore never reach, takes its cluster from constrained k-means in the layout (Basu et
   al. 2002: centres at the labelled classes' means, further centres k-means++ style, the labelled
   samples held in their class).

Semi-supervised UMAP (``fit(X, y)`` with ``target_metric="categorical"``) was tried first: with 1 %
of the samples labelled it changes only the graph edges between two labelled samples (about 0.15 of
a point's 15 neighbours), and its layout clustered as the unsupervised one (pendigits, optdigits:
the same ACC to 0.001), so the labels act after the layout, not in it.

Classes with no labelled sample (fewer classes labelled than ``n_clusters``, or no labels at all):
the members of the clusters constrained k-means finds for them are seeds of step 2 like labelled
samples. With no labels at all the method is k-means on the UMAP layout, smoothed by the spreading.

New samples are placed in the layout from the saved training points
(:func:`deepclust.reduction.place`) and take the mean of the spread label distributions of their
``n_neighbors`` nearest training points in the layout (scikit-learn's induction for the K-NN kernel).
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import torch

from deepclust.engines.constrained import clamped_lloyd, seeded_start
from deepclust.engines.kmeans import _torch_generator
from deepclust.engines.neighbors import neighbour_mean
from deepclust.errors import DeepclustError
from deepclust.reduction import keep_anchors, place, umap_layout
from deepclust.supervision import SemiSupervisedClusterer

__all__ = ["ManifoldLabelSpreading"]


class ManifoldLabelSpreading(SemiSupervisedClusterer):
    """UMAP layout (without labels) → label spreading of the partial labels over its K-NN graph
    (Zhou et al., NIPS 2004); see the module notes.

    ``fit(X, y)`` with ``y[i]`` a class id, ``-1`` for unlabelled samples. Cluster ``j`` is class
    ``classes_[j]`` for ``j < len(classes_)``; further clusters (classes no sample is labelled with)
    come from constrained k-means in the layout.

    Parameters: ``n_components``, ``n_neighbors`` (also the K of the spreading graph), ``min_dist``:
    UMAP settings; ``alpha``: how far labels spread (0 < α < 1; the paper's 0.99); ``max_iter``: of the
    spreading; ``max_anchors``: training points kept to place new ones.

    Attributes: ``labels_``, ``classes_``, ``label_distributions_`` (``F``, rows normalised),
    ``n_iter_`` (spreading iterations), ``timings_``, ``anchors_``, ``anchor_layout_``,
    ``anchor_distributions_``.
    """

    _takes = ("labels",)
    _saved_arrays = ("labels_", "classes_", "anchors_", "anchor_layout_", "anchor_distributions_")
    _saved_values = ("n_iter_", "timings_", "n_labelled_", "n_must_link_", "n_cannot_link_")
    _min_samples = 2  # a neighbourhood graph needs neighbours

    def __init__(self, n_clusters: int = 8, *, n_components: int = 10, n_neighbors: int = 15, min_dist: float = 0.0,
                 alpha: float = 0.99, max_iter: int = 1000, max_anchors: int = 20_000, device: Any = "auto",
                 random_state: int | None = 0):
        self.n_clusters = n_clusters
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.alpha = alpha
        self.max_iter = max_iter
        self.max_anchors = max_anchors
        self.device = device
        self.random_state = random_state

    def _check(self) -> None:
        a = self.alpha
        if isinstance(a, bool) or not isinstance(a, (int, float, np.number)) or not 0 < a < 1:
            raise DeepclustError(f"alpha must be a number between 0 and 1 (exclusive), got {a!r}")
        for name in ("max_iter", "max_anchors", "n_neighbors"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise DeepclustError(f"{name} must be a whole number >= 1, got {v!r}")

    def _fit(self, X: np.ndarray) -> None:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.semi_supervised import LabelSpreading

        self._check()
        k = int(self.n_clusters)
        t0 = time.perf_counter()
        layout = umap_layout(X, n_components=self.n_components, n_neighbors=self.n_neighbors,
                             min_dist=self.min_dist, random_state=self.random_state)
        self.timings_ = {"umap": time.perf_counter() - t0}
        t0 = time.perf_counter()
        found = self._constrained_kmeans(layout, k)
        given = self._supervision.y
        labelled = np.zeros(len(X), bool) if given is None else given >= 0
        # the seeds: labelled samples (cluster j = class classes_[j]), and the members of the clusters no class is
        # labelled with
        seeds = np.where(labelled | (found >= len(self.classes_)), found, -1)
        spreading = LabelSpreading(kernel="knn", n_neighbors=min(int(self.n_neighbors), len(X) - 1),
                                   alpha=float(self.alpha), max_iter=int(self.max_iter))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # F after max_iter steps is still a spreading
            spreading.fit(layout, seeds)
        F = np.zeros((len(X), k))
        F[:, spreading.classes_] = spreading.label_distributions_
        unreached = F.sum(1) == 0  # in a component of the graph that holds no seed
        F[unreached] = np.eye(k)[found[unreached]]
        labels = np.where(labelled, found, F.argmax(1))  # labelled samples keep their class
        self.timings_["spread"] = time.perf_counter() - t0
        self.labels_ = labels.astype(np.int64)
        self.label_distributions_ = F.astype(np.float32)
        self.n_iter_ = int(spreading.n_iter_)
        self.anchors_, self.anchor_layout_, keep = keep_anchors(X, layout, int(self.max_anchors), self.random_state)
        self.anchor_distributions_ = self.label_distributions_ if keep is None else self.label_distributions_[keep]

    def _constrained_kmeans(self, layout: np.ndarray, k: int) -> np.ndarray:
        """Clusters of constrained k-means in the layout (Basu et al. 2002): centre ``j`` starts at the mean of
        the labelled samples of ``classes_[j]``, further centres k-means++ style; labelled samples stay put."""
        Lt = torch.from_numpy(np.ascontiguousarray(layout, dtype=np.float32))
        gen = _torch_generator(int(np.random.default_rng(self.random_state).integers(2**62)), Lt.device)
        self.classes_, fixed, fixed_labels, C = seeded_start(Lt, self._supervision.y, k, gen)
        return clamped_lloyd(Lt, C, fixed, fixed_labels)[1].numpy()

    def _neighbour_distributions(self, X: np.ndarray) -> np.ndarray:
        Z = place(X, self.anchors_, self.anchor_layout_, n_neighbors=self.n_neighbors)
        P = neighbour_mean(self.anchor_layout_, Z, self.anchor_distributions_, self.n_neighbors)
        return P / np.maximum(P.sum(1, keepdims=True), 1e-12)

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self._neighbour_distributions(X)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return self._neighbour_distributions(X).argmax(1).astype(np.int64)

    def _transform(self, X: np.ndarray) -> np.ndarray:
        """UMAP coordinates of (new) samples, placed from the saved training points."""
        return place(X, self.anchors_, self.anchor_layout_, n_neighbors=self.n_neighbors)
