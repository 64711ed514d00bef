"""Clustering heads: map an embedding to soft cluster assignments."""

from __future__ import annotations

import math

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


class MLP(nn.Module):
    """A small trunk for fixed embeddings: ``[Linear → BatchNorm → ReLU] × len(hidden_dims)``; with no
    hidden layer it is the identity. ``out_dim`` is the width of its output (the input width when
    there is no hidden layer)."""

    def __init__(self, in_dim: int, hidden_dims: tuple[int, ...] | list[int] = (512, 512)):
        super().__init__()
        layers: list[nn.Module] = []
        d = int(in_dim)
        for h in hidden_dims:
            layers += [nn.Linear(d, int(h)), nn.BatchNorm1d(int(h)), nn.ReLU(inplace=True)]
            d = int(h)
        self.net = nn.Sequential(*layers)
        self.out_dim = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvTrunk(nn.Module):
    """A small VGG-style trunk for images: ``[Conv3×3 → BatchNorm → ReLU → MaxPool2] × len(channels)``,
    global average pooling, then ``Linear → BatchNorm → ReLU`` to ``out_dim`` (DeepCluster's
    "convnet features", scaled down for small images)."""

    def __init__(self, in_channels: int, channels: tuple[int, ...] | list[int] = (32, 64, 128), out_dim: int = 256):
        super().__init__()
        layers: list[nn.Module] = []
        c = int(in_channels)
        for ch in channels:
            layers += [nn.Conv2d(c, int(ch), 3, padding=1), nn.BatchNorm2d(int(ch)), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2, ceil_mode=True)]
            c = int(ch)
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Sequential(nn.Linear(c, int(out_dim)), nn.BatchNorm1d(int(out_dim)), nn.ReLU(inplace=True))
        self.out_dim = int(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class MultiHead(nn.Module):
    """Several independent linear heads on the same features (SCAN trains 10 and keeps the one with
    the lowest loss), computed as one matrix product. ``forward`` returns logits of shape
    (n_heads, batch, n_clusters); :meth:`head` extracts one as a :class:`SoftmaxHead`."""

    def __init__(self, embedding_dim: int, n_clusters: int, n_heads: int = 1):
        super().__init__()
        self.n_heads, self.n_clusters = int(n_heads), int(n_clusters)
        self.linear = nn.Linear(int(embedding_dim), self.n_heads * self.n_clusters)
        with torch.no_grad():  # each head initialised as its own nn.Linear(embedding_dim, n_clusters) would be
            for h in range(self.n_heads):
                part = nn.Linear(int(embedding_dim), self.n_clusters)
                self.linear.weight[h * self.n_clusters:(h + 1) * self.n_clusters] = part.weight
                self.linear.bias[h * self.n_clusters:(h + 1) * self.n_clusters] = part.bias

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z).view(z.shape[0], self.n_heads, self.n_clusters).transpose(0, 1)

    @torch.no_grad()
    def init_from_centroids(self, centroids: torch.Tensor, noise: float = 1.0) -> None:
        """Warm start every head from k-means: weights = L2-normalised centroids + ``noise`` × the head's
        own random initialisation, biases 0, so that each head starts at the centroids' (cosine)
        partition and the heads still differ."""
        c = F.normalize(torch.as_tensor(centroids, dtype=self.linear.weight.dtype,
                                        device=self.linear.weight.device), dim=1)
        self.linear.weight.mul_(float(noise)).add_(c.repeat(self.n_heads, 1))
        self.linear.bias.zero_()

    def head(self, h: int) -> SoftmaxHead:
        out = SoftmaxHead(self.linear.in_features, self.n_clusters).to(self.linear.weight.device)
        rows = slice(h * self.n_clusters, (h + 1) * self.n_clusters)
        with torch.no_grad():
            out.linear.weight.copy_(self.linear.weight[rows])
            out.linear.bias.copy_(self.linear.bias[rows])
        return out


class KMeansLayer(nn.Module):
    """k-means as a layer whose weights are the cluster centres (TELL, Peng et al., JMLR 2022):
    ``logit_j = (2 w_jᵀx − ‖w_j‖²) / (τ·s)`` — a linear layer with weight 2W and bias −‖w_j‖², tied to
    the same W — so that ``softmax(logits)`` is the softmax of ``−‖x − w_j‖² / (τ·s)`` and the arg-max
    is exactly the nearest centre. ``s`` (buffer ``scale``) is a squared-distance unit of the data, so
    the temperature τ is free of the data's scale. ``forward`` returns the logits."""

    def __init__(self, centers: torch.Tensor, temperature: float = 0.1, scale: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.as_tensor(centers, dtype=torch.float32).clone())
        self.temperature = float(temperature)
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        return (2 * x.float() @ w.T - (w * w).sum(1)) / (self.temperature * self.scale)

    def sq_distances(self, x: torch.Tensor) -> torch.Tensor:
        """‖x − w_j‖² for every sample and centre."""
        return torch.cdist(x.float(), self.weight).pow(2)


def sinkhorn_potentials(scores: torch.Tensor, eta: float = 0.175, n_iters: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-domain Sinkhorn on the kernel ``exp(scores / η)`` (n × m) towards rows summing to 1 and columns
    to n/m: ``n_iters`` iterations of one column and one row scaling, differentiable (gradients flow
    through the iterations, as in MLC and CPP, whose cluster head is trained through them). Returns the
    row and column log-potentials (f, g): the plan is ``exp(scores/η + f_i + g_j)``, whose rows sum to 1
    exactly (the last step scales rows) and columns up to the remaining Sinkhorn error. Float32."""
    n, m = scores.shape
    with torch.autocast(scores.device.type, enabled=False):
        log_k = scores.float() / float(eta)
        log_col = math.log(n / m)
        f = torch.zeros(n, dtype=log_k.dtype, device=log_k.device)
        for _ in range(max(1, int(n_iters))):
            g = log_col - torch.logsumexp(log_k + f[:, None], dim=0)
            f = -torch.logsumexp(log_k + g[None, :], dim=1)
    return f, g


def doubly_stochastic(scores: torch.Tensor, eta: float = 0.175, n_iters: int = 5) -> torch.Tensor:
    """MLC's and CPP's membership: the doubly stochastic matrix nearest (in the entropic sense) to
    ``exp(scores / η)`` for a square ``scores`` (n × n), by :func:`sinkhorn_potentials`, scaled by n
    so that every row (one sample's soft group) and every column sums to 1."""
    f, g = sinkhorn_potentials(scores, eta, n_iters)
    return torch.exp(scores.float() / float(eta) + f[:, None] + g[None, :])


class MCR2Net(nn.Module):
    """MLC's and CPP's network on a fixed embedding (Ding et al., ICCV 2023; Chu et al., ICLR 2024): a
    shared trunk (:class:`MLP`), then a *feature head* ``z = normalize(W_z h)`` and a *cluster head*
    ``c = normalize(W_c h)``, both linear to ``out_dim`` and on the unit sphere. The membership of a
    batch is :func:`doubly_stochastic` of ``|c_i · c_j|``. ``forward`` returns ``(z, c)``."""

    def __init__(self, in_dim: int, hidden_dims: tuple[int, ...] | list[int] = (1024, 1024), out_dim: int = 128):
        super().__init__()
        self.trunk = MLP(in_dim, hidden_dims)
        self.feature = nn.Linear(self.trunk.out_dim, int(out_dim))
        self.cluster = nn.Linear(self.trunk.out_dim, int(out_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        return F.normalize(self.feature(h).float(), dim=1), F.normalize(self.cluster(h).float(), dim=1)

    @torch.no_grad()
    def init_cluster_from_features(self) -> None:
        """MLC's one-shot initialisation of the membership: the cluster head becomes a copy of the
        feature head, so that ``c = z`` and the membership starts as the doubly stochastic projection
        of the features' own affinity ``|z_i · z_j|``."""
        self.cluster.load_state_dict(self.feature.state_dict())
