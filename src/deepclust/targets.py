"""Targets: turn the current soft assignments P (n × k) into what the head should match.

All are pure functions of P; rows of the result sum to 1.
"""

from __future__ import annotations

from typing import Sequence

import torch


def _prior(prior: Sequence[float] | torch.Tensor | None, k: int, like: torch.Tensor) -> torch.Tensor:
    if prior is None:
        return torch.full((k,), 1.0 / k, dtype=like.dtype, device=like.device)
    u = torch.as_tensor(prior, dtype=like.dtype, device=like.device)
    return u / u.sum()


def depict_target(p: torch.Tensor, prior: Sequence[float] | torch.Tensor | None = None) -> torch.Tensor:
    """DEPICT's target as published (Ghasedi Dizaji et al., ICCV 2017, eq. 8):
    ``q_ik ∝ p_ik · sqrt(u_k / Σ_i p_ik)``.

    Minimising KL(Q‖P) + KL(f‖u), with f the cluster frequencies of Q and u a prior on them, gives
    ``q_ik ∝ p_ik u_k / f_k``; solving for f (``f_k ∝ sqrt(u_k Σ_i p_ik)``) gives the formula above.
    With the uniform prior (default) it is ``p_ik / sqrt(Σ_i p_ik)``, the paper's equation.
    """
    u = _prior(prior, p.shape[1], p)
    q = p * torch.sqrt(u / p.sum(0).clamp_min(1e-12))
    return q / q.sum(1, keepdim=True)


def dec_target(p: torch.Tensor) -> torch.Tensor:
    """DEC's sharpened target ``q_ik ∝ p_ik² / Σ_i p_ik`` (Xie et al., ICML 2016, eq. 3); also what the
    released DEPICT code uses in place of the paper's formula."""
    q = p.pow(2) / p.sum(0).clamp_min(1e-12)
    return q / q.sum(1, keepdim=True)


TARGETS = {"paper": depict_target, "dec": dec_target}
