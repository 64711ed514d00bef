"""TELL: interpretable neural clustering, k-means as a network trained by gradient descent.

Peng, Li, Tsang, Zhu, Lv & Zhou, "XAI Beyond Classification: Interpretable Neural Clustering",
JMLR 23(6), 2022, arXiv 1808.07292.

k-means' assignment ``argmin_j ‖x − ω_j‖²`` is ``argmax_j 2ω_jᵀx − ‖ω_j‖²``: a linear layer whose
weights are the centres (bias tied to them) followed by an arg-max. TELL replaces the arg-max by a
softmax with a small temperature and minimises the k-means loss with those soft assignments,
``Σ_j softmax_j(x) ‖x − ω_j‖²``, by mini-batch gradient descent: the result is k-means that learns
online and on a GPU, and whose parameters *are* its explanation — every weight row is a centre,
every assignment is "nearest centre", and which features decide it can be read off exactly
(:mod:`deepclust.explain.prototypes`).

Where we differ from the paper, and why:

* The paper trains the layer jointly with an autoencoder that learns the representation; here TELL
  runs on a given representation (raw table, standardised columns, or a frozen embedding), so the
  centres live in the features the user can read. Put an encoder in front (``--encoder``) for the
  representation.
* Centres start from k-means++ seeds (the paper starts from random weights): the same seeding as our
  k-means, so the two are compared from the same start.
* The temperature is relative: τ times the mean squared distance from each sample to its nearest
  seed, measured once at the start (saved with the model), so that one τ suits any scale of data.
* SGD with momentum; the k-means gradient moves each centre towards its members' mean in units of
  the data, so the learning rate needs no tuning to the scale either.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from deepclust.device import resolve_device
from deepclust.engines.kmeans import kmeans_plusplus
from deepclust.errors import DeepclustError
from deepclust.explain.prototypes import assignment_reasons, centre_profiles
from deepclust.heads import KMeansLayer
from deepclust.methods._selflabel import SelfLabelClusterer
from deepclust.training import batched, train_epochs


class TELL(SelfLabelClusterer):
    """TELL (Peng et al., JMLR 2022): a k-means layer trained by mini-batch gradient descent.

    Parameters
    ----------
    n_clusters : number of clusters K.
    temperature : softmax temperature, relative to the data's initial mean squared distance to the
        nearest seed (small: close to hard k-means).
    epochs, batch_size, lr, momentum : SGD settings.
    normalize : L2-normalise the rows (cosine geometry, as for text embeddings); False (default)
        clusters the features as given, as k-means does.
    device, random_state, verbose : as every method.

    Attributes: ``labels_`` (nearest centre), ``cluster_centers_`` (the layer's weights), ``inertia_``
    (sum of squared distances to the nearest centre), ``history_``, ``timings_``.
    """

    _networks = ("layer_",)
    _saved_arrays = ("labels_",)
    _saved_values = ("history_", "timings_", "inertia_")
    _display_name = "TELL"

    def __init__(self, n_clusters: int = 10, *, temperature: float = 0.1, epochs: int = 50, batch_size: int = 256,
                 lr: float = 0.05, momentum: float = 0.9, normalize: bool = False, device: Any = "auto",
                 random_state: int | None = 0, verbose: bool = False):
        self.n_clusters = n_clusters
        self.temperature = temperature
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.momentum = momentum
        self.normalize = normalize
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _build_networks(self, input_shape: tuple[int, ...]) -> None:
        self.layer_ = KMeansLayer(torch.zeros(int(self.n_clusters), int(np.prod(input_shape))), float(self.temperature))

    @property
    def cluster_centers_(self) -> np.ndarray:
        """The centres: the layer's weights, in the space of :meth:`transform`."""
        return self.layer_.weight.detach().cpu().numpy()

    def _fit(self, X: np.ndarray) -> None:
        self._check_common()
        if not float(self.temperature) > 0:
            raise DeepclustError(f"temperature must be > 0, got {self.temperature!r}")
        dev = resolve_device(self.device)
        seed, gen = self._seed()
        Xt = self._prepare(X.reshape(len(X), -1), dev)
        seeds = Xt[kmeans_plusplus(Xt, int(self.n_clusters), torch.Generator(device=dev).manual_seed(seed))]
        scale = float(torch.cdist(Xt, seeds).pow(2).min(1).values.mean().clamp_min(1e-12))
        self.layer_ = layer = KMeansLayer(seeds, float(self.temperature), scale).to(dev)
        opt = torch.optim.SGD(layer.parameters(), lr=float(self.lr), momentum=float(self.momentum))

        def loss_fn(idx: torch.Tensor) -> dict[str, torch.Tensor]:
            x = Xt[idx]
            soft = torch.softmax(layer(x), 1)
            return {"loss": (soft * layer.sq_distances(x)).sum(1).mean()}

        t0 = time.perf_counter()
        history = train_epochs(opt, loss_fn, len(Xt), epochs=int(self.epochs), batch_size=int(self.batch_size),
                               device=dev, generator=gen, desc="TELL", mixed_precision=False)
        d2 = batched(layer.sq_distances, Xt, mixed_precision=False)
        self.labels_ = d2.argmin(1).cpu().numpy()
        self.inertia_ = float(d2.min(1).values.sum())
        self.history_ = {"train": list(history)}
        self.timings_ = {"train": time.perf_counter() - t0}

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        Xt = self._prepare(X.reshape(len(X), -1), self._net_device())
        return torch.softmax(batched(self.layer_, Xt, mixed_precision=False), 1).cpu().numpy()

    def _predict(self, X: np.ndarray) -> np.ndarray:
        Xt = self._prepare(X.reshape(len(X), -1), self._net_device())
        return batched(self.layer_.sq_distances, Xt, mixed_precision=False).argmin(1).cpu().numpy()

    def _transform(self, X: np.ndarray) -> np.ndarray:
        """The samples as the layer sees them (rows normalised when ``normalize``): the centres' space."""
        return self._prepare(X.reshape(len(X), -1), torch.device("cpu")).numpy()

    def explain(self, X: Any, feature_names: list[str] | None = None, *, top: int = 5) -> dict[str, Any]:
        """Per cluster the centre's most distinctive features; per sample of ``X`` the runner-up
        centre, the margin and the features that decide it (:mod:`deepclust.explain.prototypes`)."""
        Z = self.transform(X)
        return {"clusters": centre_profiles(self.cluster_centers_, Z, feature_names, top=top),
                "samples": assignment_reasons(Z, self.cluster_centers_, feature_names, top=top)}
