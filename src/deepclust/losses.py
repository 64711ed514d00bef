"""Losses shared by the methods: matching a soft target, reconstructing every layer."""

from __future__ import annotations

from typing import Sequence

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
