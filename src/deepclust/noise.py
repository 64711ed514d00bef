"""``--noise``: points that belong to no cluster stay unassigned (label ``-1``).

* Methods that find noise themselves (HDBSCAN, Campello, Moulavi & Sander 2013) keep their own.
* Every other method (centroid, mixture and deep methods alike) gets one label-free rule, applied to
  the training points after the fit: a point is noise when its distance to its cluster's centre (the
  mean of the cluster's points, in the space the run's scores use: the features, or a deep method's
  embedding) lies beyond ``median + 3 × 1.4826 × MAD`` of that cluster's distances — three robust
  standard deviations (the median-absolute-deviation rule of Leys et al., J. Exp. Soc. Psych. 2013;
  Hampel 1974). A cluster whose MAD is 0 (most members at one distance) and clusters of fewer than
  :data:`MIN_CLUSTER_SIZE` points mark nothing. One rule for all methods, so that ``--noise``
  means the same thing whichever method ran; it is not refitted afterwards (the model's ``predict``
  still assigns every new point to a cluster; ``assignments.csv`` holds the -1).

Scores with noise (:func:`scores_with_noise`): the label-free scores leave noise out (as
:func:`deepclust.metrics.internal_scores` always does). The label-based scores come twice:
``scores`` on **all** points, where ACC and purity count every noise point as an error and NMI, ARI
and AMI treat noise as one more cluster (one that carries no class information), and
``scores_assigned`` on the assigned points only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepclust import metrics

NOISE = metrics.NOISE
#: methods (catalogue names) that find noise themselves; every other method gets :data:`RULE`
NATIVE_NOISE = ("hdbscan",)
#: robust standard deviations beyond the median distance that make a point noise
N_MAD = 3.0
#: MAD × this estimates the standard deviation of a normal distribution
MAD_TO_SD = 1.4826
#: clusters smaller than this mark no noise (too few points for a robust spread)
MIN_CLUSTER_SIZE = 5
RULE = (f"distance to the cluster's centre beyond the median + {N_MAD:g} × 1.4826 × MAD of its cluster's distances "
        "(Leys et al. 2013), in the space the scores use; HDBSCAN keeps its own noise")


def distance_outliers(space: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Boolean mask of the points whose distance to their cluster's mean exceeds the :data:`RULE` threshold."""
    Z = np.asarray(space).reshape(len(space), -1)
    labels = np.asarray(labels)
    out = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels[labels >= 0]):
        members = np.flatnonzero(labels == c)
        if len(members) < MIN_CLUSTER_SIZE:
            continue
        part = Z[members].astype(np.float64)
        dist = np.linalg.norm(part - part.mean(0), axis=1)
        med = np.median(dist)
        mad = np.median(np.abs(dist - med))
        if mad > 0:
            out[members] = dist > med + N_MAD * MAD_TO_SD * mad
    return out


def mark_noise(space: np.ndarray, labels: np.ndarray, finds_noise: bool) -> np.ndarray:
    """``labels`` with the noise of :data:`RULE` set to -1 (unchanged for a method that ``finds_noise`` itself)."""
    labels = np.asarray(labels, dtype=np.int64).copy()
    if not finds_noise:
        labels[distance_outliers(space, labels)] = NOISE
    return labels


def scores_with_noise(y: Any, labels: np.ndarray) -> tuple[dict[str, float], dict[str, float]]:
    """External scores on all points (noise counted wrong, see the module notes) and on the assigned points."""
    y, labels = np.asarray(y), np.asarray(labels)
    assigned = labels >= 0
    on_assigned = metrics.external_scores(y[assigned], labels[assigned]) if assigned.any() else {}
    on_all = metrics.external_scores(y, labels)  # nmi, ari, ami: noise is one more cluster
    share = float(assigned.mean())
    for key in ("acc", "purity"):  # noise points are errors
        on_all[key] = on_assigned.get(key, 0.0) * share
    return on_all, on_assigned


def noise_summary(labels: np.ndarray, finds_noise: bool) -> dict[str, Any]:
    """What metrics.json records about noise."""
    labels = np.asarray(labels)
    n = int((labels < 0).sum())
    return {"n_noise": n, "share": round(n / max(1, len(labels)), 6),
            "rule": "the method's own (HDBSCAN)" if finds_noise else RULE,
            "scores": "scores: ACC and purity count noise as errors, NMI/ARI/AMI treat it as one more cluster; "
                      "scores_assigned: the assigned points only; label-free scores leave noise out in both"}


__all__ = ["NATIVE_NOISE", "NOISE", "RULE", "distance_outliers", "mark_noise", "noise_summary", "scores_with_noise"]
