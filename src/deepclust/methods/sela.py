"""SeLa: self-labelling via simultaneous clustering and representation learning.

Asano, Rupprecht & Vedaldi, "Self-labelling via simultaneous clustering and representation
learning", ICLR 2020, arXiv 1911.05371.

Training alternates two steps on one cross-entropy objective E(p, q) = -1/N Σ_i log p(q_i | x_i):
(1) with the network fixed, pseudo-labels q are the solution of an optimal-transport problem that
splits the N samples into clusters of prescribed sizes (equal sizes in the paper, or a given
``prior``), solved approximately by Sinkhorn-Knopp on P^λ (λ = 25) — :func:`deepclust.targets.
sinkhorn_target`, then arg-max; (2) with the labels fixed, the network is trained on them with
cross-entropy. The first labels come from the randomly initialised network; labels are
re-optimised ``n_label_updates`` times, evenly spread over training (the paper: 100 times in
400 epochs).

For fixed embeddings (features of a pretrained encoder, the case here) the network is the
clustering head on the frozen embedding — a linear softmax layer by default (``hidden_dims=()``);
``hidden_dims`` adds an MLP trunk. The paper trains an AlexNet/ResNet on *augmented* views of
each image and labels the image, so a labelling survives only if the views agree on it. A frozen
embedding has no image to augment; ``augment="neighbors"`` (default) plays that role in the
embedding space: each step feeds a random one of the sample's ``n_neighbors`` nearest (cosine)
neighbours in place of the sample itself, against the sample's label. Without it
(``augment=None``) the first labels, from the random head, are a fixed point: a linear head fits
any random split of the data exactly and Sinkhorn hands the same split back (observed: under 0.2 %
of labels change after epoch 9).

One deviation, label-free: ``init="kmeans"`` (default) starts the head from the k-means partition of
the embedding (weights = L2-normalised centroids, as DEPICT initialises its head) instead of a random
layer (``init="random"``, the paper). A random linear head's first equal-size labels are arbitrary
hyperplane cuts; at large k the neighbour views cannot undo them within the schedule (BANKING77,
k = 77, 40 epochs: ACC 0.40 from a random start, 0.55 from k-means; k-means alone 0.59).

Optimiser as the paper: SGD, lr 0.05, momentum 0.9, weight decay 1e-5, batch 256 (the paper's
step decays of the learning rate are not used). 400 epochs with 100 label updates, as the paper
(a linear head on a frozen embedding makes that a matter of seconds).
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from deepclust import distributed
from deepclust.device import resolve_device
from deepclust.engines.neighbors import cosine_knn
from deepclust.errors import DeepclustError
from deepclust.heads import MLP, SoftmaxHead
from deepclust.methods._selflabel import SelfLabelClusterer, eval_mode
from deepclust.targets import kmeans_target, sinkhorn_target
from deepclust.training import batched, mark_interrupted, train_epochs

INITS = ("kmeans", "random")


class SeLa(SelfLabelClusterer):
    """SeLa (Asano et al., ICLR 2020) on embeddings, with the common estimator API.

    Parameters
    ----------
    n_clusters : number of clusters K.
    prior : cluster-size proportions for the transport constraint (None: equal sizes; ``"kmeans"``: those
        of the k-means partition of X as given, before the rows are normalised: a label-free estimate).
    lam : λ of the Sinkhorn step (25 in the paper); larger is closer to the hard assignment.
    sinkhorn_iters, sinkhorn_tol : at most this many Sinkhorn iterations; stop when every cluster's
        size is within ``sinkhorn_tol`` (relative) of its target.
    epochs, n_label_updates : training epochs and how many times the labels are re-optimised.
    batch_size, lr, momentum, weight_decay : SGD settings (the paper's).
    hidden_dims : widths of an MLP trunk before the softmax head (``()``: linear head).
    normalize : L2-normalise the rows of X and scale them to norm √d (see deepclust.methods._selflabel).
    augment, n_neighbors : ``"neighbors"`` (a random one of the ``n_neighbors`` = 20 nearest
        neighbours as the augmented view) or None (the sample itself).
    init : ``"kmeans"`` (head from the k-means centroids of what it reads) or ``"random"`` (the paper).
    device, random_state, verbose : as every method.

    Attributes: ``labels_`` (arg-max of the final network, as the paper's evaluation),
    ``pseudo_labels_`` (the last transport labels), ``prior_`` (the proportions the transport used; None:
    equal), ``history_``, ``timings_``. Warns when the final
    assignment collapsed (empty clusters or one above 5 × n/k, :func:`~deepclust.methods._selflabel.collapse`).
    """

    _networks = ("trunk_", "head_")
    _saved_arrays = ("labels_", "pseudo_labels_", "prior_")
    _saved_values = ("history_", "timings_", "interrupted_")
    _display_name = "SeLa"
    _data_parallel = True

    def __init__(self, n_clusters: int = 10, *, prior: Sequence[float] | str | None = None, lam: float = 25.0,
                 sinkhorn_iters: int = 1000, sinkhorn_tol: float = 1e-3, epochs: int = 400,
                 n_label_updates: int = 100,
                 batch_size: int = 256, lr: float = 0.05, momentum: float = 0.9, weight_decay: float = 1e-5,
                 hidden_dims: Sequence[int] = (), normalize: bool = True, augment: str | None = "neighbors",
                 n_neighbors: int = 20, init: str = "kmeans", device: Any = "auto",
                 random_state: int | None = 0, verbose: bool = False):
        self.n_clusters = n_clusters
        self.prior = prior
        self.lam = lam
        self.sinkhorn_iters = sinkhorn_iters
        self.sinkhorn_tol = sinkhorn_tol
        self.epochs = epochs
        self.n_label_updates = n_label_updates
        self.batch_size = batch_size
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.hidden_dims = hidden_dims
        self.normalize = normalize
        self.augment = augment
        self.n_neighbors = n_neighbors
        self.init = init
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _check_params(self) -> None:
        self._check_labelling()
        if not float(self.lam) > 0:
            raise DeepclustError(f"lam must be > 0, got {self.lam!r}")

    def _check_labelling(self) -> None:
        """Checks shared with the methods built on this loop (P²OT)."""
        self._check_common()
        if isinstance(self.prior, str) and not _is_kmeans(self.prior):
            raise DeepclustError(f"prior must be 'kmeans' or {self.n_clusters} positive cluster proportions, "
                                 f"got {self.prior!r}")
        if self.prior is not None and not _is_kmeans(self.prior):
            prior = np.asarray(self.prior, dtype=float)
            if prior.shape != (self.n_clusters,) or not np.isfinite(prior).all() or (prior <= 0).any():
                raise DeepclustError(f"prior must be {self.n_clusters} positive cluster proportions, got {self.prior!r}")
        if self.augment not in (None, "neighbors"):
            raise DeepclustError(f"augment must be 'neighbors' or None, got {self.augment!r}")
        if self.init not in INITS:
            raise DeepclustError(f"init must be one of {', '.join(map(repr, INITS))}, got {self.init!r}")
        if not 1 <= int(self.n_label_updates) <= int(self.epochs):
            raise DeepclustError(f"n_label_updates must be between 1 and epochs ({self.epochs}), "
                                 f"got {self.n_label_updates!r}")

    def _build_networks(self, input_shape: tuple[int, ...]) -> None:
        self.trunk_ = MLP(input_shape[0], tuple(self.hidden_dims))
        self.head_ = SoftmaxHead(self.trunk_.out_dim, int(self.n_clusters))

    def _logits(self, Xt: torch.Tensor) -> torch.Tensor:
        with eval_mode(self.trunk_):
            return batched(lambda xb: self.head_(self.trunk_(xb)), Xt)

    def _fit(self, X: np.ndarray) -> None:
        self._check_params()
        dev = resolve_device(self.device)
        seed, gen = self._seed()
        n = X.shape[0]
        self._build_networks(tuple(X.shape[1:]))
        trunk, head = self.trunk_.to(dev).train(), self.head_.to(dev)
        Xt = self._prepare(X, dev)
        timings = {}
        if self.init == "kmeans":  # warm start: the head from the k-means partition of what it reads
            t0 = time.perf_counter()
            with eval_mode(trunk):
                z = batched(trunk, Xt)
            head.init_from_centroids(distributed.from_main(lambda: kmeans_target(z, int(self.n_clusters), seed=seed)[1].cpu()))
            timings["init"] = time.perf_counter() - t0
            del z
        prior = self.prior
        if _is_kmeans(prior):  # the proportions of the k-means partition of X as given (one added to each count)
            t0 = time.perf_counter()
            km = distributed.from_main(lambda: kmeans_target(torch.from_numpy(np.ascontiguousarray(
                X.reshape(n, -1), dtype=np.float32)), int(self.n_clusters), seed=seed)[0].cpu())
            prior = (torch.bincount(km, minlength=int(self.n_clusters)).double() + 1).numpy()
            timings["prior"] = time.perf_counter() - t0
        self.prior_ = None if prior is None else (np.asarray(prior, dtype=float) / np.sum(prior))
        opt = self._make_optimizer([*trunk.parameters(), *head.parameters()])
        epochs, n_updates = int(self.epochs), int(self.n_label_updates)
        update_at = set(np.linspace(0, epochs, n_updates, endpoint=False).astype(int).tolist())
        # torchrun: this rank's pseudo-labels are those of its rows (every rank holds all of X: a step reads
        # neighbours, which may lie in any shard)
        part = distributed.shard(n) if self._data_parallel else distributed.Shard(n)
        state: dict[str, Any] = {"labels": None, "changed": 1.0, "sinkhorn_s": 0.0, "shard": part}

        def relabel(epoch: int) -> None:
            if epoch not in update_at:
                return
            t0 = time.perf_counter()
            labels = self._make_targets(self._logits(Xt[part.rows]), epoch, epochs, state)
            if state["labels"] is not None:
                state["changed"] = distributed.global_mean((_hard(labels) != _hard(state["labels"])).sum(), n)
            state["labels"] = labels
            state["sinkhorn_s"] += time.perf_counter() - t0

        views = None
        if self.augment == "neighbors":
            t_knn = time.perf_counter()
            views = distributed.from_main(lambda: cosine_knn(Xt, min(int(self.n_neighbors), n - 1)).cpu()).to(dev)
            state["knn_s"] = time.perf_counter() - t_knn
        state.update(X=Xt, views=views)  # for targets that use the neighbourhoods (SP²OT)
        pick = torch.Generator(device=Xt.device).manual_seed(seed + 1)

        mine = views[part.rows] if views is not None else None

        def loss_fn(idx: torch.Tensor) -> dict[str, torch.Tensor]:
            inputs = part.to_global(idx)
            if mine is not None:  # the augmented view: a random near neighbour of each sample
                col = torch.randint(mine.shape[1], (len(idx),), device=idx.device, generator=pick)
                inputs = mine[idx, col]
            return {"loss": self._target_loss(head(trunk(Xt[inputs])), state["labels"][idx])}

        def log(epoch: int, record: dict[str, float]) -> None:
            record["labels_changed"] = state["changed"]
            if self.verbose:
                print(f"{self._display_name} epoch {epoch + 1}: loss {record['loss']:.4f}, labels changed {state['changed']:.4f}")

        t0 = time.perf_counter()
        history = train_epochs(opt, loss_fn, part, epochs=epochs, batch_size=int(self.batch_size), device=dev,
                               generator=gen, desc=self._display_name, before_epoch=relabel, after_epoch=log)
        train_s = time.perf_counter() - t0
        if state["labels"] is None:  # interrupted before the first update
            relabel(0)
        self.pseudo_labels_ = distributed.gather_rows(_hard(state["labels"]), part).cpu().numpy()
        self.labels_ = self._logits(Xt).argmax(1).cpu().numpy()
        self._warn_if_collapsed(self.labels_)
        trunk.eval()
        self.history_ = {"train": list(history)}
        mark_interrupted(self, history.interrupted)
        self.timings_ = {**timings, "train": train_s - state["sinkhorn_s"], "sinkhorn": state["sinkhorn_s"],
                         "knn": state.get("knn_s", 0.0)}

    # ------------------------------------------------------------------ what subclasses change
    def _make_optimizer(self, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=float(self.lr), momentum=float(self.momentum),
                               weight_decay=float(self.weight_decay))

    def _make_targets(self, logits: torch.Tensor, epoch: int, epochs: int, state: dict[str, Any]) -> torch.Tensor:
        """The pseudo-labels of every sample from the current logits (here: Sinkhorn, then arg-max)."""
        q = sinkhorn_target(logits, self.prior_, n_iters=int(self.sinkhorn_iters), lam=float(self.lam),
                            tol=float(self.sinkhorn_tol), sharded=not state["shard"].whole)
        return q.argmax(1)

    def _target_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), targets)

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        return torch.softmax(self._logits(self._prepare(X, self._net_device())), 1).cpu().numpy()

    def _transform(self, X: np.ndarray) -> np.ndarray:
        with eval_mode(self.trunk_):
            return batched(self.trunk_, self._prepare(X, self._net_device())).cpu().numpy()




def _is_kmeans(prior: Any) -> bool:
    return isinstance(prior, str) and prior == "kmeans"


def _hard(targets: torch.Tensor) -> torch.Tensor:
    """Hard labels from hard or soft (n × k) pseudo-labels."""
    return targets.argmax(1) if targets.dim() == 2 else targets
