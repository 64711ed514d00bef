"""The label-free pipeline search of ``deepclust run``: it finds the manifold pipeline where k-means
on the features fails (scikit-learn's sheared blobs), respects its budget, and its choice reaches
metrics.json and the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("umap")

from deepclust.data import Dataset, DatasetMeta
from deepclust.metrics import accuracy
from deepclust.run import run
from deepclust.search import choose_pipeline


def _anisotropic_blobs(n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's example of three sheared blobs that k-means cuts wrongly, plus 3 noise features."""
    from sklearn.datasets import make_blobs

    X, y = make_blobs(n_samples=n, centers=3, random_state=170)
    X = X @ np.array([[0.6, -0.6], [-0.4, 0.8]])
    return np.c_[X, np.random.default_rng(0).normal(0, 0.05, (n, 3))].astype(np.float32), y


def test_search_prefers_the_manifold_where_kmeans_fails(one_thread) -> None:
    X, y = _anisotropic_blobs()
    choice = choose_pipeline(X, 3, random_state=0)
    by_name = {c.name: c for c in choice.candidates}
    assert accuracy(y, by_name["kmeans"].labels) < 0.85
    assert choice.winner.name.startswith("umap")
    assert accuracy(y, choice.winner.labels) > 0.98
    assert choice.winner.score == max(c.score for c in choice.candidates if c.score is not None)


def test_search_budget_stops_starting_candidates(one_thread) -> None:
    X, _ = _anisotropic_blobs(300)
    choice = choose_pipeline(X, 3, random_state=0, budget_s=1e-9)
    fitted = [c.name for c in choice.candidates if c.score is not None]
    assert fitted == ["kmeans"] and choice.winner.name == "kmeans"
    assert all("budget" in (c.skipped or "") for c in choice.candidates[1:])


def test_run_records_the_search(tmp_path: Path, one_thread) -> None:
    X, y = _anisotropic_blobs(450)
    ds = Dataset(X, y, DatasetMeta(name="sheared", modality="array", n_classes=3))
    res = run(ds, tmp_path / "out", k=3, seed=0)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    summary = res.summary()
    assert summary["pipeline"]["winner"] == res.pipeline.winner.name
    assert summary["method"] == "umap" and metrics["scores"]["acc"] > 0.98
    assert {c["name"] for c in summary["pipeline"]["candidates"]} == {"kmeans", "umap+kmeans", "umap+gmm", "ward"}
    assert "Choosing the pipeline" in (tmp_path / "out" / "report.html").read_text()
