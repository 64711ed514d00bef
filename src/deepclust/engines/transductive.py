"""Transductive few-shot clustering: prototypes + Laplacian regularisation + a few labelled points.

Ziko, Boudiaf, Dolz, Granger & Ben Ayed, "Transductive Few-Shot Learning: Clustering is All You
Need?", arXiv 2106.09516 (2021); the bound optimiser is that of LaplacianShot (Ziko et al., ICML 2020)
and Scalable Laplacian K-modes (NeurIPS 2018). With soft assignments ``Y`` (rows on the simplex),
prototypes ``m`` and a K-nearest-neighbour affinity ``W``, the relaxed objective is

    E(Y, m) = Σ_i y_iᵀ a_i(m) − λ Σ_ij w_ij y_iᵀ y_j + Σ_i y_iᵀ log y_i,    a_ic = ||x_i − m_c||² / T

(``T`` fixes the scale: the mean squared distance of the points to their nearest first prototype),
with the labelled points' rows fixed to their class. The Laplacian term is concave in ``Y``; the
bound optimiser replaces it by its linear bound at the current ``Y``, whose minimiser with the
entropy barrier is, for every point independently (one batched softmax and one sparse product on
the device),

    y_i ← softmax(−a_i + λ Σ_j w_ij y_j),

repeated until ``Y`` settles (the bound is tight, so ``E`` never increases); then each prototype
moves to the ``Y``-weighted mean of the points (block-coordinate descent on ``m``), and the two steps
alternate. Prototypes start at the labelled points' class means, further ones k-means++ style.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from deepclust.device import resolve_device
from deepclust.engines.constrained import _SupervisedKMeansBase, seeded_start
from deepclust.engines.kmeans import _check_common, _sq_distances, _to_device, _torch_generator
from deepclust.engines.neighbors import euclidean_knn
from deepclust.errors import DeepclustError
from deepclust.validation import check_number

__all__ = ["TransductiveFewShot"]


class TransductiveFewShot(_SupervisedKMeansBase):
    """Prototype clustering with Laplacian regularisation on a K-NN graph and a few labelled points
    (Ziko et al., arXiv 2106.09516, 2021); see the module notes.

    ``fit(X, y)`` with ``y[i]`` a class id, ``-1`` for unlabelled samples (with no labels it is
    Laplacian-regularised soft k-means). ``laplacian_weight`` is λ, ``n_neighbors`` the K of the graph.

    Attributes: ``cluster_centers_`` (the prototypes), ``labels_`` (arg-max of ``Y``), ``classes_``,
    ``objective_`` (final ``E``), ``n_iter_`` (prototype updates), ``converged_``. ``predict`` on new
    samples assigns the nearest prototype (the graph covers the training samples only).
    """

    _takes = ("labels",)
    _saved_arrays = ("cluster_centers_", "labels_", "classes_")
    _saved_values = _SupervisedKMeansBase._saved_values + ("objective_",)
    _min_samples = 2

    def __init__(self, n_clusters: int = 8, *, laplacian_weight: float = 1.0, n_neighbors: int = 10,
                 max_iter: int = 30, bound_iter: int = 50, tol: float = 1e-4, device: Any = "auto",
                 random_state: Any = 0):
        self.n_clusters = n_clusters
        self.laplacian_weight = laplacian_weight
        self.n_neighbors = n_neighbors
        self.max_iter = max_iter
        self.bound_iter = bound_iter
        self.tol = tol
        self.device = device
        self.random_state = random_state

    def _check_own(self, n: int) -> int:
        _check_common(self.n_clusters, "euclidean", self.max_iter, self.tol, None)
        check_number(self.laplacian_weight, "laplacian_weight")
        for name in ("n_neighbors", "bound_iter"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise DeepclustError(f"{name} must be a whole number >= 1, got {v!r}")
        return min(int(self.n_neighbors), n - 1)

    @staticmethod
    def _affinity(X: np.ndarray, n_neighbors: int, dev: torch.device) -> torch.Tensor:
        """Symmetric binary K-NN affinity (w_ij = 1 when either is among the other's K nearest, ½ when
        one way only … as (A + Aᵀ)/2), sparse on the device."""
        _, idx = euclidean_knn(X.reshape(len(X), -1), n_neighbors)
        n = len(X)
        rows = np.repeat(np.arange(n), idx.shape[1])
        ij = torch.as_tensor(np.stack([np.r_[rows, idx.ravel()], np.r_[idx.ravel(), rows]]), device=dev)
        values = torch.full((ij.shape[1],), 0.5, device=dev)
        return torch.sparse_coo_tensor(ij, values, (n, n), check_invariants=True).coalesce()

    @torch.no_grad()
    def _fit(self, X: np.ndarray) -> None:
        n = X.shape[0]
        n_neighbors = self._check_own(n)
        k = int(self.n_clusters)
        lam = float(self.laplacian_weight)
        dev = resolve_device(self.device)
        Xt = _to_device(X, dev)
        gen = _torch_generator(int(np.random.default_rng(self.random_state).integers(2**62)), dev)
        self.classes_, fixed, fixed_labels, C = seeded_start(Xt, self._supervision.y, k, gen)
        fixed_onehot = torch.nn.functional.one_hot(fixed_labels, k).float()
        W = self._affinity(X, n_neighbors, dev)
        scale = float(_sq_distances(Xt, C, n).amin(1).mean().clamp(min=1e-12))

        Y = torch.full((n, k), 1.0 / k, device=dev)
        Y[fixed] = fixed_onehot
        energy, converged, it = float("inf"), False, 0
        for it in range(1, int(self.max_iter) + 1):
            a = _sq_distances(Xt, C, n).div_(scale)
            for _ in range(int(self.bound_iter)):  # independent per-point updates of the bound
                Y_new = torch.softmax(-a + lam * torch.sparse.mm(W, Y), dim=1)
                Y_new[fixed] = fixed_onehot
                change = float((Y_new - Y).abs().max())
                Y = Y_new
                if change < 1e-4:
                    break
            mass = Y.sum(0)
            C = torch.where(mass[:, None] > 1e-8, (Y.t() @ Xt) / mass.clamp(min=1e-8)[:, None], C)
            new_energy = self._energy(Y, _sq_distances(Xt, C, n).div_(scale), W, lam)
            if abs(energy - new_energy) <= float(self.tol) * abs(new_energy):
                energy, converged = new_energy, True
                break
            energy = new_energy
        labels = Y.argmax(1)
        self._finish(Xt, C, labels, it, converged)
        self.objective_ = energy

    @staticmethod
    def _energy(Y: torch.Tensor, a: torch.Tensor, W: torch.Tensor, lam: float) -> float:
        """E(Y, m) of the module notes."""
        entropy = (Y * Y.clamp(min=1e-30).log()).sum()
        laplacian = (Y * torch.sparse.mm(W, Y)).sum()
        return float((Y * a).sum() - lam * laplacian + entropy)
