"""Classical clustering engines behind the deepclust estimator API.

* :mod:`deepclust.engines.kmeans` — k-means and mini-batch k-means in torch (CPU/CUDA).
* :mod:`deepclust.engines.classical` — Gaussian mixture, HDBSCAN, Ward agglomerative clustering
  and k-medoids, wrapping scikit-learn and the ``kmedoids`` package.
* :mod:`deepclust.engines.pic` — agglomerative clustering by maximum incremental path integral
  (AC-PIC) on a sparse K-nearest-neighbour graph.
* :mod:`deepclust.engines.constrained` — seeded / constrained k-means, COP-k-means and PCKMeans
  (partial labels or pairwise constraints).
* :mod:`deepclust.engines.transductive` — transductive few-shot clustering (prototypes + Laplacian
  regularisation + a few labels, Ziko et al. 2021).
* :mod:`deepclust.engines.tim` — TIM: a few labels + transductive information maximisation (Boudiaf
  et al., NeurIPS 2020).
* :mod:`deepclust.engines.cluster_then_label` — a label-free clustering whose clusters the few labels name
  (cluster-then-label, Chapelle et al. 2006).
* :mod:`deepclust.engines.fewlabels` — the semi-supervised method chosen by cross-validation on the labels.
* :mod:`deepclust.engines.spreading` — a few labels spread over the K-NN graph of the UMAP layout
  (label spreading, Zhou et al. 2004).
* :mod:`deepclust.engines.discovery` — novel-class discovery: NCD k-means and NCD spectral clustering
  (Troisemaine et al. 2024) and their shared parts.
* :mod:`deepclust.engines.gpc` — generalized category discovery: a semi-supervised GMM sized by split
  and merge (Zhao, Wen & Han, ICCV 2023).
* :mod:`deepclust.engines.neighbors` — cosine (torch blocks or faiss) and Euclidean k-nearest neighbours.

The classes are imported on first use, so ``import deepclust.engines`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "KMeans": "deepclust.engines.kmeans",
    "MiniBatchKMeans": "deepclust.engines.kmeans",
    "kmeans_plusplus": "deepclust.engines.kmeans",
    "GaussianMixture": "deepclust.engines.classical",
    "HDBSCAN": "deepclust.engines.classical",
    "AgglomerativeClustering": "deepclust.engines.classical",
    "KMedoids": "deepclust.engines.classical",
    "PathIntegralClustering": "deepclust.engines.pic",
    "SeededKMeans": "deepclust.engines.constrained",
    "COPKMeans": "deepclust.engines.constrained",
    "PCKMeans": "deepclust.engines.constrained",
    "TransductiveFewShot": "deepclust.engines.transductive",
    "TransductiveInfoMax": "deepclust.engines.tim",
    "ManifoldLabelSpreading": "deepclust.engines.spreading",
    "ClusterThenLabel": "deepclust.engines.cluster_then_label",
    "FewLabelsAuto": "deepclust.engines.fewlabels",
    "NCDKMeans": "deepclust.engines.discovery",
    "NCDSpectralClustering": "deepclust.engines.discovery",
    "GPC": "deepclust.engines.gpc",
    "cosine_knn": "deepclust.engines.neighbors",
    "euclidean_knn": "deepclust.engines.neighbors",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
