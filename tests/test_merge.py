"""`deepclust merge` (coarsening a run along its Ward merge tree), `--noise`, and the k range of `run --k auto`."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from scipy.cluster.hierarchy import linkage

from deepclust import metrics
from deepclust.cli import main
from deepclust.merge import cut, load_merged_model, merge_tree, remaining_tree, tree_levels, ward_linkage
from deepclust.noise import distance_outliers, scores_with_noise
from deepclust.select_k import alternatives

# four blobs: 0-1 close together, 2-3 close together, the two pairs far apart
CENTRES = np.array([[0.0, 0.0], [0.0, 5.0], [40.0, 0.0], [40.0, 6.0]])


def _blobs(n: int = 50, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.concatenate([c + rng.normal(scale=0.5, size=(n, 2)) for c in CENTRES]).astype(np.float32)
    return X, np.repeat(np.arange(len(CENTRES)), n)


def _digest(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath, f)
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _labels(run: Path) -> np.ndarray:
    with open(run / "assignments.csv", newline="") as fh:
        return np.array([int(r["cluster"]) for r in csv.DictReader(fh)])


@pytest.fixture
def blob_run(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    X, y = _blobs()
    np.savez(tmp_path / "blobs.npz", X=X, y=y)
    run = tmp_path / "k4"
    assert main(["--quiet", "cluster", str(tmp_path / "blobs.npz"), "-k", "4", "--out", str(run)]) == 0
    return run, X, y


def test_ward_on_single_points_is_scipys_ward() -> None:
    X = np.random.default_rng(0).normal(size=(15, 3))
    np.testing.assert_allclose(ward_linkage(X, np.ones(15)), linkage(X, "ward"), atol=1e-9)


def test_ward_weighs_clusters_by_size() -> None:
    """Two large clusters 6 apart and a tiny one 14 beyond: joining the tiny one costs the least
    within-cluster sum of squares, though the large pair has the nearest centroids."""
    cents = np.array([[0.0], [6.0], [20.0]])
    assert ward_linkage(cents, np.array([1000, 1000, 2]))[0][:2].tolist() == [1.0, 2.0]
    assert ward_linkage(cents, np.array([1, 1, 1]))[0][:2].tolist() == [0.0, 1.0]


def test_merge_four_blobs_to_two_joins_the_nearest_pairs(blob_run, capsys) -> None:
    run, X, y = blob_run
    before = _digest(run)
    assert main(["--quiet", "merge", str(run), "--k", "2"]) == 0
    assert _digest(run) == before, "merge changed the source run"
    merged = run.parent / "k4-merged-k2"
    fine, coarse = _labels(run), _labels(merged)
    blob_of_cluster = {c: np.bincount(y[fine == c]).argmax() for c in range(4)}
    pair = {c: blob_of_cluster[c] // 2 for c in range(4)}  # blobs 0,1 -> 0; 2,3 -> 1
    mapping = json.loads((merged / "merge.json").read_text())["mapping"]
    assert len(set(mapping.values())) == 2
    for a in range(4):
        for b in range(4):
            assert (mapping[str(a)] == mapping[str(b)]) == (pair[a] == pair[b])
    np.testing.assert_array_equal(coarse, [mapping[str(c)] for c in fine])
    m = json.loads((merged / "metrics.json").read_text())
    assert m["n_clusters"] == 2 and m["merged"]["k_from"] == 4
    assert m["scores"]["acc"] == pytest.approx(metrics.accuracy(y, coarse))
    assert m["scores"]["ari"] == pytest.approx(metrics.ari(y, coarse))
    assert m["scores"]["silhouette"] is None  # needs the features, which merge does not read
    # the merged model predicts merged clusters; the source model is untouched
    np.testing.assert_array_equal(load_merged_model(merged).predict(X), coarse)
    np.testing.assert_array_equal(load_merged_model(run).predict(X), fine)
    proba = load_merged_model(merged).predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)
    # a second merge never reuses the first one's folder
    assert main(["--quiet", "merge", str(run), "--k", "2"]) == 0
    assert (run.parent / "k4-merged-k2-2").is_dir() and _digest(merged.parent / "k4-merged-k2")


def test_merging_a_merged_run_composes_the_mapping(blob_run) -> None:
    run, X, _ = blob_run
    assert main(["--quiet", "merge", str(run), "--k", "3", "--out", str(run.parent / "k3")]) == 0
    assert main(["--quiet", "merge", str(run.parent / "k3"), "--k", "2", "--out", str(run.parent / "k3to2")]) == 0
    assert main(["--quiet", "merge", str(run), "--k", "2", "--out", str(run.parent / "k2")]) == 0
    np.testing.assert_array_equal(_labels(run.parent / "k3to2"), _labels(run.parent / "k2"))
    np.testing.assert_array_equal(load_merged_model(run.parent / "k3to2").predict(X), _labels(run.parent / "k2"))


def test_cut_and_remaining_tree_agree() -> None:
    X, y = _blobs(20)
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 7, len(X))  # any partition: seven clusters
    tree = merge_tree(X, labels, y)
    for k in range(2, 7):
        mapping = cut(tree, k)
        assert sorted(set(mapping.values())) == list(range(k))
        rest = remaining_tree(tree, k)
        assert sum(rest["sizes"]) == len(X) and len(rest["linkage"]) == k - 1
        for k2 in range(2, k):  # cutting the rest at k2 = cutting the whole tree at k2
            composed = {c: cut(rest, k2)[mapping[c]] for c in mapping}
            assert composed == cut(tree, k2)
        merged = np.array([mapping[c] for c in labels])
        counts = np.asarray(rest["contingency"]["counts"])
        assert counts.sum() == len(X) and counts[:, 0].sum() == (merged == 0).sum()


def test_noise_marks_far_outliers_and_keeps_inliers(tmp_path: Path) -> None:
    X, y = _blobs(60)
    rng = np.random.default_rng(3)
    angles = rng.uniform(0, 2 * np.pi, 8)  # far from every blob, in all directions, one at a time
    far = (CENTRES[rng.integers(0, 4, 8)] + 12 * np.c_[np.cos(angles), np.sin(angles)]).astype(np.float32)
    np.savez(tmp_path / "data.npz", X=np.concatenate([X, far]), y=np.concatenate([y, np.zeros(8, int)]))
    for command in (["cluster", "-k", "4"], ["run", "--k", "4", "--method", "gmm"]):
        out = tmp_path / command[0]
        assert main(["--quiet", command[0], str(tmp_path / "data.npz"), *command[1:], "--noise", "--out", str(out)]) == 0
        labels = _labels(out)
        assert (labels[-8:] == -1).all(), "a planted outlier was assigned"
        assert (labels[:-8] >= 0).mean() >= 0.97, "too many inliers were left out"
        m = json.loads((out / "metrics.json").read_text())
        assert m["noise"]["n_noise"] == int((labels < 0).sum())
        assert m["scores"]["acc"] <= m["scores_assigned"]["acc"]  # noise counts as wrong on all points
    assert "noise points" in (tmp_path / "run" / "report.html").read_text()


def test_noise_rule_and_scores() -> None:
    X, _ = _blobs(40)
    labels = np.repeat(np.arange(4), 40)
    assert not distance_outliers(X, labels).any() or distance_outliers(X, labels).mean() < 0.05
    y = np.array([0, 0, 1, 1, 1, 0])
    pred = np.array([0, 0, 1, 1, -1, -1])
    on_all, assigned = scores_with_noise(y, pred)
    assert assigned["acc"] == 1.0 and on_all["acc"] == pytest.approx(4 / 6)


def test_alternatives_are_other_peaks_within_tolerance() -> None:
    curve = {2: 0.80, 3: 0.60, 4: 0.70, 5: 0.83, 6: 0.82, 8: 0.5, 10: 0.79, 12: 0.4}
    assert [a["k"] for a in alternatives(curve, 5)] == [2, 10]  # 6 is a neighbour, 4 is too low
    assert alternatives({2: 0.5, 3: 0.9, 4: 0.4}, 3) == []


def test_tree_levels_find_the_hierarchy() -> None:
    rng = np.random.default_rng(0)
    sub = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    X = np.concatenate([c + rng.normal(size=(60, 2)) for c in np.concatenate([sub, sub + [60, 0]])])
    tree = merge_tree(X, np.repeat(np.arange(6), 60))
    assert [lv["k"] for lv in tree_levels(tree)] == [2]
    flat = merge_tree(rng.normal(size=(600, 2)), np.repeat(np.arange(6), 100))
    assert tree_levels(flat) == []


def test_run_lists_the_coarser_k_of_nested_blobs(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    sub = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
    X = np.concatenate([c + rng.normal(size=(60, 2)) for c in np.concatenate([sub, sub + [60, 0]])])
    np.savez(tmp_path / "nested.npz", X=X.astype(np.float32))
    out = tmp_path / "run"
    assert main(["--quiet", "run", str(tmp_path / "nested.npz"), "--method", "kmeans", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    alts = m["k_alternatives"]
    assert alts["chosen"] == m["n_clusters"] == 6
    assert [a["k"] for a in alts["also_supported"]] == [2]
    assert alts["also_supported"][0]["command"] == f"deepclust merge {out} --k 2"
    html = (out / "report.html").read_text()
    assert "Also supported" in html and f"deepclust merge {out} --k 2" in html and 'id="tree"' in html
    assert main(["--quiet", "merge", str(out), "--k", "2"]) == 0
    merged = Path(f"{out}-merged-k2")
    assert len(set(_labels(merged).tolist())) == 2
    assert "merged from clusters" in (merged / "report.html").read_text()
