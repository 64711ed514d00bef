"""Clustering scores.

External scores compare a clustering with ground-truth classes:

* :func:`accuracy` (ACC) — the best one-to-one matching of clusters to classes (Hungarian
  algorithm, :func:`scipy.optimize.linear_sum_assignment`), as in DEC/DEPICT. It is defined for
  any numbers of clusters and classes: points of a cluster left without a class (or of a class
  left without a cluster) count as errors.
* :func:`nmi` — normalised mutual information with the **arithmetic-mean** normalisation
  ``I(Y; C) / ((H(Y) + H(C)) / 2)`` (scikit-learn's default), the convention we report next to
  DEC/DEPICT numbers. Pass ``average_method="geometric"`` for ``I / sqrt(H(Y) H(C))``, used by
  some older papers.
* :func:`ari`, :func:`ami` (scikit-learn), :func:`purity`, :func:`confusion_matrix` (classes ×
  clusters, columns in the Hungarian order), and :func:`external_scores` for all of them.

Noise (label ``-1``, e.g. from HDBSCAN) is treated by the external scores as one more cluster.

Label-free scores: :func:`silhouette` (on a random sample for large n), :func:`davies_bouldin`,
:func:`calinski_harabasz`, :func:`size_entropy` and :func:`internal_scores` for all of them.
Scores that are undefined (fewer than two clusters, or as many clusters as points) are NaN.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn import metrics as skm

from deepclust.errors import DeepclustError
from deepclust.validation import ArrayLike, as_float_array

__all__ = [
    "accuracy",
    "ami",
    "ari",
    "calinski_harabasz",
    "confusion_matrix",
    "contingency_matrix",
    "davies_bouldin",
    "external_scores",
    "internal_scores",
    "nmi",
    "purity",
    "silhouette",
    "size_entropy",
]

NOISE = -1


# ---------------------------------------------------------------------------------- validation
def _labels(y: ArrayLike, name: str) -> np.ndarray:
    if hasattr(y, "detach"):  # torch tensor
        y = y.detach().cpu().numpy()
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise DeepclustError(f"{name} must be a 1-D array of labels, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise DeepclustError(f"{name} is empty")
    if arr.dtype == object:
        arr = arr.astype(str)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise DeepclustError(f"{name} contains NaN or infinite labels")
        if (arr != np.round(arr)).any():
            raise DeepclustError(f"{name} contains non-integer values; labels must be whole numbers or strings")
        arr = arr.astype(np.int64)
    return arr


def _pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    yt = _labels(y_true, "y_true")
    yp = _labels(y_pred, "y_pred")
    if yt.shape[0] != yp.shape[0]:
        raise DeepclustError(f"y_true has {yt.shape[0]} labels but y_pred has {yp.shape[0]}; "
                             "they must have one per sample")
    return yt, yp


# ---------------------------------------------------------------------------------- external scores
def contingency_matrix(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts ``M[i, j]`` of samples of class ``classes[i]`` in cluster ``clusters[j]`` (both sorted)."""
    yt, yp = _pair(y_true, y_pred)
    classes, ti = np.unique(yt, return_inverse=True)
    clusters, pi = np.unique(yp, return_inverse=True)
    m = np.bincount(ti.ravel() * len(clusters) + pi.ravel(), minlength=len(classes) * len(clusters))
    return m.reshape(len(classes), len(clusters)).astype(np.int64), classes, clusters


def _match(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian matching maximising the matched counts (rectangular allowed)."""
    rows, cols = linear_sum_assignment(m, maximize=True)
    return rows, cols


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Clustering accuracy: the fraction of samples whose cluster is matched to their class under the
    best one-to-one matching of clusters to classes (Hungarian algorithm).

    With more clusters than classes, the points of unmatched clusters count as errors (and vice
    versa), so ACC ≤ 1 and equals 1 only for a relabelling of the classes. Noise (-1) is one more
    cluster.
    """
    m, _, _ = contingency_matrix(y_true, y_pred)
    rows, cols = _match(m)
    return float(m[rows, cols].sum() / m.sum())


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, *, return_labels: bool = False):
    """Classes × clusters counts with the columns in the Hungarian order.

    Rows are the classes (sorted). Column ``j`` is the cluster matched to class ``j`` for every
    matched class (so when there are at least as many clusters as classes the matched counts lie
    on the diagonal); clusters matched to no class follow, in label order. With
    ``return_labels=True`` returns ``(matrix, class_labels, cluster_labels)`` naming the rows and
    columns.
    """
    m, classes, clusters = contingency_matrix(y_true, y_pred)
    rows, cols = _match(m)
    order = [int(j) for j in cols[np.argsort(rows)]]
    matched = set(order)
    order += [j for j in range(len(clusters)) if j not in matched]
    out = m[:, order]
    if return_labels:
        return out, classes, clusters[order]
    return out


def nmi(y_true: ArrayLike, y_pred: ArrayLike, *, average_method: str = "arithmetic") -> float:
    """Normalised mutual information, arithmetic-mean normalisation by default (see the module notes)."""
    yt, yp = _pair(y_true, y_pred)
    return float(skm.normalized_mutual_info_score(yt, yp, average_method=average_method))


def ari(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Adjusted Rand index (Hubert & Arabie 1985)."""
    yt, yp = _pair(y_true, y_pred)
    return float(skm.adjusted_rand_score(yt, yp))


def ami(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Adjusted mutual information (arithmetic-mean normalisation, scikit-learn's default)."""
    yt, yp = _pair(y_true, y_pred)
    return float(skm.adjusted_mutual_info_score(yt, yp))


def purity(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Fraction of samples that belong to the majority class of their cluster (1 with one cluster per point)."""
    m, _, _ = contingency_matrix(y_true, y_pred)
    return float(m.max(axis=0).sum() / m.sum())


def external_scores(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float]:
    """``{"acc", "nmi", "ari", "ami", "purity"}`` of a clustering against ground-truth classes."""
    yt, yp = _pair(y_true, y_pred)
    return {"acc": accuracy(yt, yp), "nmi": nmi(yt, yp), "ari": ari(yt, yp), "ami": ami(yt, yp),
            "purity": purity(yt, yp)}


# ---------------------------------------------------------------------------------- label-free scores
def _data_and_labels(X: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    Xa = as_float_array(X)
    Xa = Xa.reshape(Xa.shape[0], -1)
    lab = _labels(labels, "labels")
    if lab.shape[0] != Xa.shape[0]:
        raise DeepclustError(f"labels has {lab.shape[0]} entries but X has {Xa.shape[0]} samples")
    return Xa, lab


def _defined(labels: np.ndarray) -> bool:
    """Silhouette, Davies-Bouldin and Calinski-Harabasz need 2 <= #clusters <= n - 1."""
    k = len(np.unique(labels))
    return 2 <= k <= len(labels) - 1


def silhouette(X: ArrayLike, labels: ArrayLike, *, sample_size: int | None = 10_000, random_state: Any = 0,
               metric: str = "euclidean") -> float:
    """Mean silhouette coefficient; on a uniform random sample of ``sample_size`` points when n is
    larger (its cost is quadratic). NaN when fewer than two clusters (in the sample)."""
    Xa, lab = _data_and_labels(X, labels)
    if sample_size is not None and Xa.shape[0] > sample_size:
        idx = np.random.default_rng(random_state).choice(Xa.shape[0], int(sample_size), replace=False)
        Xa, lab = Xa[idx], lab[idx]
    if not _defined(lab):
        return float("nan")
    return float(skm.silhouette_score(Xa, lab, metric=metric))


def davies_bouldin(X: ArrayLike, labels: ArrayLike) -> float:
    """Davies-Bouldin index (lower is better); NaN when fewer than two clusters."""
    Xa, lab = _data_and_labels(X, labels)
    return float(skm.davies_bouldin_score(Xa, lab)) if _defined(lab) else float("nan")


def calinski_harabasz(X: ArrayLike, labels: ArrayLike) -> float:
    """Calinski-Harabasz index (variance ratio; higher is better); NaN when fewer than two clusters."""
    Xa, lab = _data_and_labels(X, labels)
    return float(skm.calinski_harabasz_score(Xa, lab)) if _defined(lab) else float("nan")


def size_entropy(labels: ArrayLike, *, n_clusters: int | None = None) -> float:
    """Entropy of the cluster sizes divided by ``log k``: 1 for equal sizes, near 0 for a collapse.

    ``k`` is ``n_clusters`` when given (so clusters that received no point count as imbalance),
    else the number of distinct labels. Returns 0.0 when ``k`` is 1. Drop noise (-1) first if it
    should not count as a cluster (:func:`internal_scores` does).
    """
    lab = _labels(labels, "labels")
    _, counts = np.unique(lab, return_counts=True)
    k = len(counts) if n_clusters is None else int(n_clusters)
    if k < len(counts):
        raise DeepclustError(f"n_clusters={k} is smaller than the number of distinct labels ({len(counts)})")
    if k <= 1:
        return 0.0
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum() / math.log(k))


def internal_scores(X: ArrayLike, labels: ArrayLike, *, sample_size: int | None = 10_000, random_state: Any = 0,
                    n_clusters: int | None = None) -> dict[str, float]:
    """Label-free scores of a clustering of ``X``: silhouette (sampled), Davies-Bouldin,
    Calinski-Harabasz, size entropy, the number of clusters and the fraction of noise.

    Noise points (label -1) are left out of the four scores.
    """
    Xa, lab = _data_and_labels(X, labels)
    is_noise = lab == NOISE if np.issubdtype(lab.dtype, np.integer) else np.zeros(len(lab), dtype=bool)
    keep = ~is_noise
    Xk, lk = Xa[keep], lab[keep]
    found = int(len(np.unique(lk)))
    out = {
        "silhouette": float("nan"),
        "davies_bouldin": float("nan"),
        "calinski_harabasz": float("nan"),
        "size_entropy": 0.0 if found == 0 else size_entropy(
            lk, n_clusters=max(n_clusters, found) if n_clusters else None),
        "n_clusters": found,
        "noise_fraction": float(is_noise.mean()),
    }
    if found >= 2 and _defined(lk):
        out["silhouette"] = silhouette(Xk, lk, sample_size=sample_size, random_state=random_state)
        out["davies_bouldin"] = float(skm.davies_bouldin_score(Xk, lk))
        out["calinski_harabasz"] = float(skm.calinski_harabasz_score(Xk, lk))
    return out
