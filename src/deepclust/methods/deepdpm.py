"""DeepDPM: deep clustering that infers the number of clusters while it trains (on given features).

Ronen, Finder & Freifeld, "DeepDPM: Deep Clustering With an Unknown Number of Clusters", CVPR 2022,
arXiv 2203.14309; authors' code github.com/BGU-CS-VIL/DeepDPM (``DeepDPM.py``, the variant for
given features, whose defaults are used here unless said otherwise).

A Dirichlet-process Gaussian mixture (DPGMM) is fitted by a network instead of by sampling. Every
epoch: the E-step responsibilities of the current Gaussians (means, full covariances, weights) are
the targets of a **clustering net** (d → 50 → K, softmax) trained by KL(targets ‖ net); each
cluster's **subclustering net** (d → 50 → 2) splits the cluster's points in two, trained by the
responsibility-weighted squared distance to its two sub-means; then the M-step recomputes the
Gaussians from the nets' soft assignments, as posterior estimates under the priors (NIW on every
mean and covariance, Dirichlet on the weights). Every ``move_every`` epochs, alternately:

* **split**: each cluster is split into its two subclusters when the Metropolis–Hastings ratio
  ``H = α Γ(N₁) p(X₁) Γ(N₂) p(X₂) / (Γ(N) p(X))`` (``p`` = NIW marginal likelihood,
  :func:`deepclust.engines.gpc.niw_log_marginal`) exceeds a uniform draw (so always when H ≥ 1);
  the two new clusters take the subclusters' Gaussians, the clustering net's row is duplicated;
* **merge**: each cluster is paired with its two nearest (by mean), and a pair is merged with
  probability ``min(1, 1/H)``; the merged cluster keeps the more likely one's net weights.

After a move the Gaussians stay fixed for ``freeze_epochs`` so that the nets learn the new K.
Prior as the authors set it from the data: NIW mean = the data mean, κ = 1e-4, ν = d + 2,
Ψ = 0.005 · I (rows are L2-normalised first, ``normalize``), α = 10; Dirichlet counts 0.1.

Differences from the paper and the authors' code, and why:

* **CPU-sized epochs**: 100 epochs instead of 500, with the schedule scaled by 0.2 (M-steps from
  epoch 5 instead of 25, subclusters from 9 instead of 45, moves from 11 every 6 instead of from
  55 every 30, the Gaussians held 3 epochs after a move instead of 5): the same 15 moves (8
  splits, 7 merges) in 5 × fewer epochs, so that 5,000 points fit two minutes on one shared CPU
  thread (with 200 epochs they did not).
* The clustering net learns at 5e-3 instead of 5e-4, at a constant rate (the authors' StepLR is not
  used): an epoch of 5,000 points is 40 steps (470 on the authors' 60,000-point MNIST), and at 5e-4
  the net had not learned a split within the held epochs, so the next M-step made both halves the
  same Gaussian and the merge step undid the split (measured on 8 blobs started from 3: 5–7
  clusters at the end; 8 at 5e-3).
* ``pca_dim`` (default None: off, as the paper) projects the normalised rows onto their leading
  principal components first: the full-covariance E-step costs O(n K d²) per epoch, too slow in
  the 384–784 dimensions of text embeddings or pixels on one CPU thread.
* The E-step targets are computed once per epoch (the Gaussians only change between epochs, so the
  targets are the same as the authors' per-batch ones), and the nets' soft assignments for the
  M-step are read after the epoch's steps instead of collected during them.
* After a move Adam's moments are reset for every layer (the authors reset the changed layers'); a new
  cluster's subclustering net starts from PyTorch's default initialisation; subclusters start by
  the exact 2-means of their points projected on the first principal component (the authors
  run k-means in that 1-D projection).
* k-means (k-means++ seeding, this package's engine) gives the first Gaussians of ``init_k`` clusters.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepclust.base import BaseClusterer
from deepclust.device import resolve_device
from deepclust.engines.gpc import niw_log_marginal
from deepclust.engines.kmeans import inner_kmeans
from deepclust.errors import DeepclustError
from deepclust.runtime import seeded_generator
from deepclust.training import batched, mark_interrupted, train_epochs
from deepclust.validation import check_number

__all__ = ["DeepDPM", "NIWPrior", "log_split_ratio", "accept"]

#: smoothing of both distributions in the KL loss (the authors' eps)
EPS = 1e-5
#: fewest points of a cluster (and, strictly more, of each subcluster) for a split to be proposed
MIN_POINTS = 5


class NIWPrior:
    """The normal-inverse-Wishart prior of every cluster (mean ``m0``, scatter ``psi``, ``kappa``, ``nu``)
    and the Dirichlet pseudo-count of the weights; the posterior (MAP) estimates of the M-step."""

    def __init__(self, m0: torch.Tensor, psi: torch.Tensor, kappa: float, nu: float, counts: float = 0.1):
        self.m0, self.psi, self.kappa, self.nu, self.counts = m0, psi, float(kappa), float(nu), float(counts)

    def log_marginal(self, X: torch.Tensor, mu: torch.Tensor) -> float:
        return niw_log_marginal(X, mu, self.m0, self.psi, self.kappa, self.nu)

    def means(self, n_k: torch.Tensor, data_means: torch.Tensor) -> torch.Tensor:
        return (n_k[:, None] * data_means + self.kappa * self.m0) / (n_k[:, None] + self.kappa)

    def cov(self, n_k: float, mu: torch.Tensor, data_cov: torch.Tensor) -> torch.Tensor:
        """Posterior covariance from the (weighted) data covariance ``data_cov`` of ``n_k`` points around ``mu``."""
        if n_k <= 0:
            return self.psi.clone()
        d = mu.shape[0]
        dm = (mu - self.m0)[:, None]
        return (self.psi + data_cov * n_k + (self.kappa * n_k / (self.kappa + n_k)) * (dm @ dm.T)) / (self.nu + n_k + d + 2)

    def weights(self, shares: torch.Tensor) -> torch.Tensor:
        return (shares + self.counts) / (shares + self.counts).sum()


def log_split_ratio(alpha: float, X1: torch.Tensor, X2: torch.Tensor, mu1: torch.Tensor, mu2: torch.Tensor,
                    mu: torch.Tensor, prior: NIWPrior) -> float:
    """log H of splitting the points ``X1 ∪ X2`` (around ``mu``) into ``X1`` (around ``mu1``) and ``X2``:
    log α + log Γ(N₁) + log p(X₁) + log Γ(N₂) + log p(X₂) − log Γ(N) − log p(X). A merge of the two
    has ratio 1/H, so its log is the negative."""
    n1, n2 = len(X1), len(X2)
    lg = lambda n: math.lgamma(n) if n > 0 else 0.0  # noqa: E731 - an empty side adds nothing (authors' merge rule)
    return (math.log(alpha) + lg(n1) + prior.log_marginal(X1, mu1) + lg(n2) + prior.log_marginal(X2, mu2)
            - lg(n1 + n2) - prior.log_marginal(torch.cat([X1, X2]), mu))


def accept(log_h: float, rng: np.random.Generator) -> bool:
    """Metropolis–Hastings: accept with probability min(1, H)."""
    return log_h > 0 or rng.random() < math.exp(log_h)


class SubclusterNets(nn.Module):
    """K independent nets d → hidden → 2 (the authors' block-diagonal subclustering net); ``forward(x, z)``
    gives each point's two logits from the net of its cluster ``z``."""

    def __init__(self, k: int, d: int, hidden: int):
        super().__init__()
        self.w1, self.b1 = nn.Parameter(torch.empty(k, d, hidden)), nn.Parameter(torch.empty(k, hidden))
        self.w2, self.b2 = nn.Parameter(torch.empty(k, hidden, 2)), nn.Parameter(torch.empty(k, 2))
        for i in range(k):
            self._reset(i)

    @torch.no_grad()
    def _reset(self, i: int) -> None:
        for w, b in ((self.w1, self.b1), (self.w2, self.b2)):  # nn.Linear's default initialisation
            bound = 1.0 / math.sqrt(w.shape[1])
            w[i].uniform_(-bound, bound)
            b[i].uniform_(-bound, bound)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = F.relu(torch.einsum("bd,kdh->bkh", x, self.w1) + self.b1)  # every net on every point: dense, fast
        out = torch.einsum("bkh,kho->bko", h, self.w2) + self.b2
        return out[torch.arange(len(x), device=x.device), z]

    @torch.no_grad()
    def select(self, rows: list[int]) -> "SubclusterNets":
        """A new module with the nets ``rows`` of this one (-1: a freshly initialised net)."""
        new = SubclusterNets(len(rows), self.w1.shape[1], self.w1.shape[2]).to(self.w1.device)
        for i, r in enumerate(rows):
            if r >= 0:
                for p_new, p_old in zip(new.parameters(), self.parameters()):
                    p_new[i] = p_old[r]
        return new


def _select_head(head: nn.Linear, rows: list[int]) -> nn.Linear:
    """The clustering net's last layer with the output rows ``rows`` of ``head`` (repeats allowed)."""
    new = nn.Linear(head.in_features, len(rows)).to(head.weight.device)
    with torch.no_grad():
        new.weight.copy_(head.weight[rows])
        new.bias.copy_(head.bias[rows])
    return new


def _two_means_1d(X: torch.Tensor) -> torch.Tensor:
    """Labels (0/1) of the exact 2-means of ``X``'s projection on its first principal component."""
    if len(X) < 2:
        return torch.zeros(len(X), dtype=torch.long, device=X.device)
    Xc = X - X.mean(0)
    v = torch.linalg.svd(Xc, full_matrices=False)[2][0] if Xc.abs().sum() > 0 else torch.zeros_like(X[0])
    t = Xc @ v
    s, order = torch.sort(t)
    n = len(s)
    c1, c2 = torch.cumsum(s, 0), torch.cumsum(s * s, 0)
    i = torch.arange(1, n, device=X.device, dtype=s.dtype)  # left part = first i points
    sse = (c2[:-1] - c1[:-1] ** 2 / i) + ((c2[-1] - c2[:-1]) - (c1[-1] - c1[:-1]) ** 2 / (n - i))
    cut = int(sse.argmin()) + 1
    labels = torch.zeros(n, dtype=torch.long, device=X.device)
    labels[order[cut:]] = 1
    return labels


class DeepDPM(BaseClusterer):
    """DeepDPM (Ronen, Finder & Freifeld, CVPR 2022) on given features; see the module notes.

    Parameters
    ----------
    n_clusters : accepted so that every method takes it, and ignored: DeepDPM finds k (start: ``init_k``).
    init_k : clusters at the start (1, the authors' default for given features).
    alpha : the Dirichlet-process concentration α in the split/merge ratio (10).
    epochs, start_params, start_subclusters, start_moves, move_every, freeze_epochs : the schedule
        (see the notes): M-steps from ``start_params``, subclusters from ``start_subclusters``, a split
        or merge (alternately, split first) every ``move_every`` epochs from ``start_moves``, Gaussians
        held for ``freeze_epochs`` after each.
    batch_size, cluster_lr, subcluster_lr, hidden_dim : Adam on the nets (128, 5e-3, 5e-3, 50; see the notes).
    normalize : L2-normalise the rows first (the authors' default transform).
    pca_dim : project onto this many principal components first (None: off).
    prior_kappa, prior_nu, prior_sigma_scale : the NIW prior (κ, ν (None: d + 2), Ψ = scale · I).
    device, random_state, verbose : as every method.

    Attributes: ``labels_`` (arg-max of the clustering net), ``n_clusters_`` (the mixture's components),
    ``n_clusters_found_`` (distinct labels: the inferred k), ``means_``, ``covariances_``, ``weights_``,
    ``history_`` (per epoch the number of components and the moves accepted), ``timings_``.
    """

    _requires_n_clusters = False
    _max_input_dims = 2
    _min_samples = 2
    _networks = ("cluster_net_",)
    _saved_arrays = ("labels_", "means_", "covariances_", "weights_", "pca_mean_", "pca_components_")
    _saved_values = ("n_components_", "n_clusters_found_", "history_", "timings_", "interrupted_")

    def __init__(self, n_clusters: int | None = None, *, init_k: int = 1, alpha: float = 10.0, epochs: int = 100,
                 start_params: int = 5, start_subclusters: int = 9, start_moves: int = 11, move_every: int = 6,
                 freeze_epochs: int = 3, batch_size: int = 128, cluster_lr: float = 5e-3, subcluster_lr: float = 5e-3,
                 hidden_dim: int = 50, normalize: bool = True, pca_dim: int | None = None, prior_kappa: float = 1e-4,
                 prior_nu: float | None = None, prior_sigma_scale: float = 0.005, device: Any = "auto",
                 random_state: int | None = 0, verbose: bool = False):
        self.n_clusters = n_clusters
        self.init_k = init_k
        self.alpha = alpha
        self.epochs = epochs
        self.start_params = start_params
        self.start_subclusters = start_subclusters
        self.start_moves = start_moves
        self.move_every = move_every
        self.freeze_epochs = freeze_epochs
        self.batch_size = batch_size
        self.cluster_lr = cluster_lr
        self.subcluster_lr = subcluster_lr
        self.hidden_dim = hidden_dim
        self.normalize = normalize
        self.pca_dim = pca_dim
        self.prior_kappa = prior_kappa
        self.prior_nu = prior_nu
        self.prior_sigma_scale = prior_sigma_scale
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    @property
    def n_clusters_(self) -> int:
        return int(self.n_components_)

    # ------------------------------------------------------------------ input
    def _check_params(self, n: int) -> None:
        for name in ("init_k", "epochs", "batch_size", "hidden_dim", "move_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise DeepclustError(f"{name} must be a whole number >= 1, got {v!r}")
        for name in ("start_params", "start_subclusters", "start_moves", "freeze_epochs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise DeepclustError(f"{name} must be a whole number >= 0, got {v!r}")
        if self.init_k > n:
            raise DeepclustError(f"init_k={self.init_k} is larger than the number of samples ({n})")
        for name in ("alpha", "cluster_lr", "subcluster_lr", "prior_kappa", "prior_sigma_scale"):
            check_number(getattr(self, name), name, positive=True)
        if self.pca_dim is not None and (isinstance(self.pca_dim, bool) or not isinstance(self.pca_dim, (int, np.integer))
                                         or self.pca_dim < 1):
            raise DeepclustError(f"pca_dim must be a whole number >= 1 or None, got {self.pca_dim!r}")

    def _space(self, X: np.ndarray) -> np.ndarray:
        """The features the mixture models: rows L2-normalised (``normalize``), then the fitted PCA."""
        Z = X.reshape(len(X), -1).astype(np.float32)
        if self.normalize:
            Z = Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)
        if getattr(self, "pca_components_", None) is not None:
            Z = (Z - self.pca_mean_) @ self.pca_components_.T
        return np.ascontiguousarray(Z, np.float32)

    def _build_networks(self, input_shape: tuple[int, ...]) -> None:
        d = int(self.pca_components_.shape[0]) if getattr(self, "pca_components_", None) is not None \
            else int(np.prod(input_shape))
        h = int(self.hidden_dim)
        self.cluster_net_ = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, int(self.n_components_)))

    # ------------------------------------------------------------------ fit
    def _fit(self, X: np.ndarray) -> None:
        self._check_params(len(X))
        dev = resolve_device(self.device)
        seed, gen = seeded_generator(self.random_state)
        rng = np.random.default_rng(seed)
        self.pca_mean_ = self.pca_components_ = None
        if self.pca_dim is not None and int(self.pca_dim) < min(self.n_features_in_, len(X)):
            from sklearn.decomposition import PCA

            pca = PCA(int(self.pca_dim), random_state=seed).fit(self._space(X))
            self.pca_mean_, self.pca_components_ = pca.mean_.astype(np.float32), pca.components_.astype(np.float32)
        Zf = torch.as_tensor(self._space(X), device=dev)
        Z = Zf.double()
        n, d = Z.shape
        nu = float(self.prior_nu) if self.prior_nu is not None else d + 2.0
        if nu <= d - 1:
            raise DeepclustError(f"prior_nu must be above d - 1 = {d - 1} (d: the features the mixture models), got {nu}")
        prior = NIWPrior(Z.mean(0), torch.eye(d, dtype=torch.float64, device=dev) * float(self.prior_sigma_scale),
                         float(self.prior_kappa), nu)
        K = int(self.init_k)
        km = inner_kmeans(Zf.cpu().numpy(), K, n_init=1, random_state=seed, device=dev)
        hard = torch.as_tensor(km.labels_, device=dev)
        R0 = F.one_hot(hard, K).double()
        self.weights_t, self.means_t, self.covs_t = self._gaussians(Z, R0, prior, n)
        self.n_components_ = K
        self.cluster_net_ = nn.Sequential(nn.Linear(d, int(self.hidden_dim)), nn.ReLU(),
                                          nn.Linear(int(self.hidden_dim), K)).to(dev)
        self.sub_nets_ = SubclusterNets(K, d, int(self.hidden_dim)).to(dev)
        self.sub_means_ = self.sub_covs_ = self.sub_weights_ = None
        opt = torch.optim.Adam([{"params": self.cluster_net_.parameters(), "lr": float(self.cluster_lr)},
                                {"params": self.sub_nets_.parameters(), "lr": float(self.subcluster_lr)}])
        state: dict[str, Any] = {"targets": None, "epoch": 0, "frozen_until": -1, "last_move": "merge"}
        history: list[dict[str, Any]] = []

        def before_epoch(epoch: int) -> None:
            state["epoch"] = epoch
            state["targets"] = self._responsibilities(Z, self.means_t, self.covs_t, self.weights_t).float()

        def loss_fn(idx: torch.Tensor) -> dict[str, torch.Tensor]:
            x = Zf[idx]
            r = torch.softmax(self.cluster_net_(x), 1)
            t = state["targets"][idx]
            t = (t + EPS) / (t + EPS).sum(1, keepdim=True)
            loss = cluster = (t * (t.log() - ((r + EPS) / (r + EPS).sum(1, keepdim=True)).log())).sum(1).mean()
            out = {"cluster": cluster.detach()}
            if state["epoch"] >= int(self.start_subclusters) and self.sub_means_ is not None:
                z = r.detach().argmax(1)
                rs = torch.softmax(self.sub_nets_(x, z), 1)
                mus = self.sub_means_.float().view(-1, 2, d)[z]  # (b, 2, d)
                sub = (rs * ((x[:, None] - mus) ** 2).sum(-1)).sum(1).mean()
                loss = loss + sub
                out["subcluster"] = sub.detach()
            return {"loss": loss, **out}

        def after_epoch(epoch: int, record: dict[str, Any]) -> None:
            moved = self._end_of_epoch(epoch, Z, Zf, prior, rng, state)
            record.update(K=self.n_components_, used=state["used"], **moved)
            history.append(record)
            if moved:
                opt.state.clear()  # the layers changed shape: fresh Adam moments
                opt.param_groups[0]["params"] = list(self.cluster_net_.parameters())
                opt.param_groups[1]["params"] = list(self.sub_nets_.parameters())
                state["targets"] = None
            if self.verbose and (moved or epoch % 20 == 0):
                print(f"DeepDPM epoch {epoch + 1}: K = {self.n_components_}, {state['used']} used {moved or ''}", flush=True)

        t0 = time.perf_counter()
        hist = train_epochs(opt, loss_fn, n, epochs=int(self.epochs), batch_size=int(self.batch_size), device=dev,
                            generator=gen, desc="DeepDPM", mixed_precision=False, before_epoch=before_epoch,
                            after_epoch=after_epoch)
        mark_interrupted(self, hist.interrupted)
        self.cluster_net_.eval()
        self.labels_ = batched(self.cluster_net_, Zf, mixed_precision=False).argmax(1).cpu().numpy()
        self.n_clusters_found_ = int(len(np.unique(self.labels_)))
        self.means_ = self.means_t.float().cpu().numpy()
        self.covariances_ = self.covs_t.float().cpu().numpy()
        self.weights_ = self.weights_t.float().cpu().numpy()
        self.history_ = history
        self.timings_ = {"train": time.perf_counter() - t0}
        del self.means_t, self.covs_t, self.weights_t, self.sub_nets_, self.sub_means_, self.sub_covs_, self.sub_weights_

    # ------------------------------------------------------------------ the mixture
    @staticmethod
    def _gaussians(Z: torch.Tensor, R: torch.Tensor, prior: NIWPrior, n_total: int
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """M-step: (weights, means, covariances) from soft assignments ``R`` (n × m) of the points ``Z``;
        the weights are shares of ``n_total`` points under the Dirichlet prior."""
        r = R.sum(0)
        w = prior.weights(r / n_total)
        s1 = R.T @ Z
        mus = prior.means(w * n_total, s1 / r.clamp_min(1e-12)[:, None])
        # Σ_n r_nk (z_n − μ_k)(z_n − μ_k)ᵀ for every k at once
        ms = mus[:, :, None] * s1[:, None, :]
        scatter = ((R.T[:, :, None] * Z).transpose(1, 2) @ Z - ms - ms.transpose(1, 2)
                   + r[:, None, None] * mus[:, :, None] * mus[:, None, :])
        covs = []
        eye = torch.eye(Z.shape[1], dtype=Z.dtype, device=Z.device)
        for k in range(R.shape[1]):
            c = prior.cov(float(r[k]), mus[k], scatter[k] / (float(r[k]) + 1e-4))
            if torch.linalg.cholesky_ex(c)[1] != 0:
                c = c + 1e-5 * eye
            covs.append(c)
        return w, mus, torch.stack(covs)

    @staticmethod
    def _responsibilities(Z: torch.Tensor, mus: torch.Tensor, covs: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """E-step: p(k | x) of every point under the Gaussians (n × K)."""
        L = torch.linalg.cholesky(covs)
        logp = []
        for k in range(len(mus)):
            sol = torch.linalg.solve_triangular(L[k], (Z - mus[k]).T, upper=False)
            logdet = 2.0 * torch.log(torch.diagonal(L[k])).sum()
            logp.append(-0.5 * (Z.shape[1] * math.log(2 * math.pi) + logdet + (sol * sol).sum(0)) + torch.log(w[k]))
        return torch.softmax(torch.stack(logp, 1), 1)

    def _subclusters(self, Zk: torch.Tensor, prior: NIWPrior, weight: torch.Tensor, n: int,
                     labels: torch.Tensor | None = None, R: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The two sub-Gaussians of the points ``Zk`` of one cluster (of weight ``weight``): from the soft
        sub-assignments ``R`` (n_k × 2), or the hard ``labels``, or (neither) a fresh 1-D 2-means."""
        if len(Zk) < 2:  # nothing to split: two copies of the prior's mean (or of the one point)
            centre = Zk[0] if len(Zk) else prior.m0
            return torch.stack([weight / 2] * 2), torch.stack([centre] * 2), torch.stack([prior.psi] * 2)
        if R is None:
            R = F.one_hot(labels if labels is not None else _two_means_1d(Zk), 2).double()
        w, mus, covs = self._gaussians(Zk, R, prior, len(Zk))
        return w * weight, mus, covs

    def _end_of_epoch(self, epoch: int, Z: torch.Tensor, Zf: torch.Tensor, prior: NIWPrior,
                      rng: np.random.Generator, state: dict[str, Any]) -> dict[str, Any]:
        """M-step, subclusters, and the split or merge this epoch is due; returns the moves made."""
        with torch.no_grad():
            R = batched(lambda x: torch.softmax(self.cluster_net_(x), 1), Zf, mixed_precision=False).double()
            z = R.argmax(1)
            K, n = self.n_components_, len(Z)
            state["used"] = len(torch.unique(z))
            frozen = epoch < int(self.start_params) or epoch <= state["frozen_until"]
            if not frozen:
                self.weights_t, self.means_t, self.covs_t = self._gaussians(Z, R, prior, n)
            sub_start = int(self.start_subclusters)
            if epoch + 1 == sub_start or (epoch >= sub_start and self.sub_means_ is None):
                self._set_subclusters([self._subclusters(Z[z == k], prior, self.weights_t[k], n) for k in range(K)])
            elif epoch >= sub_start and not frozen:
                subs = []
                for k in range(K):
                    Zk = Z[z == k]
                    rs = torch.softmax(self.sub_nets_(Zf[z == k], torch.full((len(Zk),), k, device=Z.device)), 1).double() \
                        if len(Zk) else Zk.new_zeros(0, 2)
                    usable = len(Zk) >= 2 and bool((rs.sum(0) > 0).all()) and len(torch.unique(rs.argmax(1))) == 2
                    subs.append(self._subclusters(Zk, prior, self.weights_t[k], n, R=rs if usable else None))
                self._set_subclusters(subs)
            due = epoch >= int(self.start_moves) and (epoch - int(self.start_moves)) % int(self.move_every) == 0
            if not due or frozen or self.sub_means_ is None:
                return {}
            move = "split" if state["last_move"] == "merge" else "merge"
            state["last_move"] = move
            done = self._split(Z, Zf, z, prior, rng) if move == "split" else self._merge(Z, R, z, prior, rng)
            if not done:
                return {}
            state["frozen_until"] = epoch + int(self.freeze_epochs)
            return {move: done}

    def _set_subclusters(self, subs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> None:
        self.sub_weights_ = torch.cat([s[0] for s in subs])
        self.sub_means_ = torch.cat([s[1] for s in subs])
        self.sub_covs_ = torch.cat([s[2] for s in subs])

    def _split(self, Z: torch.Tensor, Zf: torch.Tensor, z: torch.Tensor, prior: NIWPrior,
               rng: np.random.Generator) -> int:
        """Propose to split every cluster into its two subclusters; apply the accepted ones (count)."""
        K, n = self.n_components_, len(Z)
        split, halves = [], {}
        for k in range(K):
            idx = torch.nonzero(z == k).squeeze(1)
            if len(idx) < MIN_POINTS:
                continue
            side = self.sub_nets_(Zf[idx], torch.full((len(idx),), k, device=Z.device)).argmax(1)
            a, b = idx[side == 0], idx[side == 1]
            if min(len(a), len(b)) <= MIN_POINTS:
                continue
            log_h = log_split_ratio(float(self.alpha), Z[a], Z[b], self.sub_means_[2 * k], self.sub_means_[2 * k + 1],
                                    self.means_t[k], prior)
            if accept(log_h, rng):
                split.append(k)
                halves[k] = (a, b)
        if not split:
            return 0
        keep = [k for k in range(K) if k not in split]
        sub_rows = [i for k in split for i in (2 * k, 2 * k + 1)]
        subs = [self._subclusters(Z[i], prior, self.sub_weights_[2 * k + s], n) for k in split
                for s, i in enumerate(halves[k])]
        self._restructure(keep, [k for k in split for _ in range(2)], [-1] * len(sub_rows), subs,
                          (self.weights_t[keep], self.means_t[keep], self.covs_t[keep]),
                          (self.sub_weights_[sub_rows], self.sub_means_[sub_rows], self.sub_covs_[sub_rows]))
        return len(split)

    def _merge(self, Z: torch.Tensor, R: torch.Tensor, z: torch.Tensor, prior: NIWPrior,
               rng: np.random.Generator) -> int:
        """Propose to merge every cluster with each of its two nearest (by mean); apply the accepted (count)."""
        K, n = self.n_components_, len(Z)
        if K < 2:
            return 0
        d2 = torch.cdist(self.means_t, self.means_t)
        d2.fill_diagonal_(float("inf"))
        near = torch.topk(d2, min(2, K - 1), largest=False).indices.cpu().numpy()
        free, pairs = set(range(K)), []
        for i in range(K):
            for j in sorted(int(j) for j in near[i]):
                if i not in free or j not in free:
                    continue
                a, b = torch.nonzero(z == i).squeeze(1), torch.nonzero(z == j).squeeze(1)
                na, nb = len(a), len(b)
                mu = (na * self.means_t[i] + nb * self.means_t[j]) / (na + nb) if na + nb else \
                    (self.means_t[i] + self.means_t[j]) / 2
                log_h = -log_split_ratio(float(self.alpha), Z[a], Z[b], self.means_t[i], self.means_t[j], mu, prior)
                if accept(log_h, rng):
                    free -= {i, j}
                    better = i if prior.log_marginal(Z[a], self.means_t[i]) >= prior.log_marginal(Z[b], self.means_t[j]) else j
                    pairs.append((i, j, better, mu))
        if not pairs:
            return 0
        keep = sorted(free)
        merged = []
        for i, j, _, mu in pairs:
            r = R[:, i] + R[:, j]
            diff = Z - mu
            w = self.weights_t[i] + self.weights_t[j]
            cov = prior.cov(float(r.sum()), mu, (r[:, None] * diff).T @ diff / (float(r.sum()) + 1e-4))
            merged.append((w, prior.means((w * n)[None], mu[None])[0], cov))
        both = [torch.cat([torch.nonzero(z == i).squeeze(1), torch.nonzero(z == j).squeeze(1)]) for i, j, _, _ in pairs]
        subs = [self._subclusters(Z[idx], prior, m[0], n) for idx, m in zip(both, merged)]
        self._restructure(keep, [p[2] for p in pairs], [p[2] for p in pairs], subs,
                          (self.weights_t[keep], self.means_t[keep], self.covs_t[keep]),
                          tuple(torch.stack([m[c] for m in merged]) for c in range(3)))
        return len(pairs)

    def _restructure(self, keep: list[int], head_rows: list[int], net_rows: list[int],
                     new_subs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                     kept: tuple[torch.Tensor, ...], added: tuple[torch.Tensor, ...]) -> None:
        """The mixture after a move: the clusters ``keep`` first, then the new ones (Gaussians ``added``,
        clustering-net rows ``head_rows``, subclustering nets ``net_rows`` (-1: fresh), subclusters
        ``new_subs``)."""
        self.weights_t, self.means_t, self.covs_t = (torch.cat([a, b]) for a, b in zip(kept, added))
        self.weights_t = self.weights_t / self.weights_t.sum()
        self.cluster_net_[2] = _select_head(self.cluster_net_[2], keep + head_rows)
        self.sub_nets_ = self.sub_nets_.select(keep + net_rows)
        rows = [i for k in keep for i in (2 * k, 2 * k + 1)]
        self._set_subclusters([(self.sub_weights_[rows], self.sub_means_[rows], self.sub_covs_[rows]), *new_subs])
        self.n_components_ = len(self.weights_t)

    # ------------------------------------------------------------------ predict
    def _transform(self, X: np.ndarray) -> np.ndarray:
        """The features the mixture models (rows normalised, then the PCA when ``pca_dim``)."""
        return self._space(X)

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        dev = next(self.cluster_net_.parameters()).device
        Z = torch.as_tensor(self._space(X), device=dev)
        return batched(lambda x: torch.softmax(self.cluster_net_(x), 1), Z, mixed_precision=False).cpu().numpy()
