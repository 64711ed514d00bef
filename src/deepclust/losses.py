"""Losses shared by the methods: matching a soft target, reconstructing every layer, rate reduction."""

from __future__ import annotations

from typing import Sequence

import math

import torch
import torch.nn.functional as F


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over samples of ``-Σ_k q_k log softmax(logits)_k``: KL(Q‖P) up to the entropy of Q."""
    return -(target * F.log_softmax(logits.float(), dim=1)).sum(1).mean()


def kl_divergence(log_p: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """KL(Q‖P) averaged over samples, from log P (DEC's loss)."""
    return F.kl_div(log_p.float(), target, reduction="batchmean")


def layerwise_reconstruction_loss(decoded: Sequence[torch.Tensor], encoded: Sequence[torch.Tensor],
                                  hidden_weight: float = 0.1) -> torch.Tensor:
    """DEPICT's reconstruction loss: MSE between the decoder's output and the input plus
    ``hidden_weight`` × MSE between each decoder layer and the matching clean encoder layer
    (Ghasedi Dizaji et al., ICCV 2017, eq. 9; the authors use 0.1)."""
    loss = F.mse_loss(decoded[0].float(), encoded[0].float())
    for d, e in zip(decoded[1:], encoded[1:]):
        loss = loss + hidden_weight * F.mse_loss(d.float(), e.float())
    return loss


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's normalised-temperature cross-entropy (Chen et al., ICML 2020, eq. 1): each of the
    2B projections must pick out its other view among the 2B − 1 others by cosine similarity / τ."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = (z @ z.T) / temperature
    n2 = z.shape[0]
    sim = sim.masked_fill(torch.eye(n2, dtype=torch.bool, device=z.device), float("-inf"))
    b = z1.shape[0]
    target = torch.cat([torch.arange(b, n2, device=z.device), torch.arange(0, b, device=z.device)])
    return F.cross_entropy(sim, target)


def entropy(p: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Entropy ``-Σ_k p_k log p_k`` of a distribution (the last axis), clamped away from log 0."""
    return -(p * torch.log(p.clamp_min(eps))).sum(-1)


def scan_loss(anchor_logits: torch.Tensor, neighbor_logits: torch.Tensor,
              entropy_weight: float = 5.0, mean_assignment: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """SCAN's clustering loss (Van Gansbeke et al., ECCV 2020, eq. 2):
    ``-1/|B| Σ_i log <p_i, p_j>`` over (anchor i, mined neighbour j) pairs, minus ``entropy_weight``
    × the entropy of the mean assignment ``p̄ = mean_i p_i`` over the batch (which keeps every
    cluster in use; 5 in the paper). Logits may carry leading head dimensions: (..., batch, k);
    every loss then has that leading shape (one value per head).

    ``mean_assignment`` (..., k): a running estimate of p̄ over *all* the data (no gradient). The
    entropy term is then ``-Σ_k p̄^B_k log p̄_k`` (p̄^B the batch mean), whose gradient is that of
    H(p̄) at the running p̄: an unbiased estimate of the full-data entropy gradient at any batch
    size. The batch-mean entropy is not: with fewer samples per batch than a few per cluster it
    is at most log |B| < log k for confident predictions, so it rewards soft ones and no prediction
    ever becomes confident at large k. The returned ``entropy`` is then H(running p̄).

    Returns ``{"loss", "consistency", "entropy"}``.
    """
    p_a = F.softmax(anchor_logits.float(), dim=-1)
    p_n = F.softmax(neighbor_logits.float(), dim=-1)
    similarity = (p_a * p_n).sum(-1)
    consistency = -torch.log(similarity.clamp_min(1e-7)).mean(-1)
    if mean_assignment is None:
        ent = term = entropy(p_a.mean(-2))
    else:
        log_mean = torch.log(mean_assignment.detach().float().clamp_min(1e-8))
        term = -(p_a.mean(-2) * log_mean).sum(-1)
        ent = entropy(mean_assignment.detach().float())
    return {"loss": consistency - float(entropy_weight) * term, "consistency": consistency, "entropy": ent}


def confident_self_label_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, threshold: float = 0.99,
                              class_balance: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """SCAN's self-labelling loss (Van Gansbeke et al., ECCV 2020, §3.3): cross-entropy between
    ``logits`` and the arg-max of ``teacher_logits`` (the weakly augmented view, no gradient) on the
    samples whose teacher probability exceeds ``threshold``; with ``class_balance`` each class is
    weighted by the inverse of its frequency among those confident samples, as in the authors'
    code. Returns (loss, number of confident samples); the loss is 0 when none is confident."""
    with torch.no_grad():
        prob = F.softmax(teacher_logits.float(), dim=-1)
        max_prob, target = prob.max(-1)
        mask = max_prob > float(threshold)
        n_conf = mask.sum()
    if int(n_conf) == 0:
        return logits.float().sum() * 0.0, n_conf
    target = target[mask]
    weight = None
    if class_balance:
        counts = torch.bincount(target, minlength=logits.shape[-1]).float()
        weight = torch.where(counts > 0, n_conf.float() / counts.clamp_min(1), torch.ones_like(counts))
    return F.cross_entropy(logits[mask].float(), target, weight=weight), n_conf


# ------------------------------------------------------------------ MCR² (maximal coding rate reduction)
def _logdet_eye_plus(gram: torch.Tensor) -> torch.Tensor:
    """``logdet(I + G)`` of symmetric positive semi-definite ``G`` (..., d, d), by Cholesky (I + G is
    positive definite with every eigenvalue >= 1, so the factorisation cannot fail in exact arithmetic;
    the symmetrisation guards against rounding)."""
    g = (gram + gram.transpose(-1, -2)) / 2
    eye = torch.eye(g.shape[-1], dtype=g.dtype, device=g.device)
    chol = torch.linalg.cholesky(eye + g)
    return 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)


def coding_rate(Z: torch.Tensor, eps_sq: float = 0.1, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Coding rate ``R(Z) = ½ logdet(I_d + d/(n ε²) ZᵀZ)`` of the rows of ``Z`` (n × d): the bits (nats)
    needed to code them up to precision ε (Ma et al., TPAMI 2007; Yu et al., "Learning Diverse and
    Discriminative Representations via the Principle of Maximal Coding Rate Reduction", NeurIPS 2020,
    eq. 2). Computed on the smaller side (``logdet(I_d + a ZᵀZ) = logdet(I_n + a ZZᵀ)``), in ``dtype``
    (float32; float64 for very large ``d/ε²``), outside autocast."""
    n, d = Z.shape
    with torch.autocast(Z.device.type, enabled=False):
        z = Z.to(dtype)
        gram = z.T @ z if d <= n else z @ z.T
        return 0.5 * _logdet_eye_plus(gram * (d / (n * float(eps_sq))))


def compressed_coding_rate(Z: torch.Tensor, membership: torch.Tensor, eps_sq: float = 0.1,
                           dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Membership-weighted coding rate ``R_c(Z, Π) = Σ_j tr(Π_j)/(2n) logdet(I + d/(tr(Π_j) ε²) Zᵀ Π_j Z)``
    (Yu et al., NeurIPS 2020, eq. 3): the rate of coding each group j apart, where group j weighs sample
    i by ``membership[i, j]`` (``Π_j = diag(membership[:, j])``). ``membership`` is n × m: soft cluster
    assignments (m = k; columns are clusters) or MLC/CPP's doubly stochastic n × n matrix scaled so
    that rows sum to 1 (each sample's row is its own soft group). All m logdets are computed as one
    batch: the n outer products ``z_i z_iᵀ`` are weighed by one matrix product."""
    n, d = Z.shape
    with torch.autocast(Z.device.type, enabled=False):
        z, w = Z.to(dtype), membership.to(dtype)
        outer = (z[:, :, None] * z[:, None, :]).reshape(n, d * d)
        grams = (w.T @ outer).reshape(-1, d, d)  # (m, d, d): Zᵀ diag(π_j) Z
        trace = w.sum(0).clamp_min(1e-8)  # tr(Π_j)
        logdets = _logdet_eye_plus(grams * (d / (trace * float(eps_sq)))[:, None, None])
        return (trace * logdets).sum() / (2 * n)


def rate_reduction(Z: torch.Tensor, membership: torch.Tensor, eps_sq: float = 0.1,
                   dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """The MCR² objective ``ΔR = R(Z) − R_c(Z, Π)`` (Yu et al., NeurIPS 2020, eq. 4), to maximise: expand
    the whole, compress every group. Returns ``{"rate", "compressed_rate", "rate_reduction"}``."""
    rate = coding_rate(Z, eps_sq, dtype)
    compressed = compressed_coding_rate(Z, membership, eps_sq, dtype)
    return {"rate": rate, "compressed_rate": compressed, "rate_reduction": rate - compressed}


def coding_length(Z: torch.Tensor, labels: torch.Tensor, eps_sq: float = 0.1,
                  dtype: torch.dtype = torch.float64) -> float:
    """Lossy coding length of the rows of ``Z`` segmented by ``labels`` (Ma, Derksen, Hong & Wright,
    "Segmentation of multivariate mixed data via lossy data coding and compression", TPAMI 2007, eq. 9):
    ``Σ_j (n_j + d)/2 · logdet(I + d/(n_j ε²) Z_jᵀZ_j) + n_j · log(n / n_j)`` — the bits of each group's
    code plus those of the labels. CPP (Chu et al., ICLR 2024, §3.1) chooses the number of clusters as
    the k whose partition minimises it: more groups fit tighter codes but cost more label bits."""
    n, d = Z.shape
    total = 0.0
    with torch.autocast(Z.device.type, enabled=False):
        z = Z.to(dtype)
        for c in torch.unique(labels):
            zc = z[labels == c]
            m = zc.shape[0]
            gram = zc.T @ zc if d <= m else zc @ zc.T
            total += float((m + d) / 2 * _logdet_eye_plus(gram * (d / (m * float(eps_sq)))) + m * math.log(n / m))
    return total


# ------------------------------------------------------------------ pairwise constraints
def contrastive_pair_loss(z_i: torch.Tensor, z_j: torch.Tensor, same: torch.Tensor, margin: float) -> torch.Tensor:
    """Contrastive loss on embedding pairs (Hadsell, Chopra & LeCun, CVPR 2006): ``||z_i − z_j||²`` for a
    must-link (``same`` True), ``max(0, margin − ||z_i − z_j||)²`` for a cannot-link; mean over pairs."""
    d2 = (z_i.float() - z_j.float()).pow(2).sum(1)
    apart = F.relu(margin - d2.clamp_min(1e-12).sqrt()).pow(2)
    return torch.where(same, d2, apart).mean()


def pair_link_loss(p_i: torch.Tensor, p_j: torch.Tensor, same: torch.Tensor,
                   confusion: torch.Tensor | None = None, eps: float = 1e-6) -> torch.Tensor:
    """The logistic deep-constrained-clustering loss: binary cross-entropy between the annotation
    ``same`` and the probability that the pair is linked, ``p_iᵀ B p_j`` for cluster memberships ``p``
    (rows on the simplex). ``confusion`` None is ``B = I`` (the noiseless model of Hsu & Kira, 2016,
    and Hsu et al., ICLR 2019); a K × K matrix in [0, 1] models annotators who link clusters k and l
    with probability ``B_kl`` (Nguyen, Ibrahim & Fu, ICML 2023, eq. 2)."""
    p_i, p_j = p_i.float(), p_j.float()
    linked = (p_i * p_j).sum(1) if confusion is None else ((p_i @ confusion) * p_j).sum(1)
    return F.binary_cross_entropy(linked.clamp(eps, 1 - eps), same.float())


def log_volume(membership: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``log det(FᵀF + εI)`` of an n × K membership matrix ``F``: the (log) volume its rows span, large
    when every cluster holds samples and the rows are near distinct vertices of the simplex (the
    geometric regulariser of Nguyen, Ibrahim & Fu, ICML 2023, to maximise)."""
    with torch.autocast(membership.device.type, enabled=False):
        f = membership.float()
        gram = f.T @ f + eps * torch.eye(f.shape[1], device=f.device)
        return torch.linalg.slogdet(gram)[1]
