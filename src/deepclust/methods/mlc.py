"""MLC: unsupervised manifold linearizing and clustering.

Ding, Tong, Chan, Dai, Ma & Haeffele, "Unsupervised Manifold Linearizing and Clustering", ICCV 2023,
arXiv 2301.01805.

MLC learns features z and a doubly stochastic membership Π jointly, by maximal coding rate reduction
``max R(Z) − R_c(Z, Π) − γ/2 ‖Π‖²_F`` on mini-batches, where Π is the Sinkhorn projection (entropy η)
of the cluster head's affinities ``|c_i · c_j|`` (the subspace-clustering view: a sample's row weighs
the samples it shares a linear piece of the manifold with). The schedule implemented here
(:mod:`deepclust.methods._mcr2`):

1. warm-up: ``warmup_epochs`` (default 5) epochs maximising the coding rate R(Z) of the features
   alone, which spreads them over the sphere;
2. one-shot initialisation of the membership: the cluster head is set to an exact copy of the
   feature head, so that c = z and Π starts as the Sinkhorn projection of the features' own
   affinity |z_i · z_j| — a membership that already reflects the warmed-up features, in one step
   rather than by fitting the cluster head to it, and not the near-uniform Π of a random head;
3. joint training of both heads and the trunk on the full objective for ``epochs`` epochs;
4. clusters by spectral clustering of Π (as the paper).

Where we differ, and why:

* Frozen embeddings: the paper trains a ResNet end to end and its warm-up also makes augmented views
  agree; here the trunk is an MLP on a fixed embedding with no views (as CPP, which applies MLC's
  objective to frozen CLIP features). So the warm-up is the coding-rate term alone.
* Hyper-parameters: those of CPP's released code (which builds on MLC's objective): ε² = 0.1,
  η = 0.175, 5 Sinkhorn iterations, γ = 0.05, SGD with momentum; trunk (1024, 1024), batch 1000,
  30 joint epochs, chosen to run on a CPU. The MLC authors' own code was not available to check.
* Spectral clustering of 2,000 anchors' Π, every sample placed by the Nyström extension through its
  membership row against them (as CPP here).
"""

from __future__ import annotations

from typing import Any, Sequence

from deepclust.methods._mcr2 import MCR2Clusterer


class MLC(MCR2Clusterer):
    """MLC (Ding et al., ICCV 2023) on embeddings; parameters and attributes as
    :class:`~deepclust.methods._mcr2.MCR2Clusterer`, with a 5-epoch warm-up by default."""

    _display_name = "MLC"

    def __init__(self, n_clusters: int = 10, *, hidden_dims: Sequence[int] = (1024, 1024), out_dim: int = 128,
                 eps_sq: float = 0.1, eta: float = 0.175, sinkhorn_iters: int = 5, pi_weight: float = 0.05,
                 warmup_epochs: int = 5, epochs: int = 30, batch_size: int = 1000, lr: float = 3e-3,
                 lr_cluster: float = 2e-3, momentum: float = 0.9, weight_decay: float = 1e-4,
                 weight_decay_cluster: float = 5e-3, n_anchors: int = 2000, normalize: bool = True,
                 device: Any = "auto", random_state: int | None = 0, verbose: bool = False):
        super().__init__(n_clusters, hidden_dims=hidden_dims, out_dim=out_dim, eps_sq=eps_sq, eta=eta,
                         sinkhorn_iters=sinkhorn_iters, pi_weight=pi_weight, warmup_epochs=warmup_epochs,
                         epochs=epochs, batch_size=batch_size, lr=lr, lr_cluster=lr_cluster, momentum=momentum,
                         weight_decay=weight_decay, weight_decay_cluster=weight_decay_cluster,
                         n_anchors=n_anchors, normalize=normalize, device=device, random_state=random_state,
                         verbose=verbose)
