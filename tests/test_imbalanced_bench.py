"""benchmarks/imbalanced_bench.py: the committed long-tail rule, the true-prior reference, the summary."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from deepclust.targets import kmeans_target

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import imbalanced_bench as ib  # noqa: E402


def test_long_tail_indices_decay_by_the_ratio_and_are_reproducible() -> None:
    y = np.repeat(np.arange(5), [300, 250, 400, 200, 500])
    idx = ib.long_tail_indices(y, 100, seed=0)
    np.testing.assert_array_equal(idx, ib.long_tail_indices(y, 100, seed=0))
    sizes = np.sort(np.bincount(y[idx], minlength=5))[::-1]
    np.testing.assert_array_equal(sizes, [int(200 * 100 ** (-i / 4)) for i in range(5)])  # n_max: smallest class
    assert len(np.unique(idx)) == len(idx)


def test_true_prior_gives_the_biggest_share_to_the_biggest_start_cluster() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(3) * 10
    counts = [500, 100, 20]
    X = np.concatenate([c + rng.normal(0, 0.5, (s, 3)) for c, s in zip(centres, counts)]).astype(np.float32)
    y = np.repeat([2, 0, 1], counts)  # label names unrelated to the sizes
    prior = np.asarray(ib.true_prior(X, y, 3, seed=0))
    np.testing.assert_allclose(np.sort(prior), np.sort(counts) / sum(counts))
    z = torch.nn.functional.normalize(torch.from_numpy(X), dim=1) * 3 ** 0.5
    start = kmeans_target(z, 3, seed=0)[0].numpy()
    assert prior[np.bincount(start).argmax()] == max(prior)


def test_summary_averages_common_pairs_and_names_partial_methods() -> None:
    def rec(ds, m, acc):
        return {"dataset": ds, "encoder": "e", "method": m, "imbalance_ratio": 100.0, "acc": acc, "tail": 0.0,
                "size_error": 0.0}

    records = [rec("a", "kmeans", 0.5), rec("b", "kmeans", 0.7), rec("c", "kmeans", 0.9),
               rec("a", "p2ot", 0.6), rec("b", "p2ot", 0.8), rec("a", "sp2ot", 1.0)]
    text = ib.summary_of(records)
    assert "| 100 | 2 | kmeans | 0.600 |" in text and "| 100 | 2 | p2ot | 0.700 |" in text
    assert "sp2ot at R = 100 (1 of 3 pairs)" in text
