"""CPP: clustering via the principle of rate reduction on pretrained features.

Chu, Tong, Ding, Dai, Haeffele, Vidal & Ma, "Image Clustering via the Principle of Rate Reduction in
the Age of Pretrained Models", ICLR 2024, arXiv 2306.05272 (code: github.com/LeslieTrue/CPP).

On frozen features (CLIP in the paper; any embedding here), a small network refines the features by
MLC's objective — maximal coding rate reduction with a doubly stochastic membership learned by a
cluster head (:mod:`deepclust.methods._mcr2`) — and clusters are read off the membership by spectral
clustering. Three parts of the paper:

(a) the number of clusters by coding length: :meth:`CPP.estimate_k` after a fit (the paper's
    procedure on the refined features), and ``select_k(..., criteria=["coding_length"])`` for the
    same principle on any embedding before clustering;
(b) the clustering: :class:`CPP`;
(c) naming clusters: the paper votes among candidate captions with CLIP's text tower.
    :func:`deepclust.explain.naming.name_clusters` does the same vote for any text embeddings the
    user supplies in the space of the clustered features (CLIP text features for CLIP image
    features; nothing is downloaded); text clusters are named by their c-TF-IDF keywords in the
    report (:func:`deepclust.explain.naming.keyword_name`).

Defaults are the authors' released code (``main.py``): ε² = 0.1, η = 0.175 with 5 Sinkhorn
iterations, γ = 0.05, z and c of 128 dimensions, SGD with momentum 0.9 — lr 3e-3 and weight decay
1e-4 for the trunk and feature head, 2e-3 and 5e-3 for the cluster head — 30 epochs, no warm-up
(the cluster head is copied from the feature head at the start).

Where we differ, and why:

* Trunk widths (1024, 1024) instead of (4096, 4096), batch 1000 instead of 2000: the defaults must
  run on a CPU (a 4096-wide trunk is ~17 M weights per step); both are parameters. Batch norm after
  both trunk layers (the authors': after the first only), as every trunk here (:class:`~deepclust.heads.MLP`).
* Sinkhorn iterations are counted as (column, row) pairs ending on rows, so rows of Π sum to 1
  exactly; the authors' 5 half-steps end on rows too.
* Spectral clustering of the membership of 2,000 random anchors, every sample then placed by the
  Nyström extension of their eigenvectors through its membership row against them, instead of
  spectral clustering of the whole n × n Π (memory; see :mod:`deepclust.methods._mcr2`). This also
  gives ``predict`` for new samples, which the paper has not.
* No mixed precision: the logdets run in float32 (the authors use fp16 autocast around them).
"""

from __future__ import annotations

from deepclust.methods._mcr2 import MCR2Clusterer


class CPP(MCR2Clusterer):
    """CPP (Chu et al., ICLR 2024) on embeddings; parameters and attributes as :class:`~deepclust.methods._mcr2.MCR2Clusterer`."""

    _display_name = "CPP"
