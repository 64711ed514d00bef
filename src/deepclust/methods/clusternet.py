"""ClusterNet: an autoencoder trained with pairwise constraints and a k-means loss.

Shukla, Cheema & Anand, "Semi-Supervised Clustering with Neural Networks", IEEE BigMM 2020
(arXiv 1806.01547, "ClusterNet"). Pairwise constraints on a small part of the data (< 5 % of the
samples in the paper) and all the unlabelled data train one network:

    L = L_reconstruction + pair_weight · L_pairs + kmeans_weight · L_k-means

* the autoencoder (the family's, :mod:`deepclust.methods._autoencoder`; the paper's is
  convolutional, ``architecture="auto"`` chooses it for images) is pretrained on reconstruction
  and keeps that loss, so the embedding keeps the data's structure;
* ``L_pairs`` pulls must-linked embeddings together and pushes cannot-linked ones at least a margin
  apart (:func:`~deepclust.losses.contrastive_pair_loss`); the margin, when not given, is the median
  distance between the initial cluster centres (no label is used to set it);
* ``L_k-means`` is the squared distance of each embedding to its cluster centre; the centres are
  parameters learned with the network (as in DCN, Yang et al., ICML 2017), and the assignments are
  those of constrained k-means: every group of must-linked samples goes, as one, to the centre
  nearest to it in total, re-computed every ``update_interval`` steps.

The centres start from PCKMeans (Basu et al. 2004, :class:`~deepclust.engines.constrained.PCKMeans`)
on the pretrained embedding, i.e. k-means that already respects the constraints softly. Training
(Adam, ``lr``) stops when fewer than ``tol`` of the assignments change between two updates, or
after ``max_iter`` steps. Without constraints it is an autoencoder with a k-means loss (DCN).
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from deepclust.engines.constrained import PCKMeans
from deepclust.errors import DeepclustError
from deepclust.losses import contrastive_pair_loss
from deepclust.methods._autoencoder import AutoencoderClusterer
from deepclust.supervision import SemiSupervisedClusterer
from deepclust.training import mark_interrupted, train_epochs, warn_not_converged
from deepclust.validation import check_number, must_link_components


class ClusterNet(SemiSupervisedClusterer, AutoencoderClusterer):
    """ClusterNet (Shukla, Cheema & Anand, BigMM 2020): autoencoder + pairwise constraints + k-means loss.

    ``fit(X, must_link=[(i, j), …], cannot_link=[…])``.

    Parameters
    ----------
    n_clusters : number of clusters.
    pair_weight, kmeans_weight : weights of the pairwise and k-means losses against reconstruction.
    margin : distance a cannot-linked pair is pushed apart to in the embedding (None: the median
        distance between the initial centres).
    update_interval : steps between two updates of the assignments (100); tol : stop when fewer than
        this share of assignments change (0.001); max_iter : most training steps (1,000).
    lr : Adam's learning rate for the network and the centres.
    architecture, scaling, embedding_dim, hidden_dims, pretrain, schedule, pretrain_epochs, layerwise_epochs,
    layerwise_dropout, pretrain_lr, batch_size, cache_dir : the autoencoder and its pretraining
        (see :mod:`deepclust.methods._autoencoder`); ``batch_size`` is also the number of constraint
        pairs per step.
    mixed_precision, device, random_state, verbose : as every deep method.

    Attributes: ``labels_``, ``cluster_centers_`` (in the embedding), ``margin_``, ``violations_``
    (constraints the clustering breaks), ``n_iter_``, ``converged_``, ``history_``, ``timings_``.
    """

    _takes = ("constraints",)
    _saved_arrays = ("labels_", "cluster_centers_", "scale_shift_", "scale_")
    _saved_values = ("history_", "timings_", "architecture_", "scaling_", "n_iter_", "interrupted_", "converged_",
                     "schedule_", "margin_", "violations_", "n_must_link_", "n_cannot_link_", "n_labelled_")

    def __init__(self, n_clusters: int = 10, *, pair_weight: float = 1.0, kmeans_weight: float = 0.1,
                 margin: float | None = None, update_interval: int = 100, tol: float = 0.001, max_iter: int = 1000,
                 lr: float = 1e-3, architecture: str = "mlp", scaling: str = "auto", embedding_dim: int | None = 10,
                 hidden_dims: Sequence[int] = (500, 500, 2000), pretrain: str = "end-to-end",
                 schedule: str = "budget", pretrain_epochs: int | None = None, layerwise_epochs: int = 50,
                 layerwise_dropout: float = 0.2, pretrain_lr: float = 1e-3, batch_size: int = 256,
                 cache_dir: str | None = None, mixed_precision: bool | str = True, device: Any = "auto",
                 random_state: int | None = 0, verbose: bool = False):
        self.n_clusters = n_clusters
        self.pair_weight = pair_weight
        self.kmeans_weight = kmeans_weight
        self.margin = margin
        self.update_interval = update_interval
        self.tol = tol
        self.max_iter = max_iter
        self.lr = lr
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
        self.verbose = verbose

    def _check_params(self) -> None:
        for name in ("pair_weight", "kmeans_weight"):
            check_number(getattr(self, name), name)
        if self.margin is not None and not float(self.margin) > 0:
            raise DeepclustError(f"margin must be None or > 0, got {self.margin!r}")
        for name in ("update_interval", "max_iter"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise DeepclustError(f"{name} must be a whole number >= 1, got {v!r}")
        if not float(self.lr) > 0:
            raise DeepclustError(f"lr must be > 0, got {self.lr!r}")

    def _fit(self, X: np.ndarray) -> None:
        dev, seed, gen, Xt = self._start_fit(X)
        ae, sup, k = self.autoencoder_, self._supervision, int(self.n_clusters)
        t0 = time.perf_counter()
        init = PCKMeans(k, device=dev, random_state=seed).fit(self._embed_scaled(Xt).cpu().numpy(),
                                                             must_link=sup.must_link, cannot_link=sup.cannot_link)
        centers = torch.nn.Parameter(torch.as_tensor(init.cluster_centers_, device=dev))
        self.margin_ = float(self.margin) if self.margin is not None else \
            float(torch.pdist(centers.detach()).median()) if k > 1 else 1.0
        self.timings_["init"] = time.perf_counter() - t0

        groups = torch.as_tensor(must_link_components(sup.must_link, len(X)), device=dev)
        pairs = torch.as_tensor(np.concatenate([sup.must_link, sup.cannot_link]), device=dev)
        same = torch.as_tensor(np.r_[np.ones(len(sup.must_link), bool), np.zeros(len(sup.cannot_link), bool)],
                               device=dev)
        state: dict[str, Any] = {"labels": torch.as_tensor(init.labels_, device=dev), "changed": 1.0}

        def loss(idx: torch.Tensor) -> dict[str, torch.Tensor]:
            xb = Xt[idx]
            out = ae(xb, corrupt=False)
            recon = F.mse_loss(out.decoded[0].float(), xb)
            kmeans = (out.embedding.float() - centers[state["labels"][idx]]).pow(2).sum(1).mean()
            total = recon + float(self.kmeans_weight) * kmeans
            parts = {"reconstruction": recon, "kmeans": kmeans}
            if len(pairs):
                b = torch.randint(len(pairs), (len(idx),), generator=gen).to(dev)
                z = ae.encode(Xt[torch.cat([pairs[b, 0], pairs[b, 1]])])
                parts["pairs"] = contrastive_pair_loss(z[:len(b)], z[len(b):], same[b], self.margin_)
                total = total + float(self.pair_weight) * parts["pairs"]
            return {"loss": total, **parts}

        def update(round_: int, record: dict[str, float]) -> bool:
            labels = self._assign(self._embed_scaled(Xt), centers.detach(), groups)
            ae.train()
            state["changed"] = record["changed"] = float((labels != state["labels"]).float().mean())
            state["labels"] = labels
            if self.verbose:
                print(f"ClusterNet round {round_ + 1}: " + ", ".join(f"{k} {v:.4g}" for k, v in record.items()))
            return state["changed"] < float(self.tol)

        t0 = time.perf_counter()
        rounds = -(-int(self.max_iter) // int(self.update_interval))
        optimizer = torch.optim.Adam([*ae.parameters(), centers], lr=float(self.lr))
        ae.train()
        history = train_epochs(optimizer, loss, len(Xt), epochs=0 if self.interrupted_ else rounds,
                               batch_size=int(self.batch_size), device=dev, generator=gen, desc="ClusterNet",
                               mixed_precision=self.mixed_precision, steps_per_epoch=int(self.update_interval),
                               after_epoch=update)
        self.timings_["cluster"] = time.perf_counter() - t0
        self.history_["cluster"] = list(history)
        self.n_iter_ = len(history) * int(self.update_interval)
        self.cluster_centers_ = centers.detach().cpu().numpy()
        self.labels_ = self._assign(self._embed_scaled(Xt), centers.detach(), groups).cpu().numpy()
        self.violations_ = sup.violations(self.labels_)
        self.converged_ = bool(state["changed"] < float(self.tol))
        mark_interrupted(self, self.interrupted_ or history.interrupted)
        if not self.interrupted_ and not self.converged_ and len(history):
            warn_not_converged("ClusterNet", f"{self.n_iter_} steps", state["changed"], float(self.tol), "max_iter")

    @staticmethod
    def _assign(Z: torch.Tensor, centers: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        """Constrained k-means assignment: each must-link group to the centre nearest to it in total."""
        d2 = torch.cdist(Z.float(), centers.float()).pow(2)
        cost = torch.zeros((int(groups.max()) + 1, d2.shape[1]), device=d2.device).index_add_(0, groups, d2)
        return cost.argmin(1)[groups]

    def _predict(self, X: np.ndarray) -> np.ndarray:
        """The nearest centre in the embedding (new samples carry no constraints)."""
        return torch.cdist(torch.from_numpy(self._transform(X)), torch.from_numpy(self.cluster_centers_)).argmin(1).numpy()

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Hard assignments as one-hot probabilities (k-means has no soft ones)."""
        return np.eye(int(self.n_clusters), dtype=np.float32)[self._predict(X)]
