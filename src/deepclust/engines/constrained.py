"""k-means with a little supervision: seeds (partial labels) or pairwise constraints.

* :class:`SeededKMeans` — Basu, Banerjee & Mooney, "Semi-supervised Clustering by Seeding", ICML
  2002: the centres start at the means of the labelled samples of each class (classes without
  seeds and the remaining clusters are seeded k-means++ style); ``constrained=True`` gives their
  *constrained* k-means, where the labelled samples keep their class through the iterations.
* :class:`COPKMeans` — Wagstaff, Cardie, Rogers & Schrödl, "Constrained K-means Clustering with
  Background Knowledge", ICML 2001: hard must-link / cannot-link constraints; every sample goes to
  the nearest centre that breaks no constraint, or the run fails.
* :class:`PCKMeans` — Basu, Banerjee & Mooney, "Active Semi-Supervision for Pairwise Constrained
  Clustering", SDM 2004: soft constraints; the objective is ½ Σ ||x - μ||² plus ``weight`` for
  every violated must-link and ``cannot_link_weight`` for every violated cannot-link.

All three are k-means in torch on the CPU or a CUDA GPU (the distance kernels of
:mod:`deepclust.engines.kmeans`); with no supervision each is k-means. Cluster ``j`` of a seeded
model is class ``classes_[j]`` for ``j < len(classes_)``.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from deepclust.device import resolve_device
from deepclust.engines.kmeans import (
    KMeans, _KMeansPredictMixin, _assign, _check_common, _chunk_rows, _sq_distances, _to_device,
    _torch_generator,
)
from deepclust.errors import DeepclustError
from deepclust.supervision import SemiSupervisedClusterer
from deepclust.validation import check_number, must_link_components

__all__ = ["COPKMeans", "PCKMeans", "SeededKMeans"]


# ---------------------------------------------------------------------------------------------- shared parts
@torch.no_grad()
def complete_centers(X: torch.Tensor, centers: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Add centres to ``centers`` (m × d, possibly m = 0) until there are ``k``, each drawn with
    probability proportional to the squared distance to the nearest centre so far (k-means++ sampling,
    Arthur & Vassilvitskii 2007)."""
    n = X.shape[0]
    C = [centers[i] for i in range(centers.shape[0])]
    if not C:
        C.append(X[torch.randint(n, (1,), generator=generator, device=X.device)[0]])
    closest = _sq_distances(X, torch.stack(C), n).amin(1)
    while len(C) < k:
        total = closest.sum()
        if float(total) <= 0:  # every point sits on a centre: take any point
            i = torch.randint(n, (1,), generator=generator, device=X.device)[0]
        else:
            i = torch.multinomial(closest / total, 1, generator=generator)[0]
        C.append(X[i])
        closest = torch.minimum(closest, ((X - X[i]) ** 2).sum(1))
    return torch.stack(C).contiguous()


def seeded_start(Xt: torch.Tensor, y: np.ndarray | None, k: int, generator: torch.Generator
                 ) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(classes, indices of the labelled samples, their clusters, k initial centres) from partial labels
    ``y`` (-1 = unlabelled, or None): centre ``j`` at the mean of the labelled samples of ``classes[j]``,
    further centres k-means++ style (Basu, Banerjee & Mooney 2002)."""
    dev = Xt.device
    if y is None or not (y >= 0).any():
        none = torch.zeros(0, dtype=torch.int64, device=dev)
        return np.zeros(0, np.int64), none, none, complete_centers(Xt, Xt[:0], k, generator)
    classes, codes = np.unique(y[y >= 0], return_inverse=True)
    fixed = torch.as_tensor(np.flatnonzero(y >= 0), device=dev)
    fixed_labels = torch.as_tensor(codes, device=dev)
    seeds, _ = _group_means(Xt[fixed], fixed_labels, len(classes))
    return classes.astype(np.int64), fixed, fixed_labels, complete_centers(Xt, seeds, k, generator)


def _group_means(X: torch.Tensor, groups: torch.Tensor, n_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(means, sizes) of the rows of ``X`` by group id (float64 sums)."""
    sums = torch.zeros((n_groups, X.shape[1]), dtype=torch.float64, device=X.device)
    sums.index_add_(0, groups, X.double())
    sizes = torch.bincount(groups, minlength=n_groups).double()
    return (sums / sizes.clamp(min=1)[:, None]).float(), sizes


@torch.no_grad()
def clamped_lloyd(Xt: torch.Tensor, C: torch.Tensor, fixed: torch.Tensor, fixed_labels: torch.Tensor,
                  max_iter: int = 300, tol: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor, int, bool]:
    """Lloyd iterations from the centres ``C`` in which the samples ``fixed`` keep the clusters
    ``fixed_labels`` (constrained k-means, Basu et al. 2002): (centres, labels, iterations, converged)."""
    n, k = Xt.shape[0], C.shape[0]
    chunk = _chunk_rows(n, k, Xt.device, None, Xt.shape[1])
    tol_abs = float(Xt.var(0).mean()) * float(tol)
    prev = None
    for it in range(1, int(max_iter) + 1):
        labels, _ = _assign(Xt, C, chunk)
        labels[fixed] = fixed_labels
        means, sizes = _group_means(Xt, labels, k)
        new_C = torch.where(sizes[:, None] > 0, means, C)  # an empty (unseeded) cluster keeps its centre
        shift = float(((new_C - C) ** 2).sum())
        C = new_C
        if (prev is not None and torch.equal(labels, prev)) or shift <= tol_abs:
            return C, labels, it, True
        prev = labels
    labels, _ = _assign(Xt, C, chunk)
    labels[fixed] = fixed_labels
    return C, labels, int(max_iter), False


class _SupervisedKMeansBase(_KMeansPredictMixin, SemiSupervisedClusterer):
    """Shared parameters, checks, fitted attributes and prediction (nearest centre, Euclidean)."""

    metric: ClassVar[str] = "euclidean"  # read by the k-means predict mixin
    _saved_arrays = ("cluster_centers_", "labels_")
    _saved_values = ("inertia_", "n_iter_", "converged_", "temperature_", "n_labelled_", "n_must_link_",
                     "n_cannot_link_")

    def _check(self) -> None:
        _check_common(self.n_clusters, "euclidean", self.max_iter, self.tol, None)

    def _finish(self, Xt: torch.Tensor, C: torch.Tensor, labels: torch.Tensor, n_iter: int, converged: bool) -> None:
        inertia = float(((Xt - C[labels]) ** 2).sum(dtype=torch.float64))
        self.cluster_centers_ = C.cpu().numpy()
        self.labels_ = labels.cpu().numpy().astype(np.int64)
        self.inertia_ = inertia
        self.n_iter_ = int(n_iter)
        self.converged_ = bool(converged)
        self.temperature_ = inertia / max(1, Xt.shape[0])
        if not converged:
            warnings.warn(f"{type(self).__name__} stopped at max_iter = {self.max_iter} iterations before the "
                          "assignments settled; raise max_iter", ConvergenceWarning, stacklevel=4)


# ---------------------------------------------------------------------------------------------- seeded
class SeededKMeans(_SupervisedKMeansBase):
    """Seeded k-means and constrained k-means (Basu, Banerjee & Mooney, ICML 2002).

    ``fit(X, y)`` with ``y[i]`` a class id, ``-1`` for an unlabelled sample. Cluster ``j`` starts at the
    mean of the labelled samples of class ``classes_[j]``; further clusters start k-means++ style.
    ``constrained=False`` (seeded k-means) then runs plain Lloyd iterations, so a wrong seed can move;
    ``constrained=True`` (constrained k-means) keeps every labelled sample in its class's cluster.

    Attributes: ``cluster_centers_``, ``labels_``, ``classes_`` (the class of cluster ``j`` for
    ``j < len(classes_)``), ``inertia_``, ``n_iter_``, ``converged_``, ``n_labelled_``.
    """

    _takes = ("labels",)
    _saved_arrays = ("cluster_centers_", "labels_", "classes_")

    def __init__(self, n_clusters: int = 8, *, constrained: bool = False, max_iter: int = 300, tol: float = 1e-4,
                 device: Any = "auto", random_state: Any = 0):
        self.n_clusters = n_clusters
        self.constrained = constrained
        self.max_iter = max_iter
        self.tol = tol
        self.device = device
        self.random_state = random_state

    def _fit(self, X: np.ndarray) -> None:
        self._check()
        k = int(self.n_clusters)
        dev = resolve_device(self.device)
        Xt = _to_device(X, dev)
        gen = _torch_generator(int(np.random.default_rng(self.random_state).integers(2**62)), dev)
        self.classes_, fixed, fixed_labels, C = seeded_start(Xt, self._supervision.y, k, gen)
        if not self.constrained or len(fixed) == 0:
            km = KMeans(k, init=C.cpu().numpy(), max_iter=self.max_iter, tol=self.tol, device=dev,
                        random_state=self.random_state)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)  # reported below, under this class's name
                km.fit(X)
            self._finish(Xt, torch.as_tensor(km.cluster_centers_, device=dev),
                         torch.as_tensor(km.labels_, device=dev), km.n_iter_, km.converged_)
            return
        C, labels, n_iter, converged = clamped_lloyd(Xt, C, fixed, fixed_labels, int(self.max_iter), float(self.tol))
        self._finish(Xt, C, labels, n_iter, converged)

# ---------------------------------------------------------------------------------------------- COP
class COPKMeans(_SupervisedKMeansBase):
    """COP-k-means (Wagstaff, Cardie, Rogers & Schrödl, ICML 2001): k-means under hard constraints.

    ``fit(X, must_link=[(i, j), …], cannot_link=[…])``. Must-linked samples move together (each
    connected group of must-links is assigned as one, by the sum of its squared distances); then,
    group by group, each goes to the nearest centre that holds none of its cannot-link partners.
    The paper visits the samples in data order; here the groups with cannot-links are visited most
    constrained first (greedy colouring order), which fails less often, and the free ones are
    assigned all at once; the centres start k-means++ style (the paper: at random). When a group
    finds no allowed cluster, ``fit`` raises a :class:`DeepclustError` naming it: the constraints
    may be infeasible for this k (raise k, or use :class:`PCKMeans`, whose constraints are soft).
    Every constraint holds in ``labels_``.
    """

    _takes = ("constraints",)
    _saved_values = _SupervisedKMeansBase._saved_values + ("violations_",)

    def __init__(self, n_clusters: int = 8, *, max_iter: int = 300, tol: float = 1e-4, device: Any = "auto",
                 random_state: Any = 0):
        self.n_clusters = n_clusters
        self.max_iter = max_iter
        self.tol = tol
        self.device = device
        self.random_state = random_state

    @torch.no_grad()
    def _fit(self, X: np.ndarray) -> None:
        self._check()
        k = int(self.n_clusters)
        dev = resolve_device(self.device)
        Xt = _to_device(X, dev)
        n = Xt.shape[0]
        sup = self._supervision
        comp_np = must_link_components(sup.must_link, n)
        n_comp = int(comp_np.max()) + 1
        comp = torch.as_tensor(comp_np, device=dev)
        means, sizes = _group_means(Xt, comp, n_comp)
        cl = np.unique(np.sort(comp_np[sup.cannot_link], axis=1), axis=0)  # cannot-links between groups
        partners: dict[int, list[int]] = {}
        for a, b in cl.tolist():
            partners.setdefault(a, []).append(b)
            partners.setdefault(b, []).append(a)
        order = sorted(partners, key=lambda g: -len(partners[g]))
        gen = _torch_generator(int(np.random.default_rng(self.random_state).integers(2**62)), dev)
        C = complete_centers(Xt, Xt[:0], k, gen)
        tol_abs = float(Xt.var(0).mean()) * float(self.tol)
        prev, converged, it = None, False, 0
        for it in range(1, int(self.max_iter) + 1):
            # a group's Σ ||x - μ||² is its size × ||mean - μ||² plus a constant
            cost = _sq_distances(means, C, n_comp) * sizes.float()[:, None]
            group_label = cost.argmin(1).cpu().numpy()
            if order:
                ranked = torch.argsort(cost[torch.as_tensor(order, device=dev)], dim=1).cpu().numpy()
                group_label[order] = -1
                for g, choices in zip(order, ranked):
                    taken = {group_label[p] for p in partners[g]}
                    allowed = [h for h in choices if h not in taken]
                    if not allowed:
                        first = int(np.flatnonzero(comp_np == g)[0])
                        raise DeepclustError(
                            f"COP-k-means found no cluster for sample {first} (with its must-linked samples): its "
                            f"cannot-link partners already hold all {k} clusters; the constraints may be infeasible "
                            f"for k={k}: raise n_clusters, drop some cannot-links, or use pckmeans (soft constraints)")
                    group_label[g] = allowed[0]
            labels_t = torch.as_tensor(group_label, device=dev)
            sums = torch.zeros((k, Xt.shape[1]), dtype=torch.float64, device=dev)
            sums.index_add_(0, labels_t, means.double() * sizes[:, None])
            counts = torch.zeros(k, dtype=torch.float64, device=dev).index_add_(0, labels_t, sizes)
            new_C = torch.where(counts[:, None] > 0, (sums / counts.clamp(min=1)[:, None]).float(), C)
            shift = float(((new_C - C) ** 2).sum())
            C = new_C
            if (prev is not None and np.array_equal(group_label, prev)) or shift <= tol_abs:
                converged = True
                break
            prev = group_label
        self._finish(Xt, C, torch.as_tensor(group_label, device=dev)[comp], it, converged)
        self.violations_ = {"must_link": 0, "cannot_link": 0}


# ---------------------------------------------------------------------------------------------- PCK
class PCKMeans(_SupervisedKMeansBase):
    """PCKMeans (Basu, Banerjee & Mooney, SDM 2004): k-means with soft pairwise constraints.

    Minimises ``½ Σ_i ||x_i - μ_{l_i}||² + weight · #violated must-links + cannot_link_weight ·
    #violated cannot-links`` (``cannot_link_weight=None``: ``weight``). Initialisation as the paper:
    centres at the means of the largest must-link neighbourhoods (the groups of the must-link
    closure, and the samples named by cannot-links), further centres k-means++ style. The
    assignment step is the paper's greedy (ICM) step computed for all samples at once: each sample's
    cost for every cluster is its distance plus the penalties its partners' current clusters imply
    (two sparse products); a random half of the samples that would gain moves per sweep (so that
    partners do not swap back and forth), until no sample gains. Points without constraints go to
    their nearest centre exactly as in k-means.

    Attributes as :class:`SeededKMeans`, plus ``violations_`` (violated must-links and cannot-links
    in ``labels_``) and ``objective_``.
    """

    _takes = ("constraints",)
    _saved_values = _SupervisedKMeansBase._saved_values + ("violations_", "objective_")

    def __init__(self, n_clusters: int = 8, *, weight: float = 1.0, cannot_link_weight: float | None = None,
                 max_iter: int = 300, tol: float = 1e-4, max_sweeps: int = 50, device: Any = "auto",
                 random_state: Any = 0):
        self.n_clusters = n_clusters
        self.weight = weight
        self.cannot_link_weight = cannot_link_weight
        self.max_iter = max_iter
        self.tol = tol
        self.max_sweeps = max_sweeps
        self.device = device
        self.random_state = random_state

    def _weights(self) -> tuple[float, float]:
        w = self.weight
        wc = self.weight if self.cannot_link_weight is None else self.cannot_link_weight
        for name, v in (("weight", w), ("cannot_link_weight", wc)):
            check_number(v, name)
        if isinstance(self.max_sweeps, bool) or not isinstance(self.max_sweeps, (int, np.integer)) \
                or self.max_sweeps < 1:
            raise DeepclustError(f"max_sweeps must be a whole number >= 1, got {self.max_sweeps!r}")
        return float(w), float(wc)

    @staticmethod
    def _adjacency(pairs: np.ndarray, n: int, dev: torch.device) -> torch.Tensor:
        """Symmetric sparse (n × n) count matrix of the pairs."""
        idx = torch.as_tensor(np.concatenate([pairs, pairs[:, ::-1]]).T.copy(), device=dev)
        return torch.sparse_coo_tensor(idx, torch.ones(idx.shape[1], device=dev), (n, n),
                                       check_invariants=True).coalesce()

    @torch.no_grad()
    def _fit(self, X: np.ndarray) -> None:
        self._check()
        w_ml, w_cl = self._weights()
        k = int(self.n_clusters)
        dev = resolve_device(self.device)
        Xt = _to_device(X, dev)
        n = Xt.shape[0]
        sup = self._supervision
        rng = np.random.default_rng(self.random_state)
        gen = _torch_generator(int(rng.integers(2**62)), dev)
        C = complete_centers(Xt, self._neighbourhood_centres(Xt, sup, k), k, gen)
        A_ml = self._adjacency(sup.must_link, n, dev)
        A_cl = self._adjacency(sup.cannot_link, n, dev)
        deg_ml = torch.sparse.sum(A_ml, 1).to_dense() if len(sup.must_link) else torch.zeros(n, device=dev)
        constrained = (torch.as_tensor(np.bincount(np.concatenate([sup.must_link.ravel(), sup.cannot_link.ravel()]),
                                                   minlength=n) > 0, device=dev))
        tol_abs = float(Xt.var(0).mean()) * float(self.tol)
        labels, prev, converged, it = None, None, False, 0
        for it in range(1, int(self.max_iter) + 1):
            dist = _sq_distances(Xt, C, _chunk_rows(n, k, dev, None, Xt.shape[1])).mul_(0.5)
            labels = dist.argmin(1) if labels is None else labels
            for _ in range(int(self.max_sweeps)):  # ICM sweeps over the constrained samples
                onehot = torch.nn.functional.one_hot(labels, k).float()
                cost = dist + w_ml * (deg_ml[:, None] - torch.sparse.mm(A_ml, onehot)) \
                    + w_cl * torch.sparse.mm(A_cl, onehot)
                best = cost.argmin(1)
                gain = cost.gather(1, labels[:, None]).squeeze(1) - cost.gather(1, best[:, None]).squeeze(1)
                wants = (best != labels) & (gain > 1e-12)
                if not bool(wants.any()):
                    break
                coin = torch.rand(n, generator=gen, device=dev) < 0.5
                labels = torch.where(wants & (coin | ~constrained), best, labels)
            means, sizes = _group_means(Xt, labels, k)
            new_C = torch.where(sizes[:, None] > 0, means, C)
            shift = float(((new_C - C) ** 2).sum())
            C = new_C
            if (prev is not None and torch.equal(labels, prev)) or shift <= tol_abs:
                converged = True
                break
            prev = labels.clone()
        self._finish(Xt, C, labels, it, converged)
        self.violations_ = sup.violations(self.labels_)
        self.objective_ = 0.5 * self.inertia_ + w_ml * self.violations_["must_link"] \
            + w_cl * self.violations_["cannot_link"]

    @staticmethod
    def _neighbourhood_centres(Xt: torch.Tensor, sup: Any, k: int) -> torch.Tensor:
        """Means of the (up to k) largest neighbourhoods: must-link groups and samples named by constraints."""
        n = Xt.shape[0]
        named = np.unique(np.concatenate([sup.must_link.ravel(), sup.cannot_link.ravel()]))
        if named.size == 0:
            return torch.zeros((0, Xt.shape[1]), device=Xt.device)
        comp = must_link_components(sup.must_link, n)[named]
        groups, codes, sizes = np.unique(comp, return_inverse=True, return_counts=True)
        means, _ = _group_means(Xt[torch.as_tensor(named, device=Xt.device)],
                                torch.as_tensor(codes, device=Xt.device), len(groups))
        largest = np.argsort(-sizes, kind="stable")[:k]
        return means[torch.as_tensor(largest, device=Xt.device)]
