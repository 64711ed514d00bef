"""Agglomerative clustering by maximum incremental path integral (AC-PIC).

Zhang, Zhao & Wang: "Agglomerative clustering via maximum incremental path integral", Pattern
Recognition 46(11), 2013. DEPICT's authors initialise USPS and MNIST-test with it.

1. A directed K-nearest-neighbour graph: ``w_ij = exp(-d_ij² / σ²)`` for the ``n_neighbors``
   nearest ``j`` of ``i`` (squared Euclidean distances), plus a self-loop of weight 1;
   ``σ² = a ×`` the mean squared distance to the nearest neighbours (doubled while some point's
   nearest weight would fall below 1e-5). Rows are normalised: ``P = D⁻¹ W``.
2. Initial clusters: every point joined with its nearest neighbour (connected components).
3. The path integral of a cluster C is ``S_C = 1ᵀ (I − z P_C)⁻¹ 1 / |C|²`` (all paths inside C,
   longer ones discounted by ``z``). Merge, again and again, the two clusters whose union adds the
   most: ``(S_{A|A∪B} − S_A) + (S_{B|A∪B} − S_B)``, where ``S_{A|U}`` counts the paths between
   points of A that may pass through U. Clusters with no edge between them have increment 0,
   so only neighbouring clusters are scored; they merge last (the two smallest first), if ever.
4. Optional (``min_cluster_size``, not in the paper): groups below a size are outliers, not
   clusters; the cut is the coarsest level with ``n_clusters`` groups of that size.

Unlike the reference MATLAB/Python code, no n × n matrix is ever formed: neighbours come from a
blocked search, the graph is sparse, and each path integral is a sparse solve (a dense one for
small clusters, else the Neumann series, which converges at rate ``z``). On one CPU core a fit
of the 9,298 USPS images takes about 30 s on a 10-d embedding and a minute on raw pixels; the
merging is a Python loop, so it grows faster than n. ``predict`` assigns new points to the nearest
cluster centroid.
"""

from __future__ import annotations

import heapq
import time
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from deepclust.base import BaseClusterer
from deepclust.engines.classical import _flat, _nearest, _NearestCentroid, centroids
from deepclust.engines.neighbors import euclidean_knn
from deepclust.errors import DeepclustError
from deepclust.progress import progress
from deepclust.validation import check_n_clusters

__all__ = ["PathIntegralClustering", "transition_graph"]

#: clusters up to this size get an exact dense solve; larger ones the Neumann series
_DENSE_MAX = 96


def transition_graph(X: np.ndarray, n_neighbors: int = 20, a: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The row-stochastic K-NN transition matrix P, with self-loops, as two n × (K + 1) arrays:
    ``targets[i]`` (i itself first, then its neighbours, nearest first) and ``weights[i]``
    (summing to 1)."""
    n = X.shape[0]
    d2, nn = euclidean_knn(X, n_neighbors)
    sigma2 = float(d2[:, :max(n_neighbors, 3)].mean()) * float(a)
    if sigma2 <= 0:  # all neighbours coincide
        sigma2 = 1.0
    while np.exp(-d2[:, 0].max() / sigma2) < 1e-5:
        sigma2 *= 2
    targets = np.concatenate([np.arange(n)[:, None], nn], axis=1)
    weights = np.concatenate([np.ones((n, 1)), np.exp(-d2 / sigma2)], axis=1)
    return targets, weights / weights.sum(1, keepdims=True)


def _path_integrals(targets: np.ndarray, weights: np.ndarray, members: np.ndarray, parts: list[int],
                    z: float) -> np.ndarray:
    """``1_pᵀ (I − z P_U)⁻¹ 1_p / |p|²`` for the consecutive parts p of ``members`` (= U)."""
    m = members.size
    local = np.full(targets.shape[0], -1)
    local[members] = np.arange(m)
    cols = local[targets[members]]  # U's edges, in U's numbering (-1: leaves U)
    keep = cols >= 0
    rows = np.broadcast_to(np.arange(m)[:, None], cols.shape)[keep]
    cols, vals = cols[keep], z * weights[members][keep]
    bounds = np.cumsum([0, *parts])
    Y = np.zeros((m, len(parts)))
    for j in range(len(parts)):
        Y[bounds[j]:bounds[j + 1], j] = 1.0
    if m <= _DENSE_MAX:
        A = np.eye(m)
        A[rows, cols] -= vals
        Xs = np.linalg.solve(A, Y)
    else:  # Neumann series: x ← y + z P x, the error shrinks by z (P_U is sub-stochastic) each step
        zP = sp.csr_matrix((vals, (rows, cols)), shape=(m, m))
        Xs, term = Y.copy(), Y
        while True:
            term = zP @ term
            Xs += term
            if np.abs(term).max() <= 1e-14 * np.abs(Xs).max():
                break
    return np.array([Xs[bounds[j]:bounds[j + 1], j].sum() / parts[j] ** 2 for j in range(len(parts))])


class PathIntegralClustering(_NearestCentroid, BaseClusterer):
    """AC-PIC (Zhang, Zhao & Wang, Pattern Recognition 2013) with the common estimator API.

    Parameters
    ----------
    n_clusters : number of clusters.
    n_neighbors : K of the K-nearest-neighbour graph (20 in the paper and in DEPICT's code); on
        fewer than K + 1 points, every other point is a neighbour.
    a : scale of σ² relative to the mean squared neighbour distance (1).
    z : discount of longer paths, ``(I − zP)⁻¹`` (0.01).
    min_cluster_size : groups smaller than this are outliers, not clusters (1: plain AC-PIC). The
        cut is then the coarsest level of the hierarchy with ``n_clusters`` groups of at least this
        size, and the points of smaller groups join the nearest of their centroids
        (``n_outliers_`` counts them). Without it, a few isolated points can end as a cluster of
        their own and take one of the ``n_clusters``.
    device, random_state : accepted for a uniform API; the algorithm is deterministic and on the CPU.
    """

    _saved_arrays = ("labels_", "cluster_centers_")
    _saved_values = ("timings_", "n_initial_clusters_", "n_outliers_")

    def __init__(self, n_clusters: int = 8, *, n_neighbors: int = 20, a: float = 1.0, z: float = 0.01,
                 min_cluster_size: int = 1, device: Any = "auto", random_state: Any = 0):
        self.n_clusters = n_clusters
        self.n_neighbors = n_neighbors
        self.a = a
        self.z = z
        self.min_cluster_size = min_cluster_size
        self.device = device
        self.random_state = random_state

    def _fit(self, X: np.ndarray) -> None:
        k = check_n_clusters(self.n_clusters)
        Xf = _flat(X).astype(np.float64)
        n = Xf.shape[0]
        if k > n:
            raise DeepclustError(f"n_clusters={k} is larger than the number of samples ({n})")
        if isinstance(self.n_neighbors, bool) or not isinstance(self.n_neighbors, (int, np.integer)) \
                or self.n_neighbors < 1:
            raise DeepclustError(f"n_neighbors must be a whole number >= 1, got {self.n_neighbors!r}")
        K = min(int(self.n_neighbors), n - 1)  # fewer points than neighbours: all the others
        if not 0 < float(self.z) < 1 or not float(self.a) > 0:
            raise DeepclustError(f"z must be in (0, 1) and a > 0, got z={self.z!r}, a={self.a!r}")
        min_size = int(self.min_cluster_size)
        if not 1 <= min_size <= n // k:
            raise DeepclustError(f"min_cluster_size must be between 1 and n / n_clusters = {n // k}, "
                                 f"got {self.min_cluster_size!r}")
        t0 = time.perf_counter()
        if n == 1:  # a single point is a single cluster; there is no graph to build
            t1 = t0
            labels, self.n_initial_clusters_ = np.zeros(1, dtype=np.int64), 1
        else:
            targets, weights = transition_graph(Xf, K, float(self.a))
            t1 = time.perf_counter()
            labels = self._merge(targets, weights, k, float(self.z), min_size)
        t2 = time.perf_counter()
        self.cluster_centers_ = centroids(Xf, labels, k)
        outliers = labels < 0  # groups below min_cluster_size join the nearest cluster centroid
        self.n_outliers_ = int(outliers.sum())
        if self.n_outliers_:
            labels[outliers] = _nearest(Xf[outliers], self.cluster_centers_)
            self.cluster_centers_ = centroids(Xf, labels, k)
        self.labels_ = labels
        self.timings_ = {"graph": t1 - t0, "merge": t2 - t1}

    def _merge(self, targets: np.ndarray, weights: np.ndarray, k: int, z: float, min_size: int) -> np.ndarray:
        n = targets.shape[0]
        link = sp.coo_matrix((np.ones(n), (np.arange(n), targets[:, 1])), shape=(n, n))
        n_init, labels = connected_components(link, directed=False)
        self.n_initial_clusters_ = int(n_init)
        members: dict[int, np.ndarray] = dict(enumerate(np.split(
            np.argsort(labels, kind="stable"), np.cumsum(np.bincount(labels))[:-1])))

        def path_integrals(merged: np.ndarray, parts: list[int]) -> np.ndarray:
            return _path_integrals(targets, weights, merged, parts, z)

        complexity = {c: path_integrals(m, [m.size])[0] for c, m in members.items()}
        # clusters joined by at least one edge, in either direction
        edges = np.stack([np.repeat(labels, targets.shape[1] - 1), labels[targets[:, 1:]].ravel()], 1)
        edges = np.unique(np.sort(edges[edges[:, 0] != edges[:, 1]], 1), axis=0)
        touching: dict[int, set[int]] = {c: set() for c in members}
        for a, b in edges.tolist():
            touching[a].add(b)
            touching[b].add(a)

        def affinity(a: int, b: int) -> float:
            ma, mb = members[a], members[b]
            s_a, s_b = path_integrals(np.concatenate([ma, mb]), [ma.size, mb.size])
            return (s_a - complexity[a]) + (s_b - complexity[b])

        heap = [(-affinity(a, b), a, b) for a, b in edges.tolist()]
        heapq.heapify(heap)
        # with min_size > 1 the whole hierarchy is built, to find its coarsest level with k clusters
        # of at least min_size points; every merge is recorded with the number of such clusters after it
        initial = dict(members)
        stop = 1 if min_size > 1 else k
        n_big = sum(m.size >= min_size for m in members.values())
        merges: list[tuple[int, int, int]] = []
        n_big_after = [n_big]
        next_id = n_init
        bar = progress(desc="AC-PIC merging", total=max(0, n_init - stop), unit="merge")
        while len(members) > stop:
            bar.update()
            while heap and (heap[0][1] not in members or heap[0][2] not in members):
                heapq.heappop(heap)
            if heap:
                _, a, b = heapq.heappop(heap)
            else:  # no two clusters touch: join the two smallest (increment 0 for every pair)
                a, b = sorted(members, key=lambda c: members[c].size)[:2]
            n_big -= (members[a].size >= min_size) + (members[b].size >= min_size)
            merged = np.concatenate([members.pop(a), members.pop(b)])
            n_big += merged.size >= min_size
            del complexity[a], complexity[b]
            c, next_id = next_id, next_id + 1
            members[c] = merged
            merges.append((a, b, c))
            n_big_after.append(n_big)
            complexity[c] = path_integrals(merged, [merged.size])[0]
            touching[c] = (touching.pop(a) | touching.pop(b)) - {a, b}
            for d in touching[c]:
                touching[d] -= {a, b}
                touching[d].add(c)
                if len(members) > stop:
                    heapq.heappush(heap, (-affinity(c, d), d, c))
        bar.close()
        if min_size > 1:
            levels = [t for t, nb in enumerate(n_big_after) if nb == k]
            cut = levels[-1] if levels else max(0, n_init - k)  # never k big clusters: the plain cut
            members = initial
            for a, b, c in merges[:cut]:
                members[c] = np.concatenate([members.pop(a), members.pop(b)])
        # clusters numbered by size, largest first; points of clusters below min_size get -1
        order = sorted(members, key=lambda c: -members[c].size)
        out = np.full(n, -1, dtype=np.int64)
        for new, c in enumerate(order[:k]):
            out[members[c]] = new
        return out
