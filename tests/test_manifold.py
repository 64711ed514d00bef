"""ManifoldClustering (UMAP layout → GMM / k-means): it untangles what k-means on the raw features
cannot, reloads with identical predictions, and can share one precomputed layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("umap")

from deepclust.base import load_model
from deepclust.engines.kmeans import KMeans
from deepclust.engines.manifold import ManifoldClustering
from deepclust.metrics import accuracy
from deepclust.reduction import place, umap_layout


def _rings(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two concentric rings in 2-D lifted into 5-D: not linearly separable, easy on the manifold."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    angle = rng.uniform(0, 2 * np.pi, n)
    radius = np.where(y == 0, 1.0, 3.0) + rng.normal(0, 0.08, n)
    X = np.c_[radius * np.cos(angle), radius * np.sin(angle), rng.normal(0, 0.05, (n, 3))]
    return X.astype(np.float32), y


def test_manifold_step_separates_rings_where_kmeans_cannot(one_thread) -> None:
    X, y = _rings()
    kmeans_acc = accuracy(y, KMeans(2, random_state=0).fit(X).labels_)
    model = ManifoldClustering(2, n_components=2, random_state=0).fit(X)
    assert kmeans_acc < 0.75
    assert accuracy(y, model.labels_) > 0.98
    assert (model.predict(X) == model.labels_).mean() > 0.98  # training points land on their own layout


@pytest.mark.parametrize("clusterer", ["gmm", "kmeans"])
def test_save_load_identical_and_anchor_cap(clusterer: str, tmp_path: Path, one_thread) -> None:
    X, _ = _rings(400)
    model = ManifoldClustering(2, clusterer=clusterer, n_components=2, max_anchors=150, random_state=0).fit(X)
    assert model.anchors_.shape == (150, 5)
    new = X[::7] + 0.01
    model.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    np.testing.assert_array_equal(again.predict_proba(new), model.predict_proba(new))
    np.testing.assert_array_equal(again.transform(new), model.transform(new))


def test_shared_layout_gives_the_same_model(one_thread) -> None:
    X, _ = _rings(300)
    layout = umap_layout(X, n_components=2, random_state=0)
    a = ManifoldClustering(2, n_components=2, random_state=0).fit(X)
    b = ManifoldClustering(2, n_components=2, random_state=0).fit_with_layout(X, layout)
    np.testing.assert_array_equal(a.labels_, b.labels_)


def test_place_is_exact_on_training_points() -> None:
    rng = np.random.default_rng(1)
    train, layout = rng.normal(size=(50, 4)).astype(np.float32), rng.normal(size=(50, 2)).astype(np.float32)
    np.testing.assert_allclose(place(train, train, layout, n_neighbors=5), layout, atol=1e-4)


def test_umap_kernels_are_cached_on_disk_once_used(one_thread) -> None:
    """umap-learn's numba kernels get numba's on-disk cache (so a new process skips their compilation)."""
    import umap.umap_
    from numba.core.caching import NullCache

    from deepclust.reduction import cache_umap_kernels

    blobs = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
    umap_layout(blobs, n_components=2, n_neighbors=5)  # switches the cache on before compiling
    assert cache_umap_kernels() > 10
    assert not isinstance(umap.umap_.smooth_knn_dist._cache, NullCache)
    assert not isinstance(umap.umap_.compute_membership_strengths._cache, NullCache)


def test_exact_knn_matches_brute_force_with_self_first() -> None:
    """The neighbour lists handed to umap-learn for small data: the row itself first, then its
    nearest rows at their Euclidean distances (as umap-learn's own exact search gives them)."""
    from deepclust.reduction import exact_knn

    X = np.random.default_rng(0).normal(size=(80, 6)).astype(np.float32)
    idx, dist = exact_knn(X, 7)
    D = np.linalg.norm(X[:, None] - X[None], axis=2)
    assert idx.shape == dist.shape == (80, 7) and (idx[:, 0] == np.arange(80)).all() and (dist[:, 0] == 0).all()
    np.testing.assert_allclose(dist, np.sort(D, axis=1)[:, :7], atol=1e-5)
    assert all(set(i) == set(np.argsort(d)[:7]) for i, d in zip(idx, D))
