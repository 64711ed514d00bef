"""Deep constrained clustering from noisy pairwise annotations, with the geometric regulariser.

Nguyen, Ibrahim & Fu, "Deep Clustering with Incomplete Noisy Pairwise Annotations: A Geometric
Regularization Approach", ICML 2023 (arXiv 2305.19391; their code: github.com/ductri/VolMaxDCC).
A network ``f`` maps each sample to a cluster membership on the simplex (an MLP ending in softmax).
An annotation ``y_ij`` (1 = must-link, 0 = cannot-link) is modelled as a coin with probability
``f(x_i)ᵀ B f(x_j)``:

* ``B = I`` is the *logistic DCC loss* (Hsu & Kira 2016; Hsu et al., ICLR 2019), binary
  cross-entropy on the annotated pairs only; the paper shows it identifies the memberships when the
  annotations are right;
* with annotation errors ``B`` is unknown: a K × K matrix in [0, 1] (``sigmoid`` of a free matrix
  started at +1 on the diagonal, −1 off it, as their code) learned with ``f``, and the criterion
  subtracts ``λ · log det(FᵀF)``, the log volume spanned by the memberships ``F`` of the data
  (:func:`~deepclust.losses.log_volume`), which makes ``f`` and ``B`` identifiable again
  (their Theorem 3.6; ``volume_weight`` = λ).

Training (Adam, lr 1e-3, as their demo) draws ``batch_size`` annotated pairs per step, and, for the
volume, ``volume_batch`` samples of all the data (their code draws up to 10,000 per step; the
log-determinant of a random subset has the same maximisers up to the scale of ``FᵀF``). Every
``steps_per_round`` steps the memberships of all samples are recomputed, and training stops when
fewer than ``tol`` of the hard labels changed (their stopping rule) or after ``max_rounds``.
Clusters are ``argmax f(x)``. ``noise_model=False, volume_weight=0`` gives the plain logistic loss.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from deepclust.device import resolve_device
from deepclust.errors import DeepclustError
from deepclust.losses import log_volume, pair_link_loss
from deepclust.methods._selflabel import SelfLabelClusterer, eval_mode
from deepclust.supervision import SemiSupervisedClusterer
from deepclust.training import batched, mark_interrupted, train_epochs
from deepclust.validation import check_number


class MembershipNet(nn.Module):
    """``[Linear → ReLU] × len(hidden_dims) → Linear → softmax``: cluster memberships (their network),
    with the annotators' link matrix ``B = sigmoid(b)`` when ``noise_model``."""

    def __init__(self, in_dim: int, n_clusters: int, hidden_dims: Sequence[int], noise_model: bool):
        super().__init__()
        dims = [int(in_dim), *[int(h) for h in hidden_dims]]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(dims[-1], int(n_clusters)))
        if noise_model:
            self.link_logits = nn.Parameter(2 * torch.eye(int(n_clusters)) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x).float(), dim=1)

    def confusion(self) -> torch.Tensor | None:
        """``B``: the probability that annotators link a sample of cluster k with one of cluster l (None: ``I``)."""
        return torch.sigmoid(self.link_logits) if hasattr(self, "link_logits") else None


class DCC(SemiSupervisedClusterer, SelfLabelClusterer):
    """Deep constrained clustering with noisy pairwise annotations (Nguyen, Ibrahim & Fu, ICML 2023).

    ``fit(X, must_link=[(i, j), …], cannot_link=[…])``; contradicting pairs are accepted (they are
    what noisy annotations look like). Without constraints there is nothing to learn from and ``fit``
    refuses. Inputs are vectors (embeddings, table rows) or images, which are flattened.

    Parameters
    ----------
    n_clusters : number of clusters K.
    volume_weight : λ, the weight of the log-volume regulariser (0.01; their experiments search 1e-5 … 0.1).
    noise_model : learn the annotators' link matrix ``B`` (True) or take ``B = I`` (the logistic loss).
    hidden_dims : hidden layers of the network (their code: 512, 512).
    batch_size : annotated pairs per step; volume_batch : samples per step for the volume term.
    lr : Adam's learning rate. steps_per_round, max_rounds, tol : the schedule and stopping rule.
    normalize : rows L2-normalised to norm √d (default; embeddings), or taken as given.
    device, random_state, verbose : as every method.

    Attributes: ``labels_``, ``confusion_`` (the learned ``B``, K × K, when ``noise_model``),
    ``violations_`` (annotations the clustering disagrees with), ``n_iter_`` (steps),
    ``converged_``, ``history_``, ``timings_``.
    """

    _takes = ("constraints",)
    _noisy_constraints = True
    _max_input_dims = 4  # images are flattened
    _networks = ("net_",)
    _saved_arrays = ("labels_",)
    _saved_values = ("history_", "timings_", "violations_", "n_iter_", "converged_", "interrupted_", "n_must_link_",
                     "n_cannot_link_", "n_labelled_")
    _display_name = "DCC"

    def __init__(self, n_clusters: int = 10, *, volume_weight: float = 0.01, noise_model: bool = True,
                 hidden_dims: Sequence[int] = (512, 512), batch_size: int = 256, volume_batch: int = 1024,
                 lr: float = 1e-3, steps_per_round: int = 100, max_rounds: int = 20, tol: float = 1e-3,
                 normalize: bool = True, mixed_precision: bool | str = True, device: Any = "auto",
                 random_state: int | None = 0, verbose: bool = False):
        self.n_clusters = n_clusters
        self.volume_weight = volume_weight
        self.noise_model = noise_model
        self.hidden_dims = hidden_dims
        self.batch_size = batch_size
        self.volume_batch = volume_batch
        self.lr = lr
        self.steps_per_round = steps_per_round
        self.max_rounds = max_rounds
        self.tol = tol
        self.normalize = normalize
        self.mixed_precision = mixed_precision
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _check_params(self) -> None:
        self._check_common()
        for name in ("volume_batch", "steps_per_round", "max_rounds"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise DeepclustError(f"{name} must be a whole number >= 1, got {v!r}")
        check_number(self.volume_weight, "volume_weight")
        if not 0 <= float(self.tol) < 1:
            raise DeepclustError(f"tol must be in [0, 1), got {self.tol!r}")

    def _build_networks(self, input_shape: tuple[int, ...]) -> None:
        self.net_ = MembershipNet(int(np.prod(input_shape)), int(self.n_clusters), self.hidden_dims,
                                  bool(self.noise_model))

    @property
    def confusion_(self) -> np.ndarray | None:
        B = self.net_.confusion()
        return None if B is None else B.detach().cpu().numpy()

    def _fit(self, X: np.ndarray) -> None:
        self._check_params()
        sup = self._supervision
        if len(sup.must_link) + len(sup.cannot_link) == 0:
            raise DeepclustError("dcc learns from pairwise constraints and none were given: pass must_link/"
                                 "cannot_link (--constraints FILE), or choose an unsupervised method")
        dev = resolve_device(self.device)
        seed, gen = self._seed()
        Xt = self._prepare(X.reshape(len(X), -1), dev)
        pairs = torch.as_tensor(np.concatenate([sup.must_link, sup.cannot_link]), device=dev)
        same = torch.as_tensor(np.r_[np.ones(len(sup.must_link), bool), np.zeros(len(sup.cannot_link), bool)],
                               device=dev)
        torch.manual_seed(seed)
        self._build_networks(tuple(X.shape[1:]))
        net = self.net_ = self.net_.to(dev)
        lam, n, m = float(self.volume_weight), len(Xt), len(pairs)

        def loss_fn(idx: torch.Tensor) -> dict[str, torch.Tensor]:
            batch = torch.randint(m, (int(self.batch_size),), generator=gen).to(dev)
            i, j = pairs[batch, 0], pairs[batch, 1]
            p = net(Xt[torch.cat([i, j])])
            link = pair_link_loss(p[:len(i)], p[len(i):], same[batch], net.confusion())
            if lam == 0:
                return {"loss": link}
            volume = log_volume(net(Xt[idx]))
            return {"loss": link - lam * volume, "link": link, "log_volume": volume}

        state = {"labels": self._memberships(Xt).argmax(1), "changed": 1.0}

        def settled(round_: int, record: dict[str, float]) -> bool:
            labels = self._memberships(Xt).argmax(1)
            state["changed"] = record["changed"] = float((labels != state["labels"]).float().mean())
            state["labels"] = labels
            if self.verbose:
                print(f"DCC round {round_ + 1}: " + ", ".join(f"{k} {v:.4g}" for k, v in record.items()))
            return state["changed"] < float(self.tol)

        t0 = time.perf_counter()
        history = train_epochs(net.parameters(), loss_fn, n, epochs=int(self.max_rounds),
                               batch_size=min(int(self.volume_batch), n), device=dev, generator=gen, lr=float(self.lr),
                               desc="DCC", mixed_precision=self.mixed_precision,
                               steps_per_epoch=int(self.steps_per_round), after_epoch=settled)
        self.labels_ = state["labels"].cpu().numpy()
        self.n_iter_ = len(history) * int(self.steps_per_round)
        self.converged_ = bool(state["changed"] < float(self.tol))
        self.history_ = {"train": list(history)}
        self.timings_ = {"train": time.perf_counter() - t0}
        self.violations_ = sup.violations(self.labels_)
        mark_interrupted(self, history.interrupted)

    def _memberships(self, Xt: torch.Tensor) -> torch.Tensor:
        with eval_mode(self.net_):
            return batched(self.net_, Xt, mixed_precision=self.mixed_precision)

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self._memberships(self._prepare(X.reshape(len(X), -1), self._net_device())).cpu().numpy()

    def _transform(self, X: np.ndarray) -> np.ndarray:
        """The cluster memberships ``f(x)`` (points of the simplex), the space the clusters are read from."""
        return self._predict_proba(X)
