"""DEC and IDEC: Student's t soft assignments sharpened towards p²/f.

* **DEC** — Xie, Girshick, Farhadi: "Unsupervised Deep Embedding for Clustering Analysis",
  ICML 2016. A pretrained d-500-500-2000-10 autoencoder's encoder maps the data to an
  embedding; k-means (20 restarts) on it gives the initial centroids μ. The soft assignment is
  a Student's t kernel, ``q_ij ∝ (1 + ||z_i - μ_j||²/α)^(-(α+1)/2)`` with α = 1
  (:class:`~deepclust.heads.StudentTHead`); the target ``p_ij ∝ q_ij² / Σ_i q_ij``
  (:func:`~deepclust.targets.dec_target`) is recomputed on all data every ``update_interval``
  iterations, and the encoder and centroids minimise KL(P‖Q) by SGD (lr 0.01, momentum 0.9).
  Training stops when fewer than ``tol`` = 0.1 % of the hard assignments change between two
  target refreshes, or after ``max_iter`` iterations. The decoder is discarded.
* **IDEC** — Guo, Gao, Liu, Yin: "Improved Deep Embedded Clustering with Local Structure
  Preservation", IJCAI 2017. DEC plus the autoencoder's reconstruction loss, kept during
  clustering so that the embedding keeps local structure: ``L = L_r + γ L_c`` with γ = 0.1,
  trained with Adam (lr 0.001).

Defaults follow the papers and the authors' released code (batch 256, update interval 140,
tol 0.001; autoencoder pretrained end to end with Adam; inputs scaled to [0, 1]) except the
lengths: ``schedule="budget"`` (default) pretrains for 1,110 gradient steps and clusters for at
most 3,000 iterations, the CPU budget benchmarked on USPS (BENCHMARKS.md: IDEC within 0.01 ACC of
its published USPS figure, DEC at it); ``schedule="paper"`` gives the papers' 200 epochs and
20,000 iterations. ``pretrain="layerwise"`` gives DEC's greedy layer-wise denoising pretraining.
No label is used: the stopping rule counts changed assignments.
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from deepclust import distributed
from deepclust.engines.kmeans import inner_kmeans
from deepclust.errors import DeepclustError
from deepclust.heads import StudentTHead
from deepclust.losses import kl_divergence
from deepclust.methods._autoencoder import AutoencoderClusterer, check_choice
from deepclust.targets import dec_target
from deepclust.training import batched, mark_interrupted, train_epochs, warn_not_converged

#: most clustering iterations of each schedule (see :mod:`deepclust.methods._autoencoder`)
MAX_ITER = {"budget": 3000, "paper": 20_000}


class DEC(AutoencoderClusterer):
    """Deep Embedded Clustering (Xie et al., ICML 2016) with the common estimator API.

    Parameters
    ----------
    n_clusters : number of clusters.
    alpha : degrees of freedom of the Student's t kernel (1).
    update_interval : iterations between two refreshes of the target P (140).
    tol : stop when fewer than this share of assignments change between refreshes (0.001).
    max_iter : most clustering iterations (None: 3,000 with ``schedule="budget"``, 20,000 with
        ``"paper"``); stopping there with labels still changing warns and sets ``converged_`` False.
    optimizer, lr, momentum : clustering optimizer, ``"sgd"`` (DEC: lr 0.01, momentum 0.9) or
        ``"adam"`` (IDEC: lr 0.001).
    gamma : weight of the clustering loss against reconstruction; None (DEC) drops the decoder.
    architecture, scaling, embedding_dim, hidden_dims, pretrain, schedule, pretrain_epochs, layerwise_epochs,
    layerwise_dropout, pretrain_lr, batch_size, cache_dir : the autoencoder and its pretraining
        (see :mod:`deepclust.methods._autoencoder`).
    kmeans_n_init : k-means restarts for the initial centroids (20).
    mixed_precision, device, random_state : as every deep method.
    """

    _saved_arrays = ("labels_", "scale_shift_", "scale_")
    _saved_values = ("history_", "timings_", "architecture_", "scaling_", "n_iter_", "interrupted_", "converged_",
                     "schedule_")
    _networks = ("autoencoder_", "head_")
    _default_gamma: float | None = None
    _data_parallel = True

    def __init__(self, n_clusters: int = 10, *, alpha: float = 1.0, update_interval: int = 140, tol: float = 0.001,
                 max_iter: int | None = None, optimizer: str = "sgd", lr: float = 0.01, momentum: float = 0.9,
                 gamma: float | None = None, architecture: str = "mlp", scaling: str = "auto",
                 embedding_dim: int | None = 10,
                 hidden_dims: Sequence[int] = (500, 500, 2000), pretrain: str = "end-to-end",
                 schedule: str = "budget", pretrain_epochs: int | None = None, layerwise_epochs: int = 50,
                 layerwise_dropout: float = 0.2,
                 pretrain_lr: float = 1e-3, batch_size: int = 256, kmeans_n_init: int = 20,
                 cache_dir: str | None = None, mixed_precision: bool | str = True, device: Any = "auto",
                 random_state: int | None = 0, verbose: bool = False):
        self.n_clusters = n_clusters
        self.alpha = alpha
        self.update_interval = update_interval
        self.tol = tol
        self.max_iter = max_iter
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.gamma = gamma
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
        self.verbose = verbose

    def _check_params(self) -> None:
        check_choice("optimizer", self.optimizer, ("sgd", "adam"))
        if not float(self.alpha) > 0:
            raise DeepclustError(f"alpha must be > 0, got {self.alpha!r}")
        if int(self.update_interval) < 1 or (self.max_iter is not None and int(self.max_iter) < 0):
            raise DeepclustError("update_interval must be >= 1 and max_iter >= 0")
        if not float(self.lr) > 0:
            raise DeepclustError(f"lr must be > 0, got {self.lr!r}")
        if self.gamma is not None and not float(self.gamma) >= 0:
            raise DeepclustError(f"gamma must be None or >= 0, got {self.gamma!r}")

    def _resolve_schedule(self, n_samples: int, device: torch.device | None = None) -> dict[str, int]:
        max_iter = self.max_iter if self.max_iter is not None else MAX_ITER[self._schedule_on(device)]
        return {**super()._resolve_schedule(n_samples, device), "max_iter": int(max_iter)}

    def _make_optimizer(self, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=float(self.lr))
        return torch.optim.SGD(params, lr=float(self.lr), momentum=float(self.momentum))

    def _fit(self, X: np.ndarray) -> None:
        dev, seed, gen, Xt = self._start_fit(X)
        ae = self.autoencoder_

        # initial centroids: k-means on the embedding of all data (under torchrun: gathered, on rank 0)
        t0 = time.perf_counter()
        part = self._shard
        Z = distributed.gather_rows(self._embed_scaled(Xt), part)

        def kmeans(Z: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
            km = inner_kmeans(Z.cpu().numpy(), self.n_clusters, n_init=int(self.kmeans_n_init), device=dev,
                              random_state=seed)
            return km.cluster_centers_, km.labels_

        centers, start_labels = distributed.from_main(kmeans, Z)
        del Z
        self.head_ = head = StudentTHead(torch.from_numpy(centers), alpha=float(self.alpha)).to(dev)
        self.timings_["kmeans"] = time.perf_counter() - t0

        gamma = self.gamma
        # without reconstruction (DEC) the decoder gets no gradient and stays as pretrained
        optimizer = self._make_optimizer([*ae.parameters(), *head.parameters()])
        state: dict[str, Any] = {"labels": torch.from_numpy(start_labels[part.rows]).to(dev), "changed": 1.0,
                                 "stopped": False}

        def refresh() -> None:
            q = self._assignments(Xt)
            state["target"] = dec_target(q, sharded=not part.whole)
            labels = q.argmax(1)
            state["changed"] = distributed.global_mean((labels != state["labels"]).sum(), part.n)
            state["labels"] = labels

        def loss(idx: torch.Tensor) -> dict[str, torch.Tensor]:
            xb = Xt[idx]
            out = ae(xb, corrupt=False, decode=gamma is not None)
            cluster = kl_divergence(head(out.embedding), state["target"][idx])
            if gamma is None:
                return {"loss": cluster}
            recon = F.mse_loss(out.decoded[0].float(), xb)
            return {"loss": float(gamma) * cluster + recon, "cluster": cluster, "reconstruction": recon}

        def converged(round_: int, record: dict[str, float]) -> bool:
            refresh()
            record["changed"] = state["changed"]
            if self.verbose:
                print(f"{type(self).__name__} round {round_ + 1}: "
                      + ", ".join(f"{k} {v:.4g}" for k, v in record.items()))
            state["stopped"] = state["changed"] < float(self.tol)
            return state["stopped"]

        t0 = time.perf_counter()
        refresh()
        rounds = math.ceil(self.schedule_["max_iter"] / int(self.update_interval))
        history = train_epochs(optimizer, loss, part, epochs=0 if self.interrupted_ else rounds,
                               batch_size=int(self.batch_size), device=dev, generator=gen,
                               desc=f"{type(self).__name__} clustering", mixed_precision=self.mixed_precision,
                               steps_per_epoch=int(self.update_interval), after_epoch=converged)
        self.history_["cluster"] = list(history)
        self.n_iter_ = len(history) * int(self.update_interval)
        self.labels_ = distributed.gather_rows(self._assignments(Xt).argmax(1), part).cpu().numpy()
        self.timings_["cluster"] = time.perf_counter() - t0
        self.converged_ = bool(state["stopped"])
        mark_interrupted(self, self.interrupted_ or history.interrupted)
        if not self.interrupted_ and not self.converged_:
            warn_not_converged(type(self).__name__, f"{self.n_iter_} clustering iterations", state["changed"],
                               float(self.tol), "max_iter")

    @torch.no_grad()
    def _assignments(self, Xt: torch.Tensor) -> torch.Tensor:
        """The Student's t soft assignments q of scaled inputs (clean encoder)."""
        self.autoencoder_.eval()
        return batched(lambda xb: self.head_.proba(self.autoencoder_.encode(xb)), Xt,
                       mixed_precision=self.mixed_precision)

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self._assignments(self._scale(X, self._net_device())).cpu().numpy()

    def _build_networks(self, input_shape: tuple[int, ...]) -> None:
        super()._build_networks(input_shape)
        self.head_ = StudentTHead(torch.zeros(int(self.n_clusters), self._embedding_size()), alpha=float(self.alpha))


class IDEC(DEC):
    """Improved DEC (Guo et al., IJCAI 2017): DEC's KL loss weighted by ``gamma`` = 0.1 plus the
    reconstruction loss of the whole autoencoder, trained with Adam (lr 0.001). Parameters as
    :class:`DEC`."""

    def __init__(self, n_clusters: int = 10, *, alpha: float = 1.0, update_interval: int = 140, tol: float = 0.001,
                 max_iter: int | None = None, optimizer: str = "adam", lr: float = 0.001, momentum: float = 0.9,
                 gamma: float | None = 0.1, architecture: str = "mlp", scaling: str = "auto",
                 embedding_dim: int | None = 10,
                 hidden_dims: Sequence[int] = (500, 500, 2000), pretrain: str = "end-to-end",
                 schedule: str = "budget", pretrain_epochs: int | None = None, layerwise_epochs: int = 50,
                 layerwise_dropout: float = 0.2,
                 pretrain_lr: float = 1e-3, batch_size: int = 256, kmeans_n_init: int = 20,
                 cache_dir: str | None = None, mixed_precision: bool | str = True, device: Any = "auto",
                 random_state: int | None = 0, verbose: bool = False):
        super().__init__(n_clusters, alpha=alpha, update_interval=update_interval, tol=tol, max_iter=max_iter,
                         optimizer=optimizer, lr=lr, momentum=momentum, gamma=gamma, architecture=architecture,
                         scaling=scaling,                          embedding_dim=embedding_dim, hidden_dims=hidden_dims, pretrain=pretrain,
                         schedule=schedule, pretrain_epochs=pretrain_epochs, layerwise_epochs=layerwise_epochs,
                         layerwise_dropout=layerwise_dropout, pretrain_lr=pretrain_lr, batch_size=batch_size,
                         kmeans_n_init=kmeans_n_init, cache_dir=cache_dir, mixed_precision=mixed_precision,
                         device=device, random_state=random_state, verbose=verbose)
