"""Clustering heads: map an embedding to soft cluster assignments."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SoftmaxHead(nn.Module):
    """A linear layer followed by softmax (DEPICT, SCAN). ``forward`` returns logits."""

    def __init__(self, embedding_dim: int, n_clusters: int):
        super().__init__()
        self.linear = nn.Linear(embedding_dim, n_clusters)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z)

    def proba(self, z: torch.Tensor) -> torch.Tensor:
        return F.softmax(self.forward(z).float(), dim=1)

    @torch.no_grad()
    def init_from_centroids(self, centroids: torch.Tensor) -> None:
        """Weights = L2-normalised k-means centroids, bias 0 (DEPICT's initialisation)."""
        c = torch.as_tensor(centroids, dtype=self.linear.weight.dtype, device=self.linear.weight.device)
        self.linear.weight.copy_(F.normalize(c, dim=1))
        self.linear.bias.zero_()


class StudentTHead(nn.Module):
    """Student's t kernel to learnable centroids (DEC, Xie et al. ICML 2016):
    ``q_ij ∝ (1 + ||z_i - μ_j||² / α)^(-(α+1)/2)``. ``forward`` returns log q."""

    def __init__(self, centroids: torch.Tensor, alpha: float = 1.0):
        super().__init__()
        self.centroids = nn.Parameter(torch.as_tensor(centroids, dtype=torch.float32).clone())
        self.alpha = float(alpha)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        d2 = torch.cdist(z.float(), self.centroids).pow(2)
        log_kernel = -(self.alpha + 1) / 2 * torch.log1p(d2 / self.alpha)
        return torch.log_softmax(log_kernel, dim=1)

    def proba(self, z: torch.Tensor) -> torch.Tensor:
        return self.forward(z).exp()
