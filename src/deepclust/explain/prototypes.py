"""Explanations of a nearest-centre clustering (k-means, TELL), exact rather than post hoc.

A sample goes to the centre it is nearest to. Per cluster, the centre itself says what the cluster
is: its coordinates, and the features on which it stands out from the data (how many standard
deviations the centre lies from the data's mean). Per sample, the choice between the assigned
centre j and the runner-up j' is the margin ``‖x − w_j'‖² − ‖x − w_j‖²``, a sum over features of
``(x_f − w_j'f)² − (x_f − w_jf)²``: the features with the largest terms are those that decide the
assignment, and the terms add up to the whole margin (as TELL reads its weights, Peng et al.,
JMLR 2022, §5).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _names(feature_names: Sequence[str] | None, d: int) -> list[str]:
    return list(feature_names) if feature_names is not None and len(feature_names) == d else [f"x{j}" for j in range(d)]


def centre_profiles(centers: np.ndarray, X: np.ndarray, feature_names: Sequence[str] | None = None,
                    top: int = 5) -> list[list[dict[str, Any]]]:
    """For every centre, its ``top`` most distinctive features: name, the centre's value and its
    distance from the data's mean in standard deviations (``z``), largest |z| first."""
    centers = np.asarray(centers, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    names = _names(feature_names, X.shape[1])
    mean, std = X.mean(0), X.std(0)
    z = (centers - mean) / np.where(std > 0, std, 1.0)
    out = []
    for c in range(len(centers)):
        order = np.argsort(-np.abs(z[c]), kind="stable")[:top]
        out.append([{"feature": names[f], "value": float(centers[c, f]), "z": float(z[c, f])} for f in order])
    return out


def assignment_reasons(X: np.ndarray, centers: np.ndarray, feature_names: Sequence[str] | None = None,
                       top: int = 3) -> list[dict[str, Any]]:
    """For every row of ``X``: its centre, the runner-up, the margin between their squared distances
    and the ``top`` features contributing most to it (contributions sum to the margin over all
    features)."""
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    centers = np.asarray(centers, dtype=np.float64)
    names = _names(feature_names, X.shape[1])
    d2 = np.maximum((X * X).sum(1)[:, None] - 2 * X @ centers.T + (centers * centers).sum(1)[None], 0)
    if centers.shape[0] < 2:
        return [{"cluster": 0, "runner_up": None, "margin": None, "features": []} for _ in range(len(X))]
    order = np.argsort(d2, axis=1, kind="stable")
    out = []
    for i, x in enumerate(X):
        j, r = int(order[i, 0]), int(order[i, 1])
        contrib = (x - centers[r]) ** 2 - (x - centers[j]) ** 2
        best = np.argsort(-contrib, kind="stable")[:top]
        out.append({"cluster": j, "runner_up": r, "margin": float(d2[i, r] - d2[i, j]),
                    "features": [{"feature": names[f], "contribution": float(contrib[f])} for f in best]})
    return out
