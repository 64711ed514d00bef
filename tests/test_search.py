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


# ---------------------------------------------------------------- several representations (images on pixels)
def _small_digits(n: int = 400) -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    X = (d.images[:n] / 16.0).astype(np.float32)
    return Dataset(X, d.target[:n], DatasetMeta(name="digits-400", modality="image", n_classes=10,
                                                image_shape=(8, 8)))


def test_only_pixel_images_get_the_autoencoder_too() -> None:
    from deepclust.run import representations

    assert representations("image", "raw", given=False, searching=True) == ["raw", "autoencoder"]
    assert representations("image", "raw", given=True, searching=True) == ["raw"]  # --encoder raw is obeyed
    assert representations("image", "raw", given=False, searching=False) == ["raw"]  # --method given
    assert representations("image", "efficientnet-lite0", given=False, searching=True) == ["efficientnet-lite0"]
    assert representations("table", "raw", given=False, searching=True) == ["raw"]


def test_combine_keeps_the_best_representation_and_ties_go_first() -> None:
    from deepclust.search import Candidate, PipelineChoice, combine

    def choice(score: float) -> PipelineChoice:
        c = Candidate("umap+gmm", "umap", {"clusterer": "gmm"}, np.zeros(5, int), score, 1.0)
        return PipelineChoice(c, [Candidate("kmeans", "kmeans", {}, np.zeros(5, int), score - 0.1), c], "rule")

    enc, combined = combine({"raw": (10, choice(0.7), 2.0, None), "autoencoder": (9, choice(0.8), 5.0, None)})
    assert enc == "autoencoder" and combined.winner.name == "autoencoder → umap+gmm" and combined.winner.k == 9
    assert [c.name for c in combined.candidates] == ["raw → kmeans", "raw → umap+gmm", "autoencoder → kmeans",
                                                     "autoencoder → umap+gmm"]
    enc, _ = combine({"raw": (10, choice(0.7), 2.0, None), "autoencoder": (9, choice(0.7), 5.0, None)})
    assert enc == "raw"
    enc, combined = combine({"raw": (10, choice(0.7), 2.0, None), "autoencoder": (None, None, 0.0, "over budget")})
    assert enc == "raw" and combined.representations[1]["skipped"] == "over budget"


def test_run_compares_pixels_with_the_autoencoder_embedding(tmp_path: Path, one_thread, monkeypatch) -> None:
    import deepclust.methods._autoencoder as ae

    monkeypatch.setattr(ae, "BUDGET_PRETRAIN_STEPS", 20)  # a short pretraining: this tests the plumbing
    monkeypatch.setenv("DEEPCLUST_CACHE", str(tmp_path / "cache"))
    res = run(_small_digits(), tmp_path / "out", k=10, seed=0)
    p = res.summary()["pipeline"]
    reps = {r["encoder"]: r for r in p["representations"]}
    assert set(reps) == {"raw", "autoencoder"} and all(r["score"] is not None for r in reps.values())
    best = max(reps.values(), key=lambda r: r["score"])
    assert p["winner"] == f"{best['encoder']} → {best['winner']}" and res.summary()["encoder"] == best["encoder"]
    assert {c["encoder"] for c in p["candidates"]} == {"raw", "autoencoder"}
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["encoder"] == best["encoder"]
    assert "best pipeline" in (tmp_path / "out" / "report.html").read_text()


def test_run_skips_the_autoencoder_over_budget(tmp_path: Path, one_thread) -> None:
    res = run(_small_digits(), tmp_path / "out", k=10, seed=0, budget_s=1.0)
    reps = res.summary()["pipeline"]["representations"]
    assert [r["encoder"] for r in reps] == ["raw", "autoencoder"]
    assert reps[1]["score"] is None and "budget" in reps[1]["skipped"]
    assert res.summary()["encoder"] == "raw"
