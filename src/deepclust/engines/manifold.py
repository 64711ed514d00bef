"""Clustering the UMAP layout of any features: N2D's manifold step without its autoencoder.

McConville et al. (ICPR 2020) showed that a Gaussian mixture on a UMAP layout of an embedding
(``min_dist`` = 0, so that clusters stay compact) clusters far better than the embedding itself;
BERTopic does the same for sentence embeddings. :class:`ManifoldClustering` applies that step to
whatever features it is given (pixels, a table, MiniLM or EfficientNet embeddings): UMAP to
``n_components`` dimensions, then a Gaussian mixture (default) or k-means on the layout.
New points are placed by :func:`deepclust.reduction.place` from at most ``max_anchors`` training
points, which are saved with the model so that it reloads and predicts identically.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from deepclust.base import BaseClusterer
from deepclust.errors import DeepclustError
from deepclust.reduction import keep_anchors, place, umap_layout

CLUSTERERS = ("gmm", "kmeans")


class ManifoldClustering(BaseClusterer):
    """UMAP layout → Gaussian mixture or k-means (the manifold step of N2D, McConville et al. 2020).

    Parameters
    ----------
    n_clusters : number of clusters.
    clusterer : "gmm" (default; full covariances in the low-dimensional layout) or "kmeans".
    n_components, n_neighbors, min_dist, metric : UMAP settings (10, 15, 0.0, "euclidean").
    max_anchors : training points kept to place new points (a random subset above this size).
    device, random_state : as every method (UMAP and the mixture run on the CPU).
    """

    _saved_arrays = ("labels_", "anchors_", "anchor_layout_", "clusterer_state_")
    _saved_values = ("timings_", "clusterer_params_")
    _max_input_dims = 4
    _min_samples = 2  # a neighbourhood graph needs neighbours

    def __init__(self, n_clusters: int = 8, *, clusterer: str = "gmm", n_components: int = 10, n_neighbors: int = 15,
                 min_dist: float = 0.0, metric: str = "euclidean", max_anchors: int = 20_000, device: Any = "auto",
                 random_state: int | None = 0):
        self.n_clusters = n_clusters
        self.clusterer = clusterer
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.metric = metric
        self.max_anchors = max_anchors
        self.device = device
        self.random_state = random_state

    def _make_clusterer(self) -> BaseClusterer:
        if self.clusterer not in CLUSTERERS:
            raise DeepclustError(f"clusterer must be one of {CLUSTERERS}, got {self.clusterer!r}")
        if self.clusterer == "gmm":
            from deepclust.engines.classical import GaussianMixture

            return GaussianMixture(int(self.n_clusters), covariance_type="full", reg_covar=1e-4,
                                   random_state=self.random_state)
        from deepclust.engines.kmeans import KMeans

        return KMeans(int(self.n_clusters), device="cpu", random_state=self.random_state)

    def _fit(self, X: np.ndarray) -> None:
        t0 = time.perf_counter()
        layout = umap_layout(X, n_components=self.n_components, n_neighbors=self.n_neighbors,
                             min_dist=self.min_dist, metric=self.metric, random_state=self.random_state)
        self.timings_ = {"umap": time.perf_counter() - t0}
        self._fit_on_layout(X, layout)

    def fit_with_layout(self, X: Any, layout: np.ndarray) -> "ManifoldClustering":
        """Fit when the UMAP layout of ``X`` is already known (made with this model's UMAP settings), so
        that several candidates of a pipeline search share one layout."""
        X = self._validate_input(X)
        layout = np.asarray(layout, dtype=np.float32)
        if layout.shape != (len(X), int(self.n_components)):
            raise DeepclustError(f"layout has shape {layout.shape}; expected ({len(X)}, {self.n_components})")
        self.n_features_in_ = int(np.prod(X.shape[1:]))
        self.input_shape_ = tuple(int(s) for s in X.shape[1:])
        self.timings_ = {"umap": 0.0}
        self._fit_on_layout(X, layout)
        return self

    def _fit_on_layout(self, X: np.ndarray, layout: np.ndarray) -> None:
        t0 = time.perf_counter()
        model = self._make_clusterer().fit(layout)
        self.timings_["cluster"] = time.perf_counter() - t0
        self.labels_ = np.asarray(model.labels_, dtype=np.int64)
        self.anchors_, self.anchor_layout_, _ = keep_anchors(X, layout, self.max_anchors, self.random_state)
        self._store_clusterer(model)  # predictions go through the stored state: a reloaded model predicts the same

    # The inner clusterer's fitted arrays travel in one flat float64 array plus their shapes, so the
    # model folder stays one safetensors file and one config.
    def _store_clusterer(self, model: BaseClusterer) -> None:
        arrays, values = model._get_state()
        arrays.pop("labels_", None)
        names = sorted(arrays)
        self.clusterer_params_ = {"names": names, "shapes": [list(arrays[n].shape) for n in names],
                                  "dtypes": [str(arrays[n].dtype) for n in names], "values": values}
        self.clusterer_state_ = (np.concatenate([arrays[n].astype(np.float64).ravel() for n in names])
                                 if names else np.zeros(0))

    def _restored_clusterer(self) -> BaseClusterer:
        """The inner clusterer rebuilt from its stored state (cheap: k components in a small space);
        not cached, so that predicting leaves the estimator as it was."""
        spec, flat = self.clusterer_params_, np.asarray(self.clusterer_state_, dtype=np.float64)
        arrays, start = {}, 0
        for name, shape, dtype in zip(spec["names"], spec["shapes"], spec["dtypes"]):
            size = int(np.prod(shape))
            arrays[name] = flat[start:start + size].reshape(shape).astype(dtype)
            start += size
        model = self._make_clusterer()
        model._set_state(arrays, dict(spec["values"]))
        return model

    def layout(self, X: Any) -> np.ndarray:
        """UMAP coordinates of (new) samples, placed from the saved anchors."""
        X = self._validate_new_input(X)
        return place(X, self.anchors_, self.anchor_layout_, n_neighbors=self.n_neighbors)

    def _transform(self, X: np.ndarray) -> np.ndarray:
        return place(X, self.anchors_, self.anchor_layout_, n_neighbors=self.n_neighbors)

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self._restored_clusterer().predict_proba(self._transform(X))

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return self._restored_clusterer().predict(self._transform(X))
