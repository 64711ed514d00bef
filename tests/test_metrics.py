"""Clustering scores against scikit-learn and cases computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from deepclust.errors import DeepclustError
from deepclust.metrics import (
    accuracy,
    ami,
    ari,
    calinski_harabasz,
    confusion_matrix,
    davies_bouldin,
    external_scores,
    internal_scores,
    nmi,
    purity,
    silhouette,
    size_entropy,
)


@pytest.fixture
def labelled():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, size=400)
    pred = np.where(rng.random(400) < 0.8, y, rng.integers(0, 6, size=400))
    return y, pred


def test_accuracy_of_a_permuted_labelling_is_one():
    y = np.array([0, 0, 1, 1, 2, 2, 2])
    perm = np.array([2, 0, 1])
    assert accuracy(y, perm[y]) == 1.0
    assert accuracy(["a", "a", "b"], [7, 7, 3]) == 1.0


def test_accuracy_rectangular_by_hand():
    # classes × clusters = [[2, 1, 0], [0, 0, 3]]: best matching 0->0 (2) and 1->2 (3): 5/6
    y_true = [0, 0, 0, 1, 1, 1]
    y_pred = [0, 0, 1, 2, 2, 2]
    assert accuracy(y_true, y_pred) == pytest.approx(5 / 6)
    # fewer clusters than classes: one class cannot be matched
    assert accuracy([0, 0, 1, 1, 2, 2], [0, 0, 0, 0, 1, 1]) == pytest.approx(4 / 6)


def test_accuracy_treats_noise_as_a_cluster():
    assert accuracy([0, 0, 1, 1], [-1, -1, 0, 0]) == 1.0
    assert accuracy([0, 0, 1, 1], [-1, 0, 0, 0]) == pytest.approx(3 / 4)


def test_purity_by_hand():
    # clusters: {0: classes 0,0}, {1: class 0}, {2: classes 1,1,1} -> all majority: 1.0
    assert purity([0, 0, 0, 1, 1, 1], [0, 0, 1, 2, 2, 2]) == 1.0
    # one cluster holding 3 of class 0 and 2 of class 1 -> 3/5
    assert purity([0, 0, 0, 1, 1], [4, 4, 4, 4, 4]) == pytest.approx(3 / 5)


def test_confusion_matrix_hungarian_order():
    m, classes, clusters = confusion_matrix([0, 0, 0, 1, 1, 1], [5, 5, 1, 2, 2, 2], return_labels=True)
    assert classes.tolist() == [0, 1]
    assert clusters.tolist() == [5, 2, 1]  # matched to class 0, to class 1, then the unmatched cluster
    assert m.tolist() == [[2, 0, 1], [0, 3, 0]]
    assert np.trace(m) / m.sum() == pytest.approx(accuracy([0, 0, 0, 1, 1, 1], [5, 5, 1, 2, 2, 2]))


def test_against_scikit_learn(labelled):
    y, pred = labelled
    assert nmi(y, pred) == pytest.approx(skm.normalized_mutual_info_score(y, pred, average_method="arithmetic"))
    assert nmi(y, pred, average_method="geometric") == pytest.approx(
        skm.normalized_mutual_info_score(y, pred, average_method="geometric"))
    assert ari(y, pred) == pytest.approx(skm.adjusted_rand_score(y, pred))
    assert ami(y, pred) == pytest.approx(skm.adjusted_mutual_info_score(y, pred))
    cm = skm.cluster.contingency_matrix(y, pred)
    assert purity(y, pred) == pytest.approx(cm.max(axis=0).sum() / cm.sum())
    scores = external_scores(y, pred)
    assert set(scores) == {"acc", "nmi", "ari", "ami", "purity"}
    assert 0.8 < scores["acc"] <= scores["purity"] <= 1.0


def test_accuracy_matches_brute_force(labelled):
    from itertools import permutations

    y, pred = labelled
    y, pred = y[:60] % 3, pred[:60] % 4  # 3 classes, 4 clusters
    best = 0
    for perm in permutations(range(4), 3):  # class i <- cluster perm[i]
        best = max(best, sum(int(((y == i) & (pred == c)).sum()) for i, c in enumerate(perm)))
    assert accuracy(y, pred) == pytest.approx(best / 60)


@pytest.mark.parametrize("bad", [
    ([0, 1, 2], [0, 1]),             # lengths differ
    ([[0, 1], [1, 0]], [0, 1]),      # not 1-D
    ([], []),                        # empty
    ([0.0, np.nan], [0, 1]),         # NaN label
    ([0.5, 1.0], [0, 1]),            # not whole numbers
])
def test_bad_labels_raise(bad):
    with pytest.raises(DeepclustError):
        accuracy(*bad)


def test_internal_scores_against_scikit_learn():
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(0, 1, (50, 3)), rng.normal(6, 1, (50, 3))]).astype(np.float32)
    lab = np.repeat([0, 1], 50)
    assert silhouette(X, lab) == pytest.approx(skm.silhouette_score(X, lab), rel=1e-5)
    assert davies_bouldin(X, lab) == pytest.approx(skm.davies_bouldin_score(X, lab), rel=1e-5)
    assert calinski_harabasz(X, lab) == pytest.approx(skm.calinski_harabasz_score(X, lab), rel=1e-5)
    # sampled silhouette stays close
    assert silhouette(X, lab, sample_size=60) == pytest.approx(skm.silhouette_score(X, lab), abs=0.1)
    scores = internal_scores(X, lab)
    assert scores["n_clusters"] == 2 and scores["noise_fraction"] == 0.0
    assert scores["size_entropy"] == pytest.approx(1.0)


def test_internal_scores_single_cluster_is_nan_not_an_error():
    X = np.random.default_rng(0).normal(size=(20, 2))
    lab = np.zeros(20, dtype=int)
    assert math.isnan(silhouette(X, lab))
    assert math.isnan(davies_bouldin(X, lab))
    s = internal_scores(X, lab)
    assert math.isnan(s["silhouette"]) and s["size_entropy"] == 0.0


def test_internal_scores_leave_noise_out():
    rng = np.random.default_rng(2)
    X = np.concatenate([rng.normal(0, 1, (30, 2)), rng.normal(8, 1, (30, 2)), rng.uniform(-20, 20, (10, 2))])
    lab = np.repeat([0, 1, -1], [30, 30, 10])
    s = internal_scores(X, lab)
    assert s["noise_fraction"] == pytest.approx(10 / 70)
    assert s["silhouette"] == pytest.approx(skm.silhouette_score(X[:60], lab[:60]), rel=1e-5)


def test_size_entropy():
    assert size_entropy([0, 1, 2, 0, 1, 2]) == pytest.approx(1.0)
    assert size_entropy([0, 0, 0, 0]) == 0.0
    p = np.array([3, 1]) / 4
    assert size_entropy([0, 0, 0, 1]) == pytest.approx(-(p * np.log(p)).sum() / math.log(2))
    # clusters that got no point count as imbalance when n_clusters is given
    assert size_entropy([0, 1], n_clusters=4) == pytest.approx(math.log(2) / math.log(4))
    with pytest.raises(DeepclustError):
        size_entropy([0, 1, 2], n_clusters=2)


def test_internal_scores_validate_lengths():
    with pytest.raises(DeepclustError):
        silhouette(np.zeros((5, 2)), [0, 1, 0])
