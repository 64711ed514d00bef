"""DeepCluster and ClusterFit: k-means pseudo-labels, then a network trained to predict them.

* DeepCluster — Caron, Bojanowski, Joulin & Douze, "Deep Clustering for Unsupervised Learning of
  Visual Features", ECCV 2018, arXiv 1807.05520. Every epoch: compute the network's features of
  all samples, PCA-reduce them (to 256 dimensions), whiten (optional here, see ``whiten``) and
  L2-normalise them, run k-means
  (:func:`deepclust.targets.kmeans_target`; an empty cluster takes half of a big one, whose centre
  is split with a small perturbation, as the authors' faiss k-means does), re-initialise the
  classifier on top, and train the network for one epoch with cross-entropy on the cluster
  indices, drawing samples uniformly over the pseudo-classes
  (:func:`deepclust.training.balanced_indices`). Optimiser as the paper: SGD, lr 0.05, momentum
  0.9, weight decay 1e-5, batch 256.
* ClusterFit — Yan, Misra, Gupta, Ghadiyaram & Mahajan, "ClusterFit: Improving Generalization of
  Visual Representations", CVPR 2020, arXiv 1912.03330. Cluster the *given* (pretrained) features
  once with k-means and train a fresh network on those pseudo-labels (``mode="clusterfit"``).

The clustering returned is k-means (``n_clusters``) on the trained network's preprocessed
features; ``predict`` assigns new samples to the nearest of those centres. ``n_pseudo_classes``
sets the number of k-means pseudo-classes used for training (None: ``n_clusters``; the papers
over-cluster, e.g. 10,000 for ImageNet, which helps transfer more than clustering).

Networks: for embeddings (n × d, the common case: features of a pretrained encoder) an MLP
``d → 512 → 512`` with batch norm and ReLU; for images (n × H × W or n × C × H × W) a small VGG-style
conv net (:class:`deepclust.heads.ConvTrunk`) trained with random translations (± 1/8 of the size)
and, with ``flip=True``, horizontal flips — the paper uses random crops and flips. 50 epochs by
default, a compute budget (the paper: 500 on ImageNet).
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepclust.device import resolve_device
from deepclust.errors import DeepclustError
from deepclust.heads import MLP, ConvTrunk
from deepclust.methods._selflabel import SelfLabelClusterer, eval_mode
from deepclust.metrics import external_scores
from deepclust.targets import kmeans_target
from deepclust.training import balanced_indices, batched, mark_interrupted, train_epochs

MODES = ("deepcluster", "clusterfit")


def pca_whiten(Z: torch.Tensor, dim: int, eps: float = 1e-5, whiten: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepCluster's preprocessing, fitted on ``Z``: (mean, projection) such that
    ``normalize((z - mean) @ projection)`` is the PCA-``dim`` whitened, L2-normalised feature."""
    mean = Z.mean(0)
    Zc = (Z - mean).double()
    evals, evecs = torch.linalg.eigh(Zc.T @ Zc / max(1, Z.shape[0] - 1))
    order = evals.argsort(descending=True)[: min(int(dim), Z.shape[1])]
    proj = evecs[:, order] / torch.sqrt(evals[order].clamp_min(0) + eps) if whiten else evecs[:, order]
    return mean, proj.float()


def _preprocess(Z: torch.Tensor, mean: torch.Tensor, proj: torch.Tensor) -> torch.Tensor:
    return F.normalize((Z - mean) @ proj, dim=1)


def random_shift_flip(x: torch.Tensor, generator: torch.Generator, max_shift: float = 0.125,
                      flip: bool = False) -> torch.Tensor:
    """Per-sample random translation (up to ``max_shift`` of the size) and optional horizontal flip
    of an image batch (N, C, H, W), in one ``grid_sample`` (zeros outside)."""
    n = x.shape[0]
    theta = torch.zeros(n, 2, 3)
    sx = torch.ones(n)
    if flip:
        sx = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    theta[:, 0, 0], theta[:, 1, 1] = sx, 1.0
    theta[:, :, 2] = (torch.rand(n, 2, generator=generator) * 2 - 1) * 2 * max_shift
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)


class DeepCluster(SelfLabelClusterer):
    """DeepCluster (Caron et al., ECCV 2018) / ClusterFit (Yan et al., CVPR 2020).

    Parameters
    ----------
    n_clusters : number of clusters of the result.
    mode : ``"deepcluster"`` (re-cluster the network's features every epoch) or ``"clusterfit"``
        (cluster the input features once, then fit the network to those labels).
    n_pseudo_classes : k-means clusters used as training labels (None: ``n_clusters``).
    epochs, batch_size, lr, momentum, weight_decay : SGD training (the paper's lr 0.05, momentum
        0.9, weight decay 1e-5, batch 256).
    pca_dim : PCA dimension before k-means (256 in the paper).
    whiten : whiten the PCA components, as the paper. Off by default: whitening gives each of the
        ``pca_dim`` directions unit variance, and when most of them carry noise (features of a
        small MLP, few samples) k-means follows the noise — on well-separated Gaussian blobs the
        assignments of consecutive epochs then had NMI 0.01 with each other (a label-free sign) and
        ACC 0.44; without whitening NMI 1.0 and ACC 1.0.
    hidden_dims : MLP widths for embeddings; channels, feature_dim : conv net for images.
    flip : random horizontal flips for images (off by default: they change digits and text).
    kmeans_n_init : k-means restarts each round (1, as the paper's faiss k-means).
    normalize : L2-normalise rows of embeddings and scale them to norm √d.

    Attributes: ``labels_``, ``cluster_centers_`` (in the preprocessed feature space),
    ``history_`` (per epoch: loss, ``nmi_prev`` — NMI between consecutive assignments, the paper's
    label-free measure of stability), ``timings_``.
    """

    _networks = ("trunk_", "classifier_")
    _saved_arrays = ("labels_", "cluster_centers_", "pca_mean_", "pca_proj_", "input_mean_", "input_std_")
    _saved_values = ("history_", "timings_", "temperature_", "interrupted_")
    _max_input_dims = 4
    _display_name = "DeepCluster"
    _default_mode = "deepcluster"

    def __init__(self, n_clusters: int = 10, *, mode: str | None = None, n_pseudo_classes: int | None = None,
                 epochs: int = 50, batch_size: int = 256, lr: float = 0.05, momentum: float = 0.9,
                 weight_decay: float = 1e-5, pca_dim: int = 256, whiten: bool = False, hidden_dims: Sequence[int] = (512, 512),
                 channels: Sequence[int] = (32, 64, 128), feature_dim: int = 256, flip: bool = False,
                 kmeans_n_init: int = 1, normalize: bool = True, device: Any = "auto",
                 random_state: int | None = 0, verbose: bool = False):
        self.n_clusters = n_clusters
        self.mode = mode
        self.n_pseudo_classes = n_pseudo_classes
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.pca_dim = pca_dim
        self.whiten = whiten
        self.hidden_dims = hidden_dims
        self.channels = channels
        self.feature_dim = feature_dim
        self.flip = flip
        self.kmeans_n_init = kmeans_n_init
        self.normalize = normalize
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _mode(self) -> str:
        mode = self.mode or self._default_mode
        if mode not in MODES:
            raise DeepclustError(f"mode must be one of {MODES}, got {self.mode!r}")
        return mode

    def _n_pseudo(self, n: int) -> int:
        k = int(self.n_pseudo_classes or self.n_clusters)
        if not 1 <= k <= n:
            raise DeepclustError(f"n_pseudo_classes must be between 1 and n_samples = {n}, got {k}")
        return k

    def _build_networks(self, input_shape: tuple[int, ...]) -> None:
        if len(input_shape) == 1:
            self.trunk_ = MLP(input_shape[0], tuple(self.hidden_dims))
        else:
            channels = 1 if len(input_shape) == 2 else input_shape[0]
            self.trunk_ = ConvTrunk(channels, tuple(self.channels), int(self.feature_dim))
        self.classifier_ = nn.Linear(self.trunk_.out_dim, self._n_pseudo(10**12))

    def _features(self, Xt: torch.Tensor) -> torch.Tensor:
        with eval_mode(self.trunk_):
            return batched(self.trunk_, Xt, batch_size=1024)

    def _fit(self, X: np.ndarray) -> None:
        self._check_common()
        mode, n = self._mode(), X.shape[0]
        k_pseudo = self._n_pseudo(n)
        dev = resolve_device(self.device)
        seed, gen = self._seed()
        self._fit_scaling(X)
        self._build_networks(tuple(X.shape[1:]))
        trunk, clf = self.trunk_.to(dev).train(), self.classifier_.to(dev)
        Xt = self._prepare(X, dev)
        images = Xt.dim() == 4
        opt = torch.optim.SGD([*trunk.parameters(), *clf.parameters()], lr=float(self.lr),
                              momentum=float(self.momentum), weight_decay=float(self.weight_decay))
        state: dict[str, Any] = {"labels": None, "nmi": None, "kmeans_s": 0.0, "round": 0}

        def recluster(features: torch.Tensor, k: int) -> torch.Tensor:
            t0 = time.perf_counter()
            mean, proj = pca_whiten(features, int(self.pca_dim), whiten=bool(self.whiten))
            labels, centers = kmeans_target(_preprocess(features, mean, proj), k, seed=seed + state["round"],
                                            n_init=int(self.kmeans_n_init), generator=gen)
            state["round"] += 1
            state["kmeans_s"] += time.perf_counter() - t0
            return labels, centers, mean, proj

        def new_round(epoch: int) -> None:
            if mode == "clusterfit" and state["labels"] is not None:
                state["order"] = balanced_indices(state["labels"], n, gen)
                return
            feats = Xt.reshape(n, -1) if mode == "clusterfit" else self._features(Xt)
            labels = recluster(feats, k_pseudo)[0]
            if state["labels"] is not None:
                state["nmi"] = external_scores(state["labels"].cpu().numpy(), labels.cpu().numpy())["nmi"]
            state["labels"] = labels
            state["order"] = balanced_indices(labels, n, gen)
            with torch.no_grad():  # a fresh classifier for the new labels (DeepCluster's N(0, 0.01) init)
                clf.weight.normal_(0.0, 0.01)
                clf.bias.zero_()
            for p in clf.parameters():
                opt.state.pop(p, None)

        def loss_fn(idx: torch.Tensor) -> dict[str, torch.Tensor]:
            real = state["order"][idx]
            xb = Xt[real]
            if images:
                xb = random_shift_flip(xb, gen, flip=bool(self.flip))
            return {"loss": F.cross_entropy(clf(trunk(xb)).float(), state["labels"][real])}

        def log(epoch: int, record: dict[str, float]) -> None:
            record["nmi_prev"] = state["nmi"]
            if self.verbose:
                print(f"{self._display_name} epoch {epoch + 1}: loss {record['loss']:.4f}, "
                      f"NMI with previous assignment {state['nmi']}")

        t0 = time.perf_counter()
        history = train_epochs(opt, loss_fn, n, epochs=int(self.epochs), batch_size=int(self.batch_size), device=dev,
                               generator=gen, desc=self._display_name, before_epoch=new_round, after_epoch=log)
        train_s = time.perf_counter() - t0 - state["kmeans_s"]
        # the result: k-means with n_clusters on the trained network's preprocessed features
        t0 = time.perf_counter()
        feats = self._features(Xt)
        labels, centers, mean, proj = recluster(feats, int(self.n_clusters))
        trunk.eval()
        self.labels_ = labels.cpu().numpy()
        self.cluster_centers_ = centers.cpu().numpy()
        self.pca_mean_, self.pca_proj_ = mean.cpu().numpy(), proj.cpu().numpy()
        d2 = (_preprocess(feats, mean, proj) - centers[labels]).pow(2).sum(1)
        self.temperature_ = float(d2.mean())
        self.history_ = {"train": list(history)}
        mark_interrupted(self, history.interrupted)
        self.timings_ = {"train": train_s, "kmeans": state["kmeans_s"] + 0.0, "final": time.perf_counter() - t0}

    def _distances(self, X: np.ndarray) -> torch.Tensor:
        dev = self._net_device()
        z = _preprocess(self._features(self._prepare(X, dev)), torch.as_tensor(self.pca_mean_, device=dev),
                        torch.as_tensor(self.pca_proj_, device=dev))
        return torch.cdist(z, torch.as_tensor(self.cluster_centers_, device=dev)).pow(2)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return self._distances(X).argmin(1).cpu().numpy()

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        """softmax of ``-d² / T`` over the centres, T the mean squared distance of the training
        samples to their centre (as :class:`deepclust.engines.kmeans.KMeans`)."""
        return torch.softmax(self._distances(X) / -max(self.temperature_, 1e-12), 1).cpu().numpy()

    def _transform(self, X: np.ndarray) -> np.ndarray:
        return self._features(self._prepare(X, self._net_device())).cpu().numpy()


class ClusterFit(DeepCluster):
    """ClusterFit (Yan et al., CVPR 2020): :class:`DeepCluster` with ``mode="clusterfit"`` — k-means
    once on the given (pretrained) features, then a network fitted to those pseudo-labels."""

    _display_name = "ClusterFit"
    _default_mode = "clusterfit"
