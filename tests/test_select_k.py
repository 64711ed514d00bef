"""Choosing k without labels: found on well-separated blobs from 3 to 120 clusters, in O(log k) fits."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from deepclust.errors import DeepclustError
from deepclust.select_k import CRITERIA, PPP_TOLERANCE, KSelection, grid, k_limit, refine, refine_largest, select_k

#: every criterion but PPP, whose largest-k-within-tolerance rule passes the truth by a few on many blobs
#: (43 for 40; see test_ppp_*)
SEARCHED = tuple(c for c in CRITERIA if c != "ppp")


def _blobs(k: int, per: int, seed: int) -> np.ndarray:
    X, _ = make_blobs(k * per, centers=k, n_features=10, cluster_std=1.0, center_box=(-40, 40), random_state=seed)
    return X


@pytest.mark.parametrize("k, per, min_size", [(3, 100, 30), (40, 40, 30), (120, 25, 15)])
def test_k_found_on_blobs_with_log_fits(k: int, per: int, min_size: int) -> None:
    sel = select_k(_blobs(k, per, seed=k), criteria=SEARCHED, min_cluster_size=min_size, random_state=0)
    assert sel.choices == {c: k for c in SEARCHED}, sel.choices
    assert sel.k == k
    k_max = sel.extra["k_max"]
    assert k_max == k_limit(k * per, min_size) and k_max > k  # the range follows the data, beyond the truth
    # coarse grid plus bisection of the two gaps beside the best: O(log k_max) fits, not one per k
    assert sel.extra["n_fits"] <= len(grid(2, k_max)) + 2 * math.ceil(math.log2(k_max)), sel.extra
    if k_max > 50:
        assert sel.extra["n_fits"] < k_max / 2
    assert all(len(curve) == len(sel.k_values) for curve in sel.curves.values())


def test_refine_finds_the_peak_in_log_evaluations() -> None:
    calls: list[int] = []

    def score(k: int) -> float:
        calls.append(k)
        return -abs(k - 137)

    ks = grid(2, 400)
    assert ks[:8] == [2, 3, 4, 5, 6, 8, 10, 12] and ks[-1] == 400
    assert refine(score, ks, {}) == 137
    assert len(calls) == len(set(calls)) <= len(ks) + 2 * math.ceil(math.log2(400))


def test_refine_largest_finds_the_end_of_the_plateau_in_log_evaluations() -> None:
    calls: list[int] = []

    def score(k: int) -> float:  # validated up to 37 (within the tolerance of the best, 1.0 at 12), then falls
        calls.append(k)
        return 1.0 if k == 12 else 0.99 if k <= 37 else 0.5

    ks = grid(2, 400)
    assert refine_largest(score, ks, {}, tolerance=0.02) == 37
    assert refine_largest(score, ks, {}, tolerance=0.001) == 12
    assert len(set(calls)) <= len(ks) + 2 * math.ceil(math.log2(400))


@pytest.mark.parametrize("k, per", [(3, 100), (8, 60)])
def test_ppp_finds_the_blobs_and_records_its_curve(k: int, per: int) -> None:
    sel = select_k(_blobs(k, per, seed=k), criteria=("ppp",), rule="ppp", random_state=0)
    assert sel.k == sel.choices["ppp"] == k, sel.curves
    curve = dict(zip(sel.k_values, sel.curves["ppp"]))
    parts = sel.extra["ppp"]
    assert parts["k"] == sorted(j for j, s in curve.items() if math.isfinite(s))
    at = parts["k"].index(k)
    assert parts["validation"][at] > 0.98 and parts["repeatability"][at] > 0.98  # validated and repeatable
    assert curve[k] >= max(s for s in curve.values() if math.isfinite(s)) - PPP_TOLERANCE
    assert all(s < curve[k] - PPP_TOLERANCE for j, s in curve.items() if j > k and math.isfinite(s))
    assert curve[2 if k > 3 else 8] < 0.9  # merging or splitting blobs is not repeatable
    assert sel.to_dict()["directions"]["ppp"] == "max"


def test_ppp_finds_no_repeatable_partition_of_one_gaussian() -> None:
    X = np.random.default_rng(0).normal(size=(600, 5))
    sel = select_k(X, (2, 12), criteria=("ppp",), rule="ppp", random_state=0, reduce=False)
    assert sel.extra["reduction"] == "none" and "space given" in sel.rule
    assert max(sel.curves["ppp"]) < 0.5, sel.curves  # blobs score above 0.98 at their k


def test_deterministic_subsampled_and_round_trips() -> None:
    X = _blobs(4, 300, seed=1)
    a = select_k(X, (2, 9), criteria=("silhouette", "hdbscan"), rule="silhouette", max_samples=600, random_state=3)
    b = select_k(X, (2, 9), criteria=("silhouette", "hdbscan"), rule="silhouette", max_samples=600, random_state=3)
    assert a.n_samples_used == 600 and a.curves == b.curves and a.k == b.k == 4
    assert set(a.k_values) <= set(range(2, 10))
    again = KSelection.from_dict(a.to_dict())
    assert again.k == a.k and again.choices == a.choices


def test_median_rule_is_the_middle_choice() -> None:
    sel = select_k(_blobs(5, 60, seed=2), (2, 8), criteria=CRITERIA, rule="median", random_state=0)
    assert sel.k == sorted(sel.choices.values())[1]


def test_k_limit_grows_with_the_data() -> None:
    assert k_limit(1797) == 59 and k_limit(6000) == 200 and k_limit(10) == 2


def test_bad_inputs() -> None:
    X = np.random.default_rng(0).normal(size=(50, 3))
    with pytest.raises(DeepclustError, match="criteria"):
        select_k(X, (2, 4), criteria=("elbow",))
    with pytest.raises(DeepclustError, match="rule"):
        select_k(X, (2, 4), criteria=("silhouette",), rule="bic")
    with pytest.raises(DeepclustError, match=">= 2"):
        select_k(X, (1, 4))
    with pytest.raises(DeepclustError, match="too few"):
        select_k(X[:4], (2, 4))
