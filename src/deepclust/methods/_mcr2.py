"""What MLC and CPP share: clustering by maximal coding rate reduction (MCR²) on a fixed embedding.

A network (:class:`deepclust.heads.MCR2Net`) maps each sample to a feature ``z`` and a cluster code
``c``, both on the unit sphere. On every mini-batch the membership ``Π`` is the doubly stochastic
projection of ``|c_i · c_j|`` (:func:`deepclust.heads.doubly_stochastic`, entropic Sinkhorn), and
the loss is ``−R(Z) + R_c(Z, Π) + γ/2 ‖Π‖²_F`` (:func:`deepclust.losses.rate_reduction`): expand the
whole batch, compress every sample's soft group, and keep Π from collapsing to the identity. Before
that, ``warmup_epochs`` epochs maximise ``R(Z)`` alone, then the cluster head is set to a copy of the
feature head (the one-shot initialisation of Π; :meth:`~deepclust.heads.MCR2Net.init_cluster_from_features`).

Clusters, as in both papers, by spectral clustering of Π: here Π of ``n_anchors`` (default 2,000)
samples drawn at random once, its top-k eigenvectors V with eigenvalues λ (rows normalised, Ng,
Jordan & Weiss 2002) and k-means on them. Any sample, seen or new, then gets the row p that Π would
give it against those anchors, ``p_j = softmax_j(|c · c_j| / η + g_j)`` with the anchors' Sinkhorn
column potentials g, and the Nyström extension of the eigenvectors, ``p V / λ`` (an anchor's own
row gives back its coordinates), normalised; ``labels_`` is the nearest k-means centre and
``predict_proba`` the softmax of minus the squared distances to the centres over their mean within
the anchors. (The papers run spectral clustering on the n × n Π of the whole set; at n = 20,000
that matrix alone is 1.6 GB. Summing each row's membership per anchor cluster instead, tried first,
let big clusters swallow small ones: 13 of 20 clusters non-empty on StackOverflow.)

The number of clusters by coding length (CPP, §3.1): :meth:`MCR2Clusterer.estimate_k` partitions the
anchors for each candidate k and keeps the k whose partition codes their features ``z`` in the fewest
nats (:func:`deepclust.losses.coding_length`). Training does not use k at all; only the last step does.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import torch

from deepclust.device import resolve_device
from deepclust.engines.kmeans import inner_kmeans
from deepclust.errors import DeepclustError
from deepclust.heads import MCR2Net, sinkhorn_potentials
from deepclust.losses import coding_length, coding_rate, rate_reduction
from deepclust.methods._selflabel import SelfLabelClusterer, eval_mode
from deepclust.training import batched, mark_interrupted, train_epochs


def spectral_embedding(membership: torch.Tensor, n_components: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The top ``n_components`` eigenvectors (m × c, as columns) and eigenvalues of the symmetrised
    membership: a doubly stochastic Π is its own normalised affinity (every degree is 1), so these are
    the normalised spectral clustering's coordinates (Ng, Jordan & Weiss, NIPS 2002, before the rows
    are normalised)."""
    sym = ((membership + membership.T) / 2).double()
    vals, vecs = torch.linalg.eigh(sym)  # ascending
    return vecs[:, -int(n_components):].flip(1).float(), vals[-int(n_components):].flip(0).float()


class MCR2Clusterer(SelfLabelClusterer):
    """Base of :class:`~deepclust.methods.cpp.CPP` and :class:`~deepclust.methods.mlc.MLC`; see the module notes.

    Parameters
    ----------
    n_clusters : number of clusters K (used only by the final spectral clustering).
    hidden_dims, out_dim : widths of the trunk and of the two heads' outputs (z and c).
    eps_sq : the coding precision ε² of R and R_c.
    eta, sinkhorn_iters : entropic regularisation η and Sinkhorn iterations of the membership.
    pi_weight : γ, the weight of ½‖Π‖²_F.
    warmup_epochs : epochs maximising R(Z) alone before the one-shot initialisation (0: copy at once).
    epochs, batch_size : joint training (batches are balanced: sizes differ by at most one).
    lr, weight_decay : SGD of the trunk and the feature head; lr_cluster, weight_decay_cluster: of the
        cluster head; momentum : both.
    n_anchors : samples whose membership is spectrally clustered (the rest are assigned through it).
    normalize : L2-normalise the rows of X and scale them to norm √d (see deepclust.methods._selflabel).
    device, random_state, verbose : as every method.

    Attributes: ``labels_``, ``anchor_labels_`` (spectral clusters of the anchors), ``history_`` (per
    epoch: ``rate``, ``compressed_rate``, ``rate_reduction`` ΔR, the loss), ``timings_``.
    """

    _networks = ("net_",)
    _saved_arrays = ("labels_", "anchor_inputs_", "anchor_labels_", "anchor_potentials_", "spectral_vectors_",
                     "spectral_values_", "spectral_centers_")
    _saved_values = ("history_", "timings_", "interrupted_", "spectral_scale_")

    def __init__(self, n_clusters: int = 10, *, hidden_dims: Sequence[int] = (1024, 1024), out_dim: int = 128,
                 eps_sq: float = 0.1, eta: float = 0.175, sinkhorn_iters: int = 5, pi_weight: float = 0.05,
                 warmup_epochs: int = 0, epochs: int = 30, batch_size: int = 1000, lr: float = 3e-3,
                 lr_cluster: float = 2e-3, momentum: float = 0.9, weight_decay: float = 1e-4,
                 weight_decay_cluster: float = 5e-3, n_anchors: int = 2000, normalize: bool = True,
                 device: Any = "auto", random_state: int | None = 0, verbose: bool = False):
        self.n_clusters = n_clusters
        self.hidden_dims = hidden_dims
        self.out_dim = out_dim
        self.eps_sq = eps_sq
        self.eta = eta
        self.sinkhorn_iters = sinkhorn_iters
        self.pi_weight = pi_weight
        self.warmup_epochs = warmup_epochs
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.lr_cluster = lr_cluster
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.weight_decay_cluster = weight_decay_cluster
        self.n_anchors = n_anchors
        self.normalize = normalize
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ fit
    def _check_params(self) -> None:
        self._check_common()
        for name in ("eps_sq", "eta", "lr_cluster"):
            if not float(getattr(self, name)) > 0:
                raise DeepclustError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name, low in (("warmup_epochs", 0), ("sinkhorn_iters", 1), ("out_dim", 1), ("n_anchors", 2)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise DeepclustError(f"{name} must be a whole number >= {low}, got {value!r}")
        if not float(self.pi_weight) >= 0:
            raise DeepclustError(f"pi_weight must be >= 0, got {self.pi_weight!r}")

    def _build_networks(self, input_shape: tuple[int, ...]) -> None:
        self.net_ = MCR2Net(input_shape[0], tuple(self.hidden_dims), int(self.out_dim))

    def _membership(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The doubly stochastic membership n·Π of the codes ``c`` (rows and columns sum to 1) and
        Sinkhorn's column log-potentials g (which assign a new sample against these ones)."""
        scores = (c @ c.T).abs()
        f, g = sinkhorn_potentials(scores, float(self.eta), int(self.sinkhorn_iters))
        return torch.exp(scores / float(self.eta) + f[:, None] + g[None, :]), g

    def _fit(self, X: np.ndarray) -> None:
        self._check_params()
        dev = resolve_device(self.device)
        seed, gen = self._seed()
        n = X.shape[0]
        self._build_networks(tuple(X.shape[1:]))
        net = self.net_.to(dev).train()
        Xt = self._prepare(X, dev)
        momentum = float(self.momentum)
        opt = torch.optim.SGD([
            {"params": [*net.trunk.parameters(), *net.feature.parameters()], "lr": float(self.lr),
             "weight_decay": float(self.weight_decay)},
            {"params": list(net.cluster.parameters()), "lr": float(self.lr_cluster),
             "weight_decay": float(self.weight_decay_cluster)}], lr=float(self.lr), momentum=momentum)
        batch = -(-n // -(-n // int(self.batch_size)))  # balanced batches: no batch of one for batch norm
        eps_sq = float(self.eps_sq)

        def warmup_loss(idx: torch.Tensor) -> dict[str, torch.Tensor]:
            rate = coding_rate(net(Xt[idx])[0], eps_sq)
            return {"loss": -rate, "rate": rate.detach()}

        def joint_loss(idx: torch.Tensor) -> dict[str, torch.Tensor]:
            z, c = net(Xt[idx])
            pi = self._membership(c)[0]
            terms = rate_reduction(z, pi, eps_sq)
            reg = float(self.pi_weight) / 2 * pi.pow(2).sum()
            return {"loss": -terms["rate_reduction"] + reg, **{k: v.detach() for k, v in terms.items()}}

        def log(phase: str):
            def after(epoch: int, record: dict[str, float]) -> None:
                record["phase"] = phase
                if self.verbose:
                    print(f"{self._display_name} {phase} epoch {epoch + 1}: " + ", ".join(
                        f"{k} {v:.4f}" for k, v in record.items() if isinstance(v, float)))
            return after

        common = dict(batch_size=batch, device=dev, generator=gen, mixed_precision=False)
        t0 = time.perf_counter()
        history = train_epochs(opt, warmup_loss, n, epochs=int(self.warmup_epochs), desc=f"{self._display_name} warm-up",
                               after_epoch=log("warmup"), **common)
        interrupted = history.interrupted
        net.init_cluster_from_features()
        if not interrupted:
            joint = train_epochs(opt, joint_loss, n, epochs=int(self.epochs), desc=self._display_name,
                                 after_epoch=log("joint"), **common)
            history.extend(joint)
            interrupted = joint.interrupted
        train_s = time.perf_counter() - t0
        net.eval()
        t0 = time.perf_counter()
        anchors = np.sort(np.random.default_rng(seed).choice(n, min(n, int(self.n_anchors)), replace=False))
        self.anchor_inputs_ = np.ascontiguousarray(X[anchors], dtype=np.float32)
        vecs, vals = spectral_embedding(self._anchor_membership()[1], int(self.n_clusters))
        emb = torch.nn.functional.normalize(vecs, dim=1).cpu().numpy()
        km = inner_kmeans(emb, int(self.n_clusters), n_init=10, random_state=seed, device="cpu")
        self.anchor_labels_, self.spectral_centers_ = km.labels_, km.cluster_centers_.astype(np.float32)
        self.spectral_vectors_, self.spectral_values_ = vecs.cpu().numpy(), vals.cpu().numpy()
        self.spectral_scale_ = max(float(km.inertia_) / len(emb), 1e-6)
        self.labels_ = self._predict(X)
        self._warn_if_collapsed(self.labels_)
        self.history_ = {"train": list(history)}
        mark_interrupted(self, interrupted)
        self.timings_ = {"train": train_s, "cluster": time.perf_counter() - t0}

    # ------------------------------------------------------------------ clusters
    def _anchor_membership(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Features z and membership Π of the anchors; sets ``anchor_potentials_`` (Sinkhorn's column
        potentials g, which assign new samples)."""
        Xa = self._prepare(self.anchor_inputs_, self._net_device())
        with eval_mode(self.net_), torch.no_grad():
            z, c = self.net_(Xa)
            pi, g = self._membership(c)
        self.anchor_potentials_ = g.cpu().numpy()
        return z, pi

    def _spectral_labels(self, k: int, seed: int, embedding: torch.Tensor, n_init: int = 3) -> np.ndarray:
        """k-means (``n_init`` starts) on the first k of the anchors' spectral coordinates ``embedding``, rows normalised."""
        emb = torch.nn.functional.normalize(embedding[:, :k], dim=1)
        return inner_kmeans(emb.cpu().numpy(), k, n_init=n_init, random_state=seed, device="cpu").labels_

    def _sq_distances(self, X: np.ndarray) -> torch.Tensor:
        """Squared distances of every sample's spectral coordinates (Nyström extension) to the centres."""
        dev = self._net_device()
        with eval_mode(self.net_):
            c_a = batched(lambda xb: self.net_(xb)[1], self._prepare(self.anchor_inputs_, dev), mixed_precision=False)
            c = batched(lambda xb: self.net_(xb)[1], self._prepare(X, dev), mixed_precision=False)
        g = torch.as_tensor(self.anchor_potentials_, device=dev)
        basis = torch.as_tensor(self.spectral_vectors_, device=dev) / torch.as_tensor(
            self.spectral_values_, device=dev).clamp_min(1e-6)
        centers = torch.as_tensor(self.spectral_centers_, device=dev)
        out = [torch.cdist(torch.nn.functional.normalize(torch.softmax((cb @ c_a.T).abs() / float(self.eta) + g, dim=1)
                                                          @ basis, dim=1), centers).pow(2) for cb in c.split(4096)]
        return torch.cat(out)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return self._sq_distances(X).argmin(1).cpu().numpy()

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        return torch.softmax(-self._sq_distances(X) / float(self.spectral_scale_), dim=1).cpu().numpy()

    def _transform(self, X: np.ndarray) -> np.ndarray:
        """The learned features z (unit vectors), the space the rate reduction shapes."""
        with eval_mode(self.net_):
            return batched(lambda xb: self.net_(xb)[0], self._prepare(X, self._net_device()),
                           mixed_precision=False).cpu().numpy()

    def estimate_k(self, k_values: Sequence[int] | None = None) -> dict[str, Any]:
        """CPP's estimate of the number of clusters (Chu et al., ICLR 2024, §3.1): for every candidate k
        the anchors' spectral partition (k-means with 3 starts), scored by the coding length of their features z
        (:func:`deepclust.losses.coding_length`); the smallest wins. ``k_values``: default 2 … 40 (at
        most a tenth of the anchors). Returns ``{"k", "k_values", "coding_length"}``; no labels used."""
        self._check_is_fitted()
        m = len(self.anchor_inputs_)
        ks = sorted({int(k) for k in (k_values or range(2, max(3, min(41, m // 10 + 1))))})
        if not ks or ks[0] < 2 or ks[-1] >= m:
            raise DeepclustError(f"k_values must be whole numbers from 2 to {m - 1} (the anchors), got {k_values!r}")
        z, pi = self._anchor_membership()
        emb = spectral_embedding(pi, ks[-1])[0]
        seed = 0 if self.random_state is None else int(self.random_state)
        lengths = [coding_length(z, torch.as_tensor(self._spectral_labels(k, seed, emb), device=z.device),
                                 float(self.eps_sq)) for k in ks]
        return {"k": ks[int(np.argmin(lengths))], "k_values": ks, "coding_length": [round(v, 3) for v in lengths]}
