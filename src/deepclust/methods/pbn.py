"""PBN: the deliberately simple deep model for novel-class discovery in tabular data.

Troisemaine, Reiffers-Masson, Gosselin, Lemaire & Vaton, "A Practical Approach to Novel Class
Discovery in Tabular Data", Data Mining and Knowledge Discovery 2024 (arXiv 2311.05440), Section 3.4
(Projection-Based NCD); authors' code: github.com/ColinTr/PracticalNCD.

An encoder (d → ⌊3d/4⌋ → ⌊d/2⌋ → ``latent_dim``, hidden widths at least 4; ReLU, batch norm and dropout between layers, the
latent vectors L2-normalised) feeds a linear classifier of the known classes and a mirrored decoder.
The loss is ``w · cross-entropy(known samples) + (1 − w) · reconstruction(all samples)`` (summed
squared error per sample), AdamW, batch 512, 200 epochs, as the authors' code. The latent space
then serves twice: the number of novel classes is the silhouette maximum of k-means on the
unlabelled samples' latent vectors (Section 5; ``n_novel="auto"``), and the novel classes are
k-means clusters there (``clustering="kmeans"``, their default; ``"ncd-kmeans"`` starts the novel
centres away from the known classes' means). Only ``lr``, ``w``, ``dropout`` and ``latent_dim`` are
tuned in the paper, by the hidden-class cross-validation of
:func:`deepclust.engines.discovery.tune_on_hidden_classes` (``tune=True``; ``param_grid`` overrides
the small default grid). The input columns are standardised with the training samples' statistics.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from deepclust.device import resolve_device
from deepclust.engines.discovery import _DiscoveryBase, class_means, ncd_kmeans
from deepclust.errors import DeepclustError
from deepclust.methods._autoencoder import check_choice
from deepclust.runtime import seeded_generator
from deepclust.training import batched, train_epochs


class _PBNNet(nn.Module):
    """Encoder, decoder and known-class classifier of PBN."""

    def __init__(self, in_dim: int, latent_dim: int, n_known: int, dropout: float):
        super().__init__()
        dims = [in_dim, max(4, 3 * in_dim // 4), max(4, in_dim // 2), int(latent_dim)]  # (at least 4 wide)

        def stack(widths: list[int]) -> nn.Sequential:
            layers: list[nn.Module] = []
            for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
                if i:
                    layers += [nn.ReLU(), nn.BatchNorm1d(a)] + ([nn.Dropout(dropout)] if dropout > 0 else [])
                layers.append(nn.Linear(a, b))
            return nn.Sequential(*layers)

        self.encoder = stack(dims)
        self.decoder = stack(dims[::-1])
        self.classifier = nn.Linear(int(latent_dim), max(1, n_known))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.encoder(x), dim=1)


class PBN(_DiscoveryBase):
    """Projection-Based NCD (Troisemaine et al., DMKD 2024); see the module notes.

    ``fit(X, y)`` with ``y[i]`` a known class, ``-1`` for the unlabelled samples (the novel classes).

    Parameters
    ----------
    n_novel : number of novel classes, or ``"auto"`` (silhouette maximum in the latent space, k = 2 …
        ``k_max``); ``n_clusters`` (known + novel), when given, fixes it.
    latent_dim, w, lr, dropout : the tuned hyper-parameters (defaults: 16, 0.5, 1e-3, 0.1).
    epochs, batch_size : training (200 and 512, as the authors' code).
    clustering : ``"kmeans"`` or ``"ncd-kmeans"`` in the latent space; ``kmeans_n_init`` restarts.
    tune, param_grid, cv_folds : hidden-class cross-validation of the hyper-parameters.

    Attributes: ``labels_`` (known classes kept; novel clusters numbered after the largest known
    class), ``classes_``, ``known_classes_``, ``novel_classes_``, ``cluster_centers_`` (latent space),
    ``n_novel_``, ``n_novel_curve_``, ``best_params_`` (when tuned), ``history_``, ``timings_``.
    ``transform`` gives the latent vectors.
    """

    _networks = ("net_",)
    _saved_arrays = _DiscoveryBase._saved_arrays + ("input_mean_", "input_std_")
    _saved_values = _DiscoveryBase._saved_values + ("history_", "timings_")
    default_grid: ClassVar[dict[str, list[Any]]] = {"w": [0.2, 0.5, 0.8], "latent_dim": [8, 32]}

    def __init__(self, n_clusters: int | None = None, *, n_novel: int | str = "auto", latent_dim: int = 16,
                 w: float = 0.5, lr: float = 1e-3, dropout: float = 0.1, epochs: int = 200, batch_size: int = 512,
                 clustering: str = "kmeans", kmeans_n_init: int = 10, k_max: int = 30, tune: bool = False,
                 param_grid: dict | None = None, cv_folds: int = 3, device: Any = "auto", random_state: int = 0):
        self.n_clusters = n_clusters
        self.n_novel = n_novel
        self.latent_dim = latent_dim
        self.w = w
        self.lr = lr
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.clustering = clustering
        self.kmeans_n_init = kmeans_n_init
        self.k_max = k_max
        self.tune = tune
        self.param_grid = param_grid
        self.cv_folds = cv_folds
        self.device = device
        self.random_state = random_state

    def _check(self) -> None:
        check_choice("clustering", self.clustering, ("kmeans", "ncd-kmeans"))
        for name in ("latent_dim", "epochs", "batch_size", "kmeans_n_init"):
            v = self._hp(name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise DeepclustError(f"{name} must be a whole number >= 1, got {v!r}")
        if not 0 <= float(self._hp("w")) <= 1:
            raise DeepclustError(f"w must be between 0 and 1, got {self._hp('w')!r}")
        if not 0 <= float(self._hp("dropout")) < 1:
            raise DeepclustError(f"dropout must be in [0, 1), got {self._hp('dropout')!r}")
        if not float(self._hp("lr")) > 0:
            raise DeepclustError(f"lr must be > 0, got {self._hp('lr')!r}")

    def _build_networks(self, input_shape: tuple[int, ...]) -> None:
        self.net_ = _PBNNet(int(np.prod(input_shape)), int(self._hp("latent_dim")), len(self.known_classes_),
                            float(self._hp("dropout")))

    def _standardised(self, X: np.ndarray, dev: torch.device) -> torch.Tensor:
        return torch.as_tensor((X.reshape(len(X), -1) - self.input_mean_) / self.input_std_, device=dev)

    def _discover(self, X, labelled, codes, n_known, n_novel):
        self._check()
        dev = resolve_device(self.device)
        flat = X.reshape(len(X), -1)
        self.input_mean_ = flat.mean(0).astype(np.float32)
        self.input_std_ = np.where(flat.std(0) > 1e-8, flat.std(0), 1.0).astype(np.float32)
        Xt = self._standardised(flat, dev)
        seed, gen = seeded_generator(self.random_state)
        torch.manual_seed(seed)
        self.known_classes_ = np.arange(n_known)  # sizes the classifier; _fit sets the class ids
        self._build_networks(X.shape[1:])
        net = self.net_.to(dev).train()
        target = torch.full((len(X),), -1, dtype=torch.int64, device=dev)
        target[torch.as_tensor(np.flatnonzero(labelled), device=dev)] = torch.as_tensor(codes, device=dev)
        w = float(self._hp("w")) if n_known else 0.0

        def loss_fn(idx: torch.Tensor) -> dict[str, torch.Tensor]:
            x, t = Xt[idx], target[idx]
            z = net.embed(x)
            rec = (net.decoder(z) - x).pow(2).sum(1).mean()
            known = t >= 0
            ce = F.cross_entropy(net.classifier(z[known]), t[known]) if bool(known.any()) else rec.new_zeros(())
            return {"loss": w * ce + (1 - w) * rec, "ce": ce.detach(), "mse": rec.detach()}

        t0 = time.perf_counter()
        opt = torch.optim.AdamW(net.parameters(), lr=float(self._hp("lr")))
        history = train_epochs(opt, loss_fn, len(Xt), epochs=int(self._hp("epochs")),
                               batch_size=min(int(self._hp("batch_size")), len(Xt)), device=dev, generator=gen,
                               desc="PBN", mixed_precision=False)
        net.eval()
        Z = batched(net.embed, Xt, mixed_precision=False).float().cpu().numpy()
        t1 = time.perf_counter()
        curve = {}
        if n_novel is None:
            n_novel, curve = self._estimate(Z[~labelled])
        known_centres = class_means(Z[labelled], codes, n_known if self.clustering == "ncd-kmeans" else 0)
        centres, labels, _ = ncd_kmeans(Z[~labelled], known_centres, n_novel, n_init=int(self._hp("kmeans_n_init")),
                                        random_state=self.random_state, device=dev)
        self.history_ = {"train": list(history)}
        self.timings_ = {"train": t1 - t0, "cluster": time.perf_counter() - t1}
        return Z, n_novel, curve, labels, centres

    def _space(self, X: np.ndarray) -> np.ndarray:
        dev = next(self.net_.parameters()).device
        self.net_.eval()
        return batched(self.net_.embed, self._standardised(X, dev), mixed_precision=False).float().cpu().numpy()

    def _transform(self, X: np.ndarray) -> np.ndarray:
        return self._space(X)
