"""Generalized category discovery: a semi-supervised Gaussian mixture whose size is found by split and merge.

Zhao, Wen & Han, "Learning Semi-supervised Gaussian Mixture Models for Generalized Category
Discovery" (GPC), ICCV 2023; authors' code: github.com/DTennant/GPC. In GCD the labelled samples
come from some (known) classes, and the unlabelled samples hold both those classes and novel ones,
whose number is not known.

GPC alternates representation learning with the estimation of a semi-supervised Gaussian mixture
(GMM). **Here only the mixture part runs, on frozen features** (a pretrained embedding such as
MiniLM, or a table): the representation-learning half of the paper (its prototypical contrastive
loss and fine-tuning of the backbone) is left out. One round of the mixture part, as in the
authors' ``split_and_merge_op``:

1. semi-supervised k-means (Basu et al.'s constrained k-means: the labelled samples keep their
   class's component; centres start at the class means, the others k-means++ style, then from the
   previous round's) gives the components and hard assignments;
2. every component without labelled samples is split in two by 2-means, and the split is kept when
   the Metropolis–Hastings ratio of the split under a normal-inverse-Wishart (NIW) prior is above 1,
   ``H = Γ(N₁) p(X₁) Γ(N₂) p(X₂) / (Γ(N) p(X))`` with ``p`` the NIW marginal likelihood (DeepDPM's
   rule, Ronen et al. CVPR 2022, with α = 1);
3. the components that were not split are each paired with their nearest such component and merged
   when the inverse ratio is above 1.

Rounds repeat until no split or merge is accepted (or ``max_rounds``). Where this differs from the
authors' code, and why:

* they accept a rejected proposal with probability 0.1 to keep exploring while the representation
  changes; with frozen features that only adds noise, so proposals are accepted on the ratio alone;
* they never touch a component that holds labelled samples; on frozen features a novel class next to
  a known one is then swallowed for good. Here such a component may shed its unlabelled part (2-means
  with its labelled samples held in one half, the same ratio), and may absorb its nearest free
  component (the merge ratio); labelled samples never change class;
* the mixture runs on ``pca_dim`` (16) principal components of the L2-normalised features: in the
  hundreds of dimensions of a text embedding the full-covariance NIW marginal likelihood charges so
  much for each component that every merge is accepted (searchsnippets' 8 classes fell to 4).

NIW prior as the authors': mean = data mean, κ = 1e-4, ν = d + 1, Ψ = ``prior_scale`` · I, here
relative to the mean per-feature variance of the (reduced) features. On raw pixels or pen
coordinates the Gaussian likelihood keeps splitting non-Gaussian classes (BENCHMARKS.md): GPC's
representation learning, which makes the classes compact, is what that needs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from deepclust.device import resolve_device
from deepclust.engines.constrained import clamped_lloyd, seeded_start
from deepclust.engines.discovery import NearestCentre
from deepclust.engines.kmeans import _to_device, _torch_generator
from deepclust.errors import DeepclustError
from deepclust.supervision import SemiSupervisedClusterer
from deepclust.validation import check_number

__all__ = ["GPC", "niw_log_marginal"]


def niw_log_marginal(X: torch.Tensor, mu: torch.Tensor, m0: torch.Tensor, psi: torch.Tensor, kappa: float,
                     nu: float) -> float:
    """log p(X) of the samples ``X`` (n × d, float64) around ``mu`` under a normal-inverse-Wishart prior
    (mean ``m0``, scatter ``psi``, ``kappa``, ``nu``), as DeepDPM's and GPC's split/merge rules use it."""
    n, d = X.shape
    kappa_n, nu_n = kappa + n, nu + n
    diff = X - mu
    dm = (mu - m0)[:, None]
    psi_n = psi + diff.T @ diff + (kappa * n / kappa_n) * (dm @ dm.T)
    logdet = lambda A: float(torch.linalg.slogdet(A)[1])  # noqa: E731
    return (-(n * d / 2.0) * math.log(math.pi) + float(torch.mvlgamma(torch.tensor(nu_n / 2.0, dtype=torch.float64), d))
            - float(torch.mvlgamma(torch.tensor(nu / 2.0, dtype=torch.float64), d)) + (nu / 2.0) * logdet(psi)
            - (nu_n / 2.0) * logdet(psi_n) + (d / 2.0) * (math.log(kappa) - math.log(kappa_n)))


class GPC(NearestCentre, SemiSupervisedClusterer):
    """The semi-supervised GMM of GPC (Zhao, Wen & Han, ICCV 2023) with split and merge, on frozen
    features; see the module notes.

    ``fit(X, y)`` with ``y[i]`` a known class, ``-1`` for unlabelled samples (known or novel classes).

    Parameters
    ----------
    n_clusters : the total number of classes, or None (default) to estimate it by split and merge.
    init_clusters : components of the first round (None: known classes + 2).
    normalize : L2-normalise the rows first (the paper's features are normalised).
    pca_dim : the mixture runs on this many principal components (None: on all features); see the notes.
    prior_scale, prior_kappa : the NIW prior (Ψ = prior_scale · mean feature variance · I; κ).
    min_size : components of at most this many samples are neither split nor split into (5, as the authors).
    max_rounds : split/merge rounds at most; max_iter, tol : the semi-supervised k-means.

    Attributes: ``labels_`` (labelled samples keep their class; new components are numbered after the
    largest known class), ``classes_`` (class of each centre), ``known_classes_``,
    ``cluster_centers_``, ``n_clusters_found_`` (the estimate), ``history_`` (components per round),
    ``n_iter_`` (iterations of the last semi-supervised k-means).
    """

    _takes = ("labels",)
    _requires_n_clusters = False
    _min_samples = 3
    _max_input_dims = 2
    _saved_arrays = ("labels_", "cluster_centers_", "classes_", "known_classes_", "pca_mean_", "pca_components_")
    _saved_values = ("n_clusters_found_", "history_", "n_iter_", "n_labelled_", "n_must_link_", "n_cannot_link_")

    def __init__(self, n_clusters: int | None = None, *, init_clusters: int | None = None, normalize: bool = True,
                 pca_dim: int | None = 16, prior_scale: float = 1.0, prior_kappa: float = 1e-4, min_size: int = 5, max_rounds: int = 30,
                 max_iter: int = 300, tol: float = 1e-4, device: Any = "auto", random_state: int = 0):
        self.n_clusters = n_clusters
        self.init_clusters = init_clusters
        self.normalize = normalize
        self.pca_dim = pca_dim
        self.prior_scale = prior_scale
        self.prior_kappa = prior_kappa
        self.min_size = min_size
        self.max_rounds = max_rounds
        self.max_iter = max_iter
        self.tol = tol
        self.device = device
        self.random_state = random_state

    def _space(self, X: np.ndarray) -> np.ndarray:
        """The features the mixture models: rows L2-normalised (``normalize``), then the fitted PCA."""
        Z = X.reshape(len(X), -1).astype(np.float32)
        Z = Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12) if self.normalize else Z
        return Z if getattr(self, "pca_components_", None) is None else ((Z - self.pca_mean_) @ self.pca_components_.T).astype(np.float32)

    def _fit_pca(self, X: np.ndarray) -> None:
        self.pca_mean_ = self.pca_components_ = None
        d = int(np.prod(X.shape[1:]))
        if self.pca_dim is not None and int(self.pca_dim) < min(d, len(X)):
            from sklearn.decomposition import PCA

            pca = PCA(int(self.pca_dim), random_state=self.random_state).fit(self._space(X))
            self.pca_mean_ = pca.mean_.astype(np.float32)
            self.pca_components_ = pca.components_.astype(np.float32)

    def _check(self, n_known: int, n: int) -> int:
        """The number of components of the first round."""
        for name in ("min_size", "max_rounds", "max_iter"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise DeepclustError(f"{name} must be a whole number >= 1, got {v!r}")
        for name in ("prior_scale", "prior_kappa"):
            check_number(getattr(self, name), name, positive=True)
        k = self.n_clusters if self.n_clusters is not None else self.init_clusters
        if k is None:
            return min(n, n_known + 2)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not max(1, n_known) <= k <= n:
            which = "n_clusters" if self.n_clusters is not None else "init_clusters"
            raise DeepclustError(f"{which} must be a whole number from {max(1, n_known)} (the labelled classes) to "
                                 f"{n} (the samples), got {k!r}")
        return int(k)

    @torch.no_grad()
    def _fit(self, X: np.ndarray) -> None:
        dev = resolve_device(self.device)
        if self.pca_dim is not None and (isinstance(self.pca_dim, bool) or not isinstance(self.pca_dim, (int, np.integer))
                                         or self.pca_dim < 1):
            raise DeepclustError(f"pca_dim must be a whole number >= 1 or None, got {self.pca_dim!r}")
        self._fit_pca(X)
        Z = self._space(X)
        y = self._supervision.y
        y = np.full(len(X), -1, np.int64) if y is None else y
        K = self._check(len(np.unique(y[y >= 0])), len(X))
        Zt = _to_device(Z, dev)
        rng = np.random.default_rng(self.random_state)
        gen = _torch_generator(int(rng.integers(2**62)), dev)
        classes, fixed, fixed_labels, C = seeded_start(Zt, y, K, gen)
        n_known = len(classes)
        Z64 = Zt.double()
        m0 = Z64.mean(0)
        psi = torch.eye(Z.shape[1], dtype=torch.float64, device=dev) * float(self.prior_scale) * float(Z64.var(0).mean())
        prior = (m0, psi, float(self.prior_kappa), float(Z.shape[1] + 1))
        labelled = torch.as_tensor(y >= 0, device=dev)
        history = []
        for _ in range(int(self.max_rounds) if self.n_clusters is None else 0):
            C, labels, _, _ = clamped_lloyd(Zt, C, fixed, fixed_labels, int(self.max_iter), float(self.tol))
            history.append(int(C.shape[0]))
            C_new, changed = self._split_and_merge(Z64, C, labels, labelled, n_known, prior, int(rng.integers(2**31)))
            if not changed:
                break
            C = C_new
        C, labels, self.n_iter_, _ = clamped_lloyd(Zt, C, fixed, fixed_labels, int(self.max_iter), float(self.tol))
        used = torch.unique(labels).cpu().numpy()
        keep = np.union1d(np.arange(n_known), used)  # components left empty are dropped
        remap = np.full(C.shape[0], -1, np.int64)
        remap[keep] = np.arange(len(keep))
        first_new = int(classes.max()) + 1 if n_known else 0
        self.known_classes_ = classes.astype(np.int64)
        self.classes_ = np.concatenate([self.known_classes_,
                                        np.arange(first_new, first_new + len(keep) - n_known, dtype=np.int64)])
        self.cluster_centers_ = C[torch.as_tensor(keep, device=dev)].float().cpu().numpy()
        self.labels_ = self.classes_[remap[labels.cpu().numpy()]]
        self.n_clusters_found_ = int(len(keep))
        self.history_ = history

    def _split_and_merge(self, Z: torch.Tensor, C: torch.Tensor, labels: torch.Tensor, labelled: torch.Tensor,
                         n_known: int, prior: tuple, seed: int) -> tuple[torch.Tensor, bool]:
        """One split/merge round: (the new centres, whether anything changed). Components ``0 … n_known-1``
        hold the labelled samples; see the module notes for the two rules."""
        K = C.shape[0]
        min_size = int(self.min_size)
        C = C.clone()
        members = [torch.nonzero(labels == j).squeeze(1) for j in range(K)]
        log_ml = {j: niw_log_marginal(Z[idx], Z[idx].mean(0), *prior) for j, idx in enumerate(members) if len(idx)}
        new_centres: list[torch.Tensor] = []
        not_split = []
        for j in range(K):
            idx = members[j]
            # a labelled component may only shed samples without labels: its labelled samples stay in the first half
            halves = self._halves(Z, idx, seed + j, labelled[idx] if j < n_known else None) \
                if len(idx) > 2 * min_size else None
            if halves is None or min(len(h) for h in halves) <= min_size:
                not_split.append(j)
                continue
            h = sum(math.lgamma(len(p)) + niw_log_marginal(Z[p], Z[p].mean(0), *prior) for p in halves) \
                - math.lgamma(len(idx)) - log_ml[j]
            if h <= 0:
                not_split.append(j)
            elif j < n_known:
                C[j] = Z[halves[0]].mean(0).to(C.dtype)
                new_centres.append(Z[halves[1]].mean(0).float())
            else:
                new_centres += [Z[p].mean(0).float() for p in halves]
        merged: set[int] = set()
        candidates = [j for j in not_split if len(members[j]) > 0]
        free = [j for j in candidates if j >= n_known]
        if free and len(candidates) >= 2:
            cand = torch.as_tensor(candidates, device=Z.device)
            d = torch.cdist(C[cand].double(), C[cand].double())
            d.fill_diagonal_(float("inf"))
            for j in free:
                i = candidates[int(d[candidates.index(j)].argmin())]
                if j in merged or i in merged:
                    continue
                both = torch.cat([members[j], members[i]])
                h = math.lgamma(len(both)) + niw_log_marginal(Z[both], Z[both].mean(0), *prior) \
                    - math.lgamma(len(members[j])) - math.lgamma(len(members[i])) - log_ml[j] - log_ml[i]
                if h > 0:
                    merged |= {i, j}
                    if i < n_known:  # a labelled component absorbs the free one
                        C[i] = Z[both].mean(0).to(C.dtype)
                    else:
                        new_centres.append(Z[both].mean(0).float())
        keep = list(range(n_known)) + [j for j in not_split if j >= n_known and j not in merged]
        changed = len(keep) != K or bool(new_centres)
        out = torch.cat([C[torch.as_tensor(keep, device=C.device, dtype=torch.int64)]]
                        + [c[None].to(C.dtype) for c in new_centres])
        return out, changed

    @staticmethod
    def _halves(Z: torch.Tensor, idx: torch.Tensor, seed: int, labelled: torch.Tensor | None = None
                ) -> list[torch.Tensor]:
        """The samples ``idx`` in the two groups of 2-means; with ``labelled`` (a mask of ``idx``), the
        labelled samples are held in the first group (constrained 2-means)."""
        Zs = Z[idx].float()
        y = np.zeros(len(idx), np.int64) - 1 if labelled is None else np.where(labelled.cpu().numpy(), 0, -1)
        gen = _torch_generator(seed, Z.device)
        _, fixed, fixed_labels, C = seeded_start(Zs, y, 2, gen)
        _, sub, _, _ = clamped_lloyd(Zs, C, fixed, fixed_labels, 100, 1e-4)
        return [idx[sub == s] for s in (0, 1)]
