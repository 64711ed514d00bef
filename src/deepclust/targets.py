"""Targets: turn the current soft assignments P (n × k) into what the head should match.

All are pure functions of P; rows of the result sum to 1, except the partial-transport targets
(:func:`p2ot_target`, :func:`sp2ot_target`), whose row sums are the mass each sample carries (its
weight in the loss).

Under torchrun each rank holds a shard of the rows of P (:mod:`deepclust.distributed`). With
``sharded=True`` the DEC and DEPICT targets and Sinkhorn's transport compute what couples the rows —
the cluster frequencies ``Σ_i p_ik``, Sinkhorn's column sums in every iteration and its sample
count — over all ranks (all-reduce), and return this rank's rows of the target of the whole P.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from deepclust.distributed import all_max, all_sum


def _prior(prior: Sequence[float] | torch.Tensor | None, k: int, like: torch.Tensor) -> torch.Tensor:
    if prior is None:
        return torch.full((k,), 1.0 / k, dtype=like.dtype, device=like.device)
    u = torch.as_tensor(prior, dtype=like.dtype, device=like.device)
    return u / u.sum()


def _over_ranks(t: torch.Tensor, sharded: bool) -> torch.Tensor:
    """``t`` (a sum over this rank's rows) summed over every rank's rows when ``sharded``."""
    return all_sum(t) if sharded else t


def depict_target(p: torch.Tensor, prior: Sequence[float] | torch.Tensor | None = None, *,
                  sharded: bool = False) -> torch.Tensor:
    """DEPICT's target as published (Ghasedi Dizaji et al., ICCV 2017, eq. 8):
    ``q_ik ∝ p_ik · sqrt(u_k / Σ_i p_ik)``.

    Minimising KL(Q‖P) + KL(f‖u), with f the cluster frequencies of Q and u a prior on them, gives
    ``q_ik ∝ p_ik u_k / f_k``; solving for f (``f_k ∝ sqrt(u_k Σ_i p_ik)``) gives the formula above.
    With the uniform prior (default) it is ``p_ik / sqrt(Σ_i p_ik)``, the paper's equation.
    """
    u = _prior(prior, p.shape[1], p)
    q = p * torch.sqrt(u / _over_ranks(p.sum(0), sharded).clamp_min(1e-12))
    return q / q.sum(1, keepdim=True)


def dec_target(p: torch.Tensor, *, sharded: bool = False) -> torch.Tensor:
    """DEC's sharpened target ``q_ik ∝ p_ik² / Σ_i p_ik`` (Xie et al., ICML 2016, eq. 3); also what the
    released DEPICT code uses in place of the paper's formula."""
    q = p.pow(2) / _over_ranks(p.sum(0), sharded).clamp_min(1e-12)
    return q / q.sum(1, keepdim=True)


@torch.no_grad()
def sinkhorn_target(scores: torch.Tensor, prior: Sequence[float] | torch.Tensor | None = None, *,
                    n_iters: int = 1000, lam: float = 25.0, tol: float = 1e-3,
                    from_logits: bool = True, sharded: bool = False) -> torch.Tensor:
    """Equal-size (or ``prior``-size) soft assignment by optimal transport, solved with Sinkhorn-Knopp.

    SeLa (Asano, Rupprecht & Vedaldi, ICLR 2020, eq. 5-7): find Q (n × k) with rows summing to 1/n
    and columns to ``prior_k`` that maximises ``<Q, log P> + H(Q)/λ``; the solution is
    ``Q = diag(a) P^λ diag(b)``, found by alternately rescaling rows and columns, in float64 on the
    device of ``scores``. P^λ is formed as ``exp(λ (log P_ij - max_j log P_ij))`` so that no row
    underflows; when a whole column still underflows (a cluster nobody likes, with large λ) the
    iterations run in log space (``logsumexp`` updates of the potentials) instead.

    ``scores``: logits (``from_logits=True``) or probabilities (n × k). ``prior``: cluster-size
    proportions (None: uniform). Stops when every column sum is within ``tol`` (relative) of its
    target, or after ``n_iters`` iterations. Returns Q rescaled so that every row sums to 1 (a soft
    assignment per sample); its column sums are then ``n · prior``. SeLa's pseudo-labels are
    ``Q.argmax(1)``.

    ``sharded``: ``scores`` are this rank's rows; the column sums (and n) are all-reduced in every
    iteration, so the returned rows are those of the single-process Q of all ranks' rows.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must be (n_samples, n_clusters), got shape {tuple(scores.shape)}")
    rows, k = scores.shape
    n = int(all_sum(torch.tensor(float(rows), dtype=torch.float64, device=scores.device))) if sharded else rows

    s = scores.double()
    log_p = torch.log_softmax(s, dim=1) if from_logits else torch.log(s.clamp_min(1e-300))
    log_k = float(lam) * (log_p - log_p.max(1, keepdim=True).values)  # every row's largest entry is 0
    r = _prior(prior, k, s)  # column targets (sum 1)
    kernel = torch.exp(log_k)
    if bool((_over_ranks(kernel.sum(0), sharded) > 1e-200).all()):
        # scaling form (two mat-vecs per iteration); safe because no column of P^λ underflowed
        a = torch.full((rows,), 1.0 / n, dtype=s.dtype, device=s.device)
        for it in range(int(n_iters)):
            b = r / _over_ranks(kernel.T @ a, sharded)
            a = (1.0 / n) / (kernel @ b)
            if it % 10 == 9 or it == int(n_iters) - 1:  # rows are exact after the row step; check columns
                if float((_over_ranks(kernel.T @ a, sharded) * b / r - 1).abs().max()) < tol:
                    break
        q = kernel * (a[:, None] * b[None, :] * n)
    else:
        # log space: λ log P + row and column potentials, logsumexp updates
        log_r = torch.log(r)
        a = torch.full((rows,), -math.log(n), dtype=s.dtype, device=s.device)
        for it in range(int(n_iters)):
            b = log_r - _logsumexp_rows(log_k + a[:, None], sharded)
            a = -math.log(n) - torch.logsumexp(log_k + b[None, :], dim=1)
            if it % 10 == 9 or it == int(n_iters) - 1:
                col = _logsumexp_rows(log_k + a[:, None] + b[None, :], sharded)
                if float((col - log_r).abs().max()) < math.log1p(tol):
                    break
        q = torch.exp(log_k + a[:, None] + b[None, :] + math.log(n))
    return q.to(scores.dtype if scores.is_floating_point() else torch.float32)


def _logsumexp_rows(t: torch.Tensor, sharded: bool) -> torch.Tensor:
    """``logsumexp`` over the rows (dim 0), over every rank's rows when ``sharded``: shifted by the
    global column maxima, the exponentials summed by an all-reduce."""
    if not sharded:
        return torch.logsumexp(t, dim=0)
    top = all_max(t.max(0).values)
    return torch.log(all_sum(torch.exp(t - top).sum(0))) + top


def split_empty_clusters(features: torch.Tensor, labels: torch.Tensor, centers: torch.Tensor, *,
                         generator: torch.Generator, eps: float = 1.0 / 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Give every empty cluster half of a big one, as DeepCluster's k-means (faiss) does.

    For each empty cluster, pick a non-empty cluster with probability proportional to its size
    minus one, put the empty centre at ``c·(1+eps)`` and the big one at ``c·(1-eps)``, and split the
    big cluster's members between the two by distance; members that do not split (identical
    points) are halved at random. Returns new (labels, centers); nothing changes when no cluster
    is empty. Every cluster is non-empty afterwards whenever n ≥ k.
    """
    labels, centers = labels.clone(), centers.clone()
    k = centers.shape[0]
    for _ in range(k):  # at most one pass per empty cluster
        counts = torch.bincount(labels, minlength=k)
        empty = (counts == 0).nonzero().flatten()
        if empty.numel() == 0:
            break
        e = int(empty[0])
        weights = (counts - 1).clamp_min(0).double()
        if float(weights.sum()) == 0:
            break  # n < k: nothing left to split
        j = int(torch.multinomial(weights.cpu(), 1, generator=generator))
        c = centers[j].clone()
        centers[e], centers[j] = c * (1 + eps), c * (1 - eps)
        members = (labels == j).nonzero().flatten()
        x = features[members].to(centers.dtype)
        to_e = (x - centers[e]).pow(2).sum(1) < (x - centers[j]).pow(2).sum(1)
        if bool(to_e.all()) or not bool(to_e.any()):
            perm = torch.randperm(members.numel(), generator=generator).to(members.device)
            to_e = torch.zeros_like(to_e)
            to_e[perm[: members.numel() // 2]] = True
        labels[members[to_e]] = e
    return labels, centers


def kmeans_target(features: torch.Tensor, n_clusters: int, *, seed: int, n_init: int = 1,
                  max_iter: int = 300, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepCluster's target (Caron et al., ECCV 2018): hard k-means labels of the features, with
    empty clusters split (:func:`split_empty_clusters`). Returns (labels, centres) on the
    features' device."""
    from deepclust.engines.kmeans import inner_kmeans

    dev = features.device
    km = inner_kmeans(features.detach().float().cpu().numpy(), int(n_clusters), n_init=int(n_init),
                      max_iter=int(max_iter), device=dev, random_state=int(seed))
    labels = torch.from_numpy(km.labels_).to(dev)
    centers = torch.from_numpy(km.cluster_centers_).to(dev)
    gen = generator if generator is not None else torch.Generator().manual_seed(int(seed))
    return split_empty_clusters(features.float(), labels, centers, generator=gen)


def sigmoid_rampup(t: float) -> float:
    """The ramp ``exp(-5 (1 - t)²)`` for ``t`` in [0, 1] (Laine & Aila, ICLR 2017); P²OT's schedule of
    the transported fraction ρ (Zhang et al., ICLR 2024, §4.2)."""
    t = min(max(float(t), 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)


@torch.no_grad()
def partial_transport_plan(cost: torch.Tensor, rho: float, prior: Sequence[float] | torch.Tensor | None = None, *,
                           eps: float = 0.1, kl_weight: float = 1.0, n_iters: int = 1000,
                           tol: float = 1e-6) -> torch.Tensor:
    """Progressive partial optimal transport with a KL-relaxed cluster marginal, by fast matrix scaling.

    P²OT (Zhang, Ren & He, ICLR 2024, arXiv 2401.09266, eq. 4 and Alg. 1): find Q ≥ 0 (n × k) minimising
    ``<C, Q> + eps·<Q, log Q> + kl_weight·KL(Qᵀ1 ‖ rho·prior)`` with every row summing to at most 1/n and
    the whole plan to ``rho``: only the fraction ``rho`` of the mass is transported. The paper makes it a
    semi-relaxed OT problem by adding a virtual cluster (cost 0) that must take exactly ``1 - rho``;
    rows are then equalities, and the scaling iterations are Sinkhorn's with the real columns' scaling
    raised to the power ``kl_weight / (kl_weight + eps)`` (the proximal step of the KL term; Chizat et
    al. 2018). The virtual column keeps a hard constraint.

    Iterates in float64 on the device of ``cost``; each row's cost is shifted by its minimum first (an
    exact change, absorbed by the row scaling) so the kernel's largest entry per row is 1. Stops when
    the column scaling changes by less than ``tol`` (relative), or after ``n_iters`` iterations.
    Returns ``n · Q`` without the virtual column: row i sums to the mass sample i carries (in [0, 1]),
    the whole to ``n · rho`` (up to the relaxation, the real clusters' sizes follow the data).
    """
    if cost.dim() != 2:
        raise ValueError(f"cost must be (n_samples, n_clusters), got shape {tuple(cost.shape)}")
    if not 0.0 < float(rho) <= 1.0:
        raise ValueError(f"rho must be in (0, 1], got {rho!r}")
    n, k = cost.shape
    c = torch.cat([cost.double(), cost.new_zeros(n, 1, dtype=torch.float64)], dim=1)
    c = c - c.min(1, keepdim=True).values
    kernel = torch.exp(-c / float(eps))
    col = torch.cat([float(rho) * _prior(prior, k, c), c.new_full((1,), 1.0 - float(rho))])
    power = float(kl_weight) / (float(kl_weight) + float(eps))
    tiny = torch.finfo(torch.float64).tiny
    b = torch.ones(k + 1, dtype=c.dtype, device=c.device)
    for it in range(int(n_iters)):
        a = (1.0 / n) / (kernel @ b).clamp_min(tiny)
        b_new = col / (kernel.T @ a).clamp_min(tiny)
        b_new[:k] = b_new[:k].pow(power)
        done = float((b_new / b - 1).abs().max()) < tol
        b = b_new
        if done:
            break
    a = (1.0 / n) / (kernel @ b).clamp_min(tiny)
    plan = kernel * (a[:, None] * b[None, :] * n)
    return plan[:, :k].to(cost.dtype if cost.is_floating_point() else torch.float32)


@torch.no_grad()
def p2ot_target(scores: torch.Tensor, rho: float, prior: Sequence[float] | torch.Tensor | None = None, *,
                eps: float = 0.1, kl_weight: float = 1.0, n_iters: int = 1000, tol: float = 1e-6,
                from_logits: bool = True) -> torch.Tensor:
    """P²OT's pseudo-labels (Zhang et al., ICLR 2024): :func:`partial_transport_plan` of the cost
    ``-log P``. The authors' defaults: ``eps`` 0.1, ``kl_weight`` 1, ρ ramped from 0.1 to 1. Rows sum to
    each sample's weight; the confident samples carry their whole mass first."""
    log_p = torch.log_softmax(scores.double(), 1) if from_logits else torch.log(scores.double().clamp_min(1e-300))
    return partial_transport_plan(-log_p, rho, prior, eps=eps, kl_weight=kl_weight, n_iters=n_iters, tol=tol)


def knn_graph(neighbors: torch.Tensor) -> torch.Tensor:
    """The symmetric sparse k-NN graph ``S + Sᵀ`` (n × n, sparse) from a table of neighbour indices
    (n × m, without the sample itself), divided by m so that every row of ``(S + Sᵀ) Q`` is at most 2
    for a row-stochastic Q."""
    n, m = neighbors.shape
    rows = torch.arange(n, device=neighbors.device).repeat_interleave(m)
    cols = neighbors.reshape(-1)
    idx = torch.stack([torch.cat([rows, cols]), torch.cat([cols, rows])])
    vals = torch.full((2 * n * m,), 1.0 / m, dtype=torch.float64, device=neighbors.device)
    return torch.sparse_coo_tensor(idx, vals, (n, n), check_invariants=True).coalesce()


@torch.no_grad()
def sp2ot_target(scores: torch.Tensor, rho: float, graph: torch.Tensor, prior: Sequence[float] | torch.Tensor | None = None,
                 *, weight: float = 0.5, mm_iters: int = 10, mm_tol: float = 1e-6, eps: float = 0.1,
                 kl_weight: float = 1.0, n_iters: int = 1000, tol: float = 1e-6,
                 from_logits: bool = True) -> torch.Tensor:
    """SP²OT's pseudo-labels (Zhang, Ren & He, arXiv 2404.03446): P²OT plus a semantic regulariser
    ``-weight · <S, Q Qᵀ>`` that rewards giving neighbours (``graph``: :func:`knn_graph`) the same
    cluster, solved by majorization-minimization: the concave regulariser is replaced by its tangent
    at the current plan, which turns each step into a P²OT problem with cost
    ``-log P - weight · (S + Sᵀ) Q`` (:func:`partial_transport_plan`); up to ``mm_iters`` steps, from
    the uniform plan, until the objective changes by less than ``mm_tol`` (relative). The authors
    scale ``weight`` by (1 - ρ) as ρ grows (done by the caller, :class:`~deepclust.methods.p2ot.P2OT`).

    Differs from the authors' code in the scale of Q in the regulariser: they use the plan of a batch
    (rows summing to 1/n, so the regulariser shrinks with the batch size); here the row-scaled plan
    ``n·Q`` and the graph divided by the number of neighbours, so ``weight`` means the same at any n.
    """
    log_p = torch.log_softmax(scores.double(), 1) if from_logits else torch.log(scores.double().clamp_min(1e-300))
    cost = -log_p
    n, k = cost.shape
    q = torch.full((n, k), float(rho) / k, dtype=torch.float64, device=cost.device)
    g = graph.to(torch.float64)

    def objective(plan: torch.Tensor) -> float:
        plan_n = plan / n
        return float((plan_n * cost).sum() - float(weight) * (plan_n * (g @ plan)).sum() / 2
                     + float(eps) * (plan_n * torch.log(plan_n.clamp_min(1e-300))).sum())

    last = objective(q)
    for _ in range(int(mm_iters)):
        q = partial_transport_plan(cost - float(weight) * (g @ q), rho, prior, eps=eps, kl_weight=kl_weight,
                                   n_iters=n_iters, tol=tol)
        value = objective(q)
        if abs(value - last) <= mm_tol * max(abs(last), 1e-12):
            break
        last = value
    return q.to(scores.dtype if scores.is_floating_point() else torch.float32)


TARGETS = {"paper": depict_target, "dec": dec_target}
