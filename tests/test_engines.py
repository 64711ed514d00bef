"""The classical engines: k-means (torch), mini-batch k-means, GMM, HDBSCAN, Ward, k-medoids."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans as SkKMeans
from sklearn.datasets import make_blobs

from deepclust.base import load_model
from deepclust.engines import (
    HDBSCAN,
    AgglomerativeClustering,
    GaussianMixture,
    KMeans,
    KMedoids,
    MiniBatchKMeans,
    PathIntegralClustering,
)
from deepclust.engines.kmeans import _RowMin, kmeans_plusplus
from deepclust.errors import DeepclustError
from deepclust.methods import METHODS, make_method
from deepclust.metrics import accuracy, ari

ENGINES = {
    "kmeans": lambda k: KMeans(k, device="cpu"),
    "kmeans-cosine": lambda k: KMeans(k, metric="cosine", device="cpu"),
    "minibatch": lambda k: MiniBatchKMeans(k, batch_size=128, device="cpu"),
    "gmm": lambda k: GaussianMixture(k),
    "hdbscan": lambda k: HDBSCAN(k, min_cluster_size=20),
    "agglomerative": lambda k: AgglomerativeClustering(k),
    "agglomerative-subsampled": lambda k: AgglomerativeClustering(k, max_samples=200),
    "kmedoids": lambda k: KMedoids(k),
    "kmedoids-subsampled": lambda k: KMedoids(k, max_samples=200),
    "kmedoids-manhattan": lambda k: KMedoids(k, metric="manhattan"),
    "pic": lambda k: PathIntegralClustering(k),
}


@pytest.fixture(scope="module")
def blobs():
    # well separated, away from the origin so that cosine k-means separates them too
    centers = np.array([[10, 0, 0, 0], [0, 10, 0, 0], [0, 0, 10, 0], [0, 0, 0, 10]], dtype=np.float32)
    X, y = make_blobs(600, centers=centers, cluster_std=0.5, random_state=0)
    return X.astype(np.float32), y


@pytest.mark.parametrize("name", list(ENGINES))
def test_engine_separates_blobs(name, blobs):
    X, y = blobs
    model = ENGINES[name](4).fit(X)
    assert model.labels_.shape == (len(X),)
    assert accuracy(y, model.labels_) == 1.0
    assert ari(y, model.labels_) > 0.99
    assert isinstance(model.timings_, dict) and model.timings_
    proba = model.predict_proba(X[:50])
    assert proba.shape == (50, model.n_clusters_)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", list(ENGINES))
def test_save_load_predicts_identically(name, blobs, tmp_path):
    X, _ = blobs
    # new points between and around the clusters, where a GMM's posteriors are not all 0 or 1
    new = np.random.default_rng(1).normal(5, 4, size=(300, X.shape[1])).astype(np.float32)
    model = ENGINES[name](4).fit(X)
    loaded = load_model(model.save(tmp_path / name))
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(loaded.labels_, model.labels_)
    for data in (X, new):  # bit-exact, on the training data and on new data
        np.testing.assert_array_equal(loaded.predict(data), model.predict(data))
        np.testing.assert_array_equal(loaded.predict_proba(data), model.predict_proba(data))
        if hasattr(model, "transform"):
            np.testing.assert_array_equal(loaded.transform(data), model.transform(data))


@pytest.mark.parametrize("name", [n for n in ENGINES if n != "hdbscan"])
def test_k_larger_than_n_raises(name, blobs):
    X, _ = blobs
    with pytest.raises(DeepclustError, match="larger than the number of samples"):
        ENGINES[name](11).fit(X[:10])


@pytest.mark.parametrize("name", list(ENGINES))
def test_wrong_feature_count_raises(name, blobs):
    X, _ = blobs
    model = ENGINES[name](4).fit(X)
    with pytest.raises(DeepclustError, match="shape"):
        model.predict(X[:, :3])


@pytest.mark.parametrize("name", list(ENGINES))
def test_deterministic(name):
    X, _ = make_blobs(300, n_features=5, centers=6, cluster_std=2.0, random_state=3)
    a = ENGINES[name](6).fit(X).labels_
    b = ENGINES[name](6).fit(X).labels_
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bad, match", [
    (np.array([[1.0, np.nan], [0.0, 1.0], [2.0, 2.0]]), "NaN"),
    (np.zeros((0, 3)), "empty"),
    (np.arange(5.0), "1-D"),
    ([["a", "b"], ["c", "d"]], "numeric"),
])
def test_bad_input_raises(bad, match):
    for model in (KMeans(2, device="cpu"), MiniBatchKMeans(2, device="cpu"), GaussianMixture(2), KMedoids(2)):
        with pytest.raises(DeepclustError, match=match):
            model.fit(bad)


def test_predict_before_fit_raises():
    with pytest.raises(DeepclustError, match="not fitted"):
        KMeans(2).predict(np.zeros((3, 2)))


@pytest.mark.parametrize("params", [{"metric": "manhattan"}, {"init": "kmeans||"}, {"n_init": 0},
                                    {"max_iter": 0}, {"tol": -1.0}, {"init": np.zeros((3, 3))}])
def test_bad_kmeans_params_raise(params, blobs):
    X, _ = blobs
    with pytest.raises(DeepclustError):
        KMeans(2, device="cpu", **params).fit(X)


# ---------------------------------------------------------------------------------- KMeans
def test_kmeans_inertia_matches_scikit_learn():
    X, _ = make_blobs(3000, n_features=16, centers=12, cluster_std=3.0, random_state=1)
    X = X.astype(np.float32)
    ours = KMeans(12, n_init=3, device="cpu", random_state=0).fit(X)
    ref = SkKMeans(12, n_init=3, random_state=0, algorithm="lloyd").fit(X)
    assert ours.inertia_ <= 1.01 * ref.inertia_
    # inertia_ is the sum of squared distances to the final centres, and labels_ follow them
    d2 = ((X[:, None, :] - ours.cluster_centers_[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(ours.labels_, d2.argmin(1))
    assert ours.inertia_ == pytest.approx(d2.min(1).sum(), rel=1e-5)
    np.testing.assert_allclose(ours.transform(X[:10]), np.sqrt(d2[:10]), rtol=1e-4, atol=1e-3)
    proba = ours.predict_proba(X)
    np.testing.assert_array_equal(proba.argmax(1), ours.predict(X))
    assert set(ours.timings_) == {"to_device", "init", "iterations", "labels"}


def test_kmeans_given_init_and_max_iter():
    X, _ = make_blobs(500, n_features=3, centers=3, random_state=0)
    init = X[:3].copy()
    a = KMeans(3, init=init, max_iter=1, tol=0, device="cpu").fit(X)
    ref = SkKMeans(3, init=init, n_init=1, max_iter=1, tol=0, algorithm="lloyd").fit(X)
    np.testing.assert_allclose(a.cluster_centers_, ref.cluster_centers_, rtol=1e-4, atol=1e-4)
    assert a.n_iter_ == 1


def test_kmeans_cosine_on_directional_data():
    rng = np.random.default_rng(0)
    dirs = np.eye(3)[:, :]  # three orthogonal directions in 3-D
    y = rng.integers(0, 3, 900)
    radii = rng.uniform(0.1, 20.0, size=(900, 1))  # norms vary wildly: only the direction tells
    X = (radii * (dirs[y] + rng.normal(0, 0.15, (900, 3)))).astype(np.float32)
    model = KMeans(3, metric="cosine", device="cpu").fit(X)
    assert accuracy(y, model.labels_) > 0.99
    np.testing.assert_allclose(np.linalg.norm(model.cluster_centers_, axis=1), 1.0, rtol=1e-5)
    # the cosine distance of transform is 1 - cos
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    np.testing.assert_allclose(model.transform(X[:5]), 1 - Xn[:5] @ model.cluster_centers_.T, atol=1e-5)
    euclid = KMeans(3, device="cpu").fit(X)
    assert accuracy(y, euclid.labels_) < accuracy(y, model.labels_)


@pytest.mark.parametrize("init", ["far", "duplicate"])
def test_kmeans_reseeds_empty_clusters(init):
    X, _ = make_blobs(400, n_features=2, centers=[[0, 0], [10, 10], [-10, 10]], cluster_std=0.5, random_state=0)
    X = X.astype(np.float32)
    third = [1000.0, 1000.0] if init == "far" else X[0].tolist()
    centres = np.array([X[0], [10.0, 10.0], third], dtype=np.float32)
    model = KMeans(3, init=centres, device="cpu").fit(X)
    assert np.bincount(model.labels_, minlength=3).min() > 0
    assert np.isfinite(model.cluster_centers_).all()
    assert ari(model.predict(X), SkKMeans(3, n_init=3, random_state=0).fit(X).labels_) > 0.99


def test_kmeans_images_are_flattened():
    X, y = make_blobs(200, n_features=12, centers=2, random_state=0)
    imgs = X.reshape(200, 3, 2, 2).astype(np.float32)
    model = KMeans(2, device="cpu").fit(torch.from_numpy(imgs))
    assert model.cluster_centers_.shape == (2, 12)
    assert accuracy(y, model.predict(imgs)) == 1.0


def test_kmeans_subsampled_init_and_chunks_do_not_change_correctness(blobs):
    X, y = blobs
    model = KMeans(4, init_sample_size=50, batch_size=7, device="cpu").fit(X)
    assert accuracy(y, model.labels_) == 1.0


def test_kmeans_plusplus_picks_distinct_spread_seeds(blobs):
    X, y = blobs
    idx = kmeans_plusplus(torch.from_numpy(X), 4, torch.Generator().manual_seed(0)).numpy()
    assert sorted(y[idx].tolist()) == [0, 1, 2, 3]  # one seed in every blob


@pytest.mark.parametrize("k", [2, 3, 17, 256, 5000])
def test_fast_rowmin_returns_a_true_minimum(k):
    gen = torch.Generator().manual_seed(k)
    b = torch.randn(300, k, generator=gen).round(decimals=1)  # many ties
    b[::5] = 0.0
    vals0, _ = torch.min(b, 1)
    vals, idx = torch.empty(300), torch.empty(300, dtype=torch.int64)
    _RowMin(k, torch.device("cpu"), 300)(b.clone(), vals, idx)
    torch.testing.assert_close(vals, vals0)
    torch.testing.assert_close(b.gather(1, idx[:, None]).squeeze(1), vals0)


# ---------------------------------------------------------------------------------- MiniBatchKMeans
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_minibatch_on_memmap(tmp_path, dtype):
    X, y = make_blobs(5000, n_features=8, centers=5, cluster_std=0.5, random_state=0)
    path = tmp_path / "data.bin"
    mm = np.memmap(path, dtype=dtype, mode="w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    del mm
    data = np.memmap(path, dtype=dtype, mode="r", shape=X.shape)
    model = MiniBatchKMeans(5, batch_size=256, max_iter=5, device="cpu")
    assert isinstance(model._validate_input(data), np.ndarray)
    from deepclust.engines.kmeans import _is_memory_mapped

    assert _is_memory_mapped(model._validate_input(data))  # stays on disk, not loaded whole
    model.fit(data)
    assert ari(y, model.labels_) > 0.99
    assert model.n_iter_ <= 5
    assert model.inertia_ <= 1.05 * SkKMeans(5, n_init=1, random_state=0).fit(X).inertia_


def test_minibatch_partial_fit_streams_and_resumes(tmp_path):
    X, y = make_blobs(3000, n_features=6, centers=4, cluster_std=0.5, random_state=1)
    model = MiniBatchKMeans(4, batch_size=100, device="cpu")
    for start in range(0, 3000, 500):
        model.partial_fit(X[start:start + 500])
    assert model.labels_.shape == (500,)  # labels of the last chunk
    assert ari(y, model.predict(X)) > 0.99
    assert model.counts_.sum() == pytest.approx(3000)
    loaded = load_model(model.save(tmp_path / "mb"))
    loaded.partial_fit(X[:500])
    assert loaded.counts_.sum() == pytest.approx(3500)
    assert ari(y, loaded.predict(X)) > 0.99


def test_minibatch_partial_fit_needs_k_samples_first():
    with pytest.raises(DeepclustError):
        MiniBatchKMeans(5).partial_fit(np.zeros((3, 2)))


# ---------------------------------------------------------------------------------- classical
def test_hdbscan_finds_k_and_noise():
    rng = np.random.default_rng(0)
    X, y = make_blobs(300, n_features=2, centers=3, cluster_std=0.4, random_state=0)
    X = np.concatenate([X, rng.uniform(-30, 30, (15, 2))])
    model = HDBSCAN(n_clusters=1000, min_cluster_size=15).fit(X)  # n_clusters is ignored
    assert model.n_clusters_ == 3
    assert (model.labels_ == -1).any()
    assert ari(y, model.labels_[:300]) > 0.95
    np.testing.assert_array_equal(model.predict(X), model.labels_)
    noise = model.labels_ == -1
    np.testing.assert_allclose(model.predict_proba(X[noise]), 1 / 3)


def test_kmedoids_precomputed_and_medoids(blobs):
    from sklearn.metrics import pairwise_distances

    X, y = blobs
    D = pairwise_distances(X)
    model = KMedoids(4, metric="precomputed").fit(D)
    assert accuracy(y, model.labels_) == 1.0
    assert model.cluster_centers_ is None
    np.testing.assert_array_equal(model.predict(D[:30]), model.labels_[:30])
    eucl = KMedoids(4).fit(X)
    np.testing.assert_array_equal(eucl.cluster_centers_, X[eucl.medoid_indices_])
    with pytest.raises(DeepclustError, match="square"):
        KMedoids(2, metric="precomputed").fit(X)


def test_agglomerative_subsample_assigns_everyone(blobs):
    X, y = blobs
    model = AgglomerativeClustering(4, max_samples=100).fit(X)
    assert model.n_fit_samples_ == 100
    assert accuracy(y, model.labels_) == 1.0


def test_catalogue_names_resolve():
    for name in ("kmeans", "minibatch-kmeans", "gmm", "hdbscan", "agglomerative", "kmedoids"):
        assert name in METHODS
        model = make_method(name, n_clusters=3)
        assert model.get_params()["n_clusters"] == 3


def test_pic_follows_manifolds_where_kmeans_cannot():
    from sklearn.datasets import make_moons

    X, y = make_moons(400, noise=0.05, random_state=0)
    assert accuracy(y, PathIntegralClustering(2, n_neighbors=10).fit(X).labels_) > 0.98
    assert accuracy(y, KMeans(2, device="cpu").fit(X).labels_) < 0.9


def test_pic_path_integral_matches_the_matrix_inverse(monkeypatch):
    from deepclust.engines import pic

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    targets, weights = pic.transition_graph(X, n_neighbors=5)
    dense = np.zeros((60, 60))
    dense[np.arange(60)[:, None], targets] = weights
    np.testing.assert_allclose(dense.sum(1), 1.0)
    assert (np.count_nonzero(dense, axis=1) == 6).all()  # 5 neighbours + self-loop
    d2 = ((X[:, None] - X[None]) ** 2).sum(-1) + np.diag([np.inf] * 60)
    np.testing.assert_array_equal(targets[:, 1:], np.argsort(d2, 1)[:, :5])
    members, z = np.arange(10, 40), 0.3
    expected = []
    inv = np.linalg.inv(np.eye(30) - z * dense[np.ix_(members, members)])
    for part in (slice(0, 12), slice(12, 30)):
        expected.append(inv[part, part].sum() / (part.stop - part.start) ** 2)
    np.testing.assert_allclose(pic._path_integrals(targets, weights, members, [12, 18], z), expected, rtol=1e-12)
    monkeypatch.setattr(pic, "_DENSE_MAX", 5)  # the Neumann series gives the same numbers
    np.testing.assert_allclose(pic._path_integrals(targets, weights, members, [12, 18], z), expected, rtol=1e-10)


def test_pic_min_cluster_size_keeps_an_isolated_pair_from_taking_a_cluster():
    X, y = make_blobs(300, centers=[[0, 0], [4, 0], [2, 3.5]], cluster_std=1.0, random_state=0)
    X = np.vstack([X, [[30, 30], [30.2, 30]]])  # two isolated points, far from everything
    plain = PathIntegralClustering(3, n_neighbors=10).fit(X)
    assert plain.labels_[-1] == plain.labels_[-2] and (plain.labels_ == plain.labels_[-1]).sum() == 2
    assert plain.n_outliers_ == 0
    robust = PathIntegralClustering(3, n_neighbors=10, min_cluster_size=10).fit(X)
    assert robust.n_outliers_ == 2 and np.bincount(robust.labels_).min() >= 10
    assert accuracy(y, robust.labels_[:300]) > 0.85 > accuracy(y, plain.labels_[:300])


def test_pic_bad_parameters_raise(blobs):
    X, _ = blobs
    for params in ({"n_neighbors": 0}, {"n_neighbors": 2.5}, {"z": 1.5}, {"a": 0}, {"min_cluster_size": 0},
                   {"min_cluster_size": 151}):
        with pytest.raises(DeepclustError):
            PathIntegralClustering(4, **params).fit(X)


def test_pic_on_fewer_points_than_neighbours_uses_all_others(blobs):
    X = blobs[0][:15]  # n_neighbors=20 by default: every other point is a neighbour
    np.testing.assert_array_equal(PathIntegralClustering(2).fit(X).labels_,
                                  PathIntegralClustering(2, n_neighbors=14).fit(X).labels_)
    assert PathIntegralClustering(1).fit(X[:1]).labels_.tolist() == [0]
