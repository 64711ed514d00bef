"""N2D: "(Not too) deep clustering via clustering the local manifold of an autoencoded embedding".

McConville, Santos-Rodriguez, Piechocki, Craddock, ICPR 2020 (arXiv 1908.05968). An autoencoder
(DEC's d-500-500-2000-k, embedding size = number of clusters) is pretrained on reconstruction;
UMAP (umap-learn) learns the local manifold of its embedding (``n_components`` = k,
``n_neighbors`` = 20, ``min_dist`` = 0); a Gaussian mixture (full covariances) clusters the
UMAP coordinates.

New samples are placed in the UMAP layout by :func:`deepclust.reduction.place` (the
distance-weighted mean over their nearest training embeddings), so a saved model reloads and
predicts identically from plain arrays. ``labels_`` are the mixture's assignments of the training
points' own UMAP coordinates.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from deepclust.engines.classical import GaussianMixture
from deepclust.errors import DeepclustError
from deepclust.methods._autoencoder import AutoencoderClusterer
from deepclust.reduction import place, umap_layout
from deepclust.training import mark_interrupted


GMM_ARRAYS = ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_")


class N2D(AutoencoderClusterer):
    """Autoencoder → UMAP → Gaussian mixture (McConville et al., ICPR 2020).

    Parameters
    ----------
    n_clusters : number of clusters (also the embedding size and UMAP's dimension by default).
    umap_dim : UMAP output dimension (None: n_clusters).
    n_neighbors, min_dist, umap_metric : UMAP settings (20, 0.0, "euclidean").
    covariance_type : of the Gaussian mixture ("full").
    architecture, scaling, embedding_dim (None: n_clusters), hidden_dims, pretrain, schedule
    (``"paper"``: 1,000 pretraining epochs), pretrain_epochs, layerwise_epochs, layerwise_dropout, pretrain_lr, batch_size,
    cache_dir : the autoencoder and its pretraining (see :mod:`deepclust.methods._autoencoder`).
    mixed_precision, device, random_state : as every deep method.
    """

    _saved_arrays = ("labels_", "scale_shift_", "scale_", "train_embedding_", "train_umap_",
                     *(f"gmm_{name}" for name in GMM_ARRAYS))
    _saved_values = ("history_", "timings_", "architecture_", "scaling_", "interrupted_", "schedule_")
    _paper_pretrain_epochs = 1000

    def __init__(self, n_clusters: int = 10, *, umap_dim: int | None = None, n_neighbors: int = 20,
                 min_dist: float = 0.0, umap_metric: str = "euclidean", covariance_type: str = "full",
                 architecture: str = "mlp", scaling: str = "auto",
                 embedding_dim: int | None = None,
                 hidden_dims: Sequence[int] = (500, 500, 2000), pretrain: str = "end-to-end",
                 schedule: str = "budget", pretrain_epochs: int | None = None, layerwise_epochs: int = 50,
                 layerwise_dropout: float = 0.2,
                 pretrain_lr: float = 1e-3, batch_size: int = 256, cache_dir: str | None = None,
                 mixed_precision: bool | str = True, device: Any = "auto", random_state: int | None = 0):
        self.n_clusters = n_clusters
        self.umap_dim = umap_dim
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.umap_metric = umap_metric
        self.covariance_type = covariance_type
        self.architecture = architecture
        self.scaling = scaling
        self.embedding_dim = embedding_dim
        self.hidden_dims = hidden_dims
        self.pretrain = pretrain
        self.schedule = schedule
        self.pretrain_epochs = pretrain_epochs
        self.layerwise_epochs = layerwise_epochs
        self.layerwise_dropout = layerwise_dropout
        self.pretrain_lr = pretrain_lr
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self.mixed_precision = mixed_precision
        self.device = device
        self.random_state = random_state

    def _check_params(self) -> None:
        try:
            import umap  # noqa: F401
        except ImportError as exc:
            raise DeepclustError("N2D needs umap-learn: pip install 'deepclust[umap]'") from exc
        if isinstance(self.n_neighbors, bool) or int(self.n_neighbors) < 2:
            raise DeepclustError(f"n_neighbors must be >= 2, got {self.n_neighbors!r}")

    def _gmm(self, seed: int | None) -> GaussianMixture:
        return GaussianMixture(int(self.n_clusters), covariance_type=self.covariance_type, random_state=seed)

    def _fit(self, X: np.ndarray) -> None:
        if int(self.n_neighbors) >= len(X):
            raise DeepclustError(f"n_neighbors ({self.n_neighbors}) must be smaller than the number of samples "
                                 f"(n_samples={len(X)})")
        dev, seed, _, Xt = self._start_fit(X)
        t0 = time.perf_counter()
        Z = self._embed_scaled(Xt).cpu().numpy()
        U = umap_layout(Z, n_components=int(self.umap_dim or self.n_clusters), n_neighbors=int(self.n_neighbors),
                        min_dist=float(self.min_dist), metric=self.umap_metric, random_state=seed)
        self.timings_["umap"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        gmm = self._gmm(seed).fit(U)
        self.timings_["gmm"] = time.perf_counter() - t0
        self.train_embedding_, self.train_umap_ = Z.astype(np.float32), U
        for name in GMM_ARRAYS:
            setattr(self, f"gmm_{name}", getattr(gmm, name))
        self.labels_ = gmm.labels_
        self._mixture = gmm
        mark_interrupted(self, self.interrupted_)

    def _umap_coordinates(self, X: np.ndarray) -> np.ndarray:
        """UMAP coordinates of new points, placed from the training embeddings' layout."""
        return place(self._transform(X), self.train_embedding_, self.train_umap_, n_neighbors=int(self.n_neighbors))

    def _mixture_model(self) -> GaussianMixture:
        if getattr(self, "_mixture", None) is None:  # reloaded: the mixture's own state from the saved arrays
            gmm = self._gmm(None)
            dim = np.asarray(self.train_umap_).shape[1]
            gmm._set_state({name: np.asarray(getattr(self, f"gmm_{name}")) for name in GMM_ARRAYS},
                           {"converged_": True, "n_iter_": 0, "lower_bound_": 0.0, "n_features_in_": dim,
                            "input_shape_": [dim]})
            self._mixture = gmm
        return self._mixture

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self._mixture_model().predict_proba(self._umap_coordinates(X))
