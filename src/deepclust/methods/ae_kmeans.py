"""Autoencoder + k-means: the two-stage baseline of deep clustering.

Pretrain an autoencoder on reconstruction alone, then run k-means on its embedding (as in the
two-stage framework of "Remote sensing framework for geological mapping via stacked
autoencoders and clustering", and the "AE + k-means" rows of DEC, IDEC and N2D papers). The
autoencoder is DEC's d-500-500-2000-10 for vectors; ``architecture="conv"`` (the default for
images) uses DEPICT's convolutional autoencoder. See :mod:`deepclust.methods._autoencoder` for
the pretraining options and the cache of pretrained autoencoders.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import torch

from deepclust.engines.kmeans import KMeans
from deepclust.methods._autoencoder import AutoencoderClusterer
from deepclust.training import mark_interrupted


class AEKMeans(AutoencoderClusterer):
    """Autoencoder pretraining, then k-means on the embedding.

    Parameters
    ----------
    n_clusters : number of clusters.
    architecture : ``"auto"`` (conv for images, mlp for vectors), ``"mlp"`` or ``"conv"``.
    scaling : ``"auto"`` (min-max for images, DEC's unit mean square for vectors), ``"minmax"``,
        ``"unit"``, ``"standard"`` or ``"none"``.
    embedding_dim : size of the embedding (None: 10, as DEC's autoencoder).
    hidden_dims : widths of the fully connected encoder (500, 500, 2000).
    pretrain : ``"end-to-end"`` or ``"layerwise"`` (greedy denoising, then fine-tuning).
    schedule : ``"budget"`` (default: 1,110 pretraining steps) or ``"paper"`` (200 epochs, as IDEC's
        released code); see :mod:`deepclust.methods._autoencoder`.
    pretrain_epochs, layerwise_epochs, layerwise_dropout, pretrain_lr, batch_size : pretraining
        (Adam, lr 1e-3, batch 256; ``pretrain_epochs`` None: from ``schedule``).
    kmeans_n_init : k-means restarts on the embedding (20, as DEC).
    cache_dir : folder for pretrained autoencoders (None: ``$DEEPCLUST_CACHE`` or no cache).
    mixed_precision, device, random_state : as every deep method.
    """

    _saved_arrays = ("labels_", "scale_shift_", "scale_", "cluster_centers_")
    _saved_values = ("history_", "timings_", "architecture_", "scaling_", "interrupted_", "schedule_", "converged_")

    def __init__(self, n_clusters: int = 10, *, architecture: str = "auto", scaling: str = "auto", embedding_dim: int | None = 10,
                 hidden_dims: Sequence[int] = (500, 500, 2000), pretrain: str = "end-to-end",
                 schedule: str = "budget", pretrain_epochs: int | None = None, layerwise_epochs: int = 50,
                 layerwise_dropout: float = 0.2,
                 pretrain_lr: float = 1e-3, batch_size: int = 256, kmeans_n_init: int = 20,
                 cache_dir: str | None = None, mixed_precision: bool | str = True, device: Any = "auto",
                 random_state: int | None = 0):
        self.n_clusters = n_clusters
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
        self.kmeans_n_init = kmeans_n_init
        self.cache_dir = cache_dir
        self.mixed_precision = mixed_precision
        self.device = device
        self.random_state = random_state

    def _fit(self, X: np.ndarray) -> None:
        dev, seed, _, Xt = self._start_fit(X)
        t0 = time.perf_counter()
        Z = self._embed_scaled(Xt).cpu().numpy()
        km = KMeans(self.n_clusters, n_init=int(self.kmeans_n_init), device=dev, random_state=seed).fit(Z)
        self.cluster_centers_ = km.cluster_centers_
        self.labels_ = km.labels_
        self.converged_ = km.converged_  # its k-means is the final clustering (it warns if not)
        self.timings_["kmeans"] = time.perf_counter() - t0
        mark_interrupted(self, self.interrupted_)

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Hard k-means assignment as one-hot probabilities."""
        Z = torch.from_numpy(self._transform(X))
        labels = torch.cdist(Z, torch.from_numpy(self.cluster_centers_)).argmin(1)
        return torch.nn.functional.one_hot(labels, int(self.n_clusters)).numpy().astype(np.float32)
