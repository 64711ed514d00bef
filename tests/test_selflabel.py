"""The self-labelling family (DeepCluster/ClusterFit, SeLa, SCAN) and their parts: Sinkhorn marginals,
SCAN losses by hand, neighbours, empty clusters, balanced sampling, blobs, save/load, bad input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

from deepclust.base import load_model
from deepclust.cli import main
from deepclust.engines.neighbors import cosine_knn
from deepclust.errors import DeepclustError
from deepclust.heads import MultiHead
from deepclust.losses import confident_self_label_loss, scan_loss
from deepclust.methods import make_method
from deepclust.metrics import accuracy
from deepclust.targets import kmeans_target, sinkhorn_target, split_empty_clusters
from deepclust.training import balanced_indices

# fast settings: paper defaults except the number of epochs (and SCAN's lr, which at 1e-4 needs
# thousands of steps to move a head)
FAST = {
    "sela": dict(epochs=20, n_label_updates=5),
    "scan": dict(epochs=30, selflabel_epochs=10, n_neighbors=10, lr=1e-2, batch_size=64, init="kmeans"),
    "deepcluster": dict(epochs=5, hidden_dims=(64, 64)),
    "clusterfit": dict(epochs=5, hidden_dims=(64, 64)),
}


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_blobs(400, n_features=16, centers=4, cluster_std=1.0, random_state=0)
    return X.astype(np.float32), y


# ------------------------------------------------------------------------------ Sinkhorn
@pytest.mark.parametrize("prior", [None, [0.1, 0.2, 0.3, 0.4, 0.0]])
@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_sinkhorn_has_the_requested_marginals(prior, scale) -> None:
    g = torch.Generator().manual_seed(0)
    n, k = 500, 5
    logits = torch.randn(n, k, generator=g) * scale
    if prior is not None:
        prior = [p + 0.05 for p in prior]  # strictly positive, not normalised: the function normalises
    q = sinkhorn_target(logits, prior, tol=1e-4)
    target = torch.full((k,), 1 / k) if prior is None else torch.tensor(prior) / sum(prior)
    torch.testing.assert_close(q.sum(1), torch.ones(n), atol=1e-5, rtol=0)
    torch.testing.assert_close(q.sum(0) / n, target, atol=0, rtol=2e-4)
    assert (q >= 0).all()


def test_sinkhorn_log_space_when_a_column_underflows() -> None:
    logits = torch.zeros(200, 3)
    logits[:, 0] = -60.0  # P^25 of column 0 underflows float64 → the log-space branch
    logits[:100, 1] = 1.0
    q = sinkhorn_target(logits)
    torch.testing.assert_close(q.sum(0) / 200, torch.full((3,), 1 / 3, dtype=q.dtype), atol=0, rtol=1e-3)
    torch.testing.assert_close(q.sum(1), torch.ones(200), atol=1e-5, rtol=0)


def test_sinkhorn_keeps_preferences_and_equalises_sizes() -> None:
    # every sample prefers cluster 0 a little, half of them prefer cluster 1 much more: equal sizes
    # force the others into cluster 0... and cluster 2 gets who likes it least badly
    logits = torch.tensor([[2.0, 0.0, 1.0]] * 30 + [[0.0, 3.0, 1.5]] * 30 + [[1.0, 0.0, 2.5]] * 30)
    labels = sinkhorn_target(logits).argmax(1)
    assert torch.bincount(labels, minlength=3).tolist() == [30, 30, 30]
    assert (labels == torch.tensor([0] * 30 + [1] * 30 + [2] * 30)).all()


def test_sinkhorn_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        sinkhorn_target(torch.zeros(5))


# ------------------------------------------------------------------------------ SCAN losses
def test_scan_loss_matches_hand_computation() -> None:
    ln3 = math.log(3)
    anchors = torch.tensor([[0.0, 0.0], [ln3, 0.0]])  # p = (.5, .5), (.75, .25)
    neighbours = torch.tensor([[ln3, 0.0], [ln3, 0.0]])  # p = (.75, .25) twice
    # <p_i, p_j> = .5 and .625; mean anchor p = (.625, .375)
    consistency = -(math.log(0.5) + math.log(0.625)) / 2
    entropy = -(0.625 * math.log(0.625) + 0.375 * math.log(0.375))
    out = scan_loss(anchors, neighbours, entropy_weight=5.0)
    assert float(out["consistency"]) == pytest.approx(consistency, abs=1e-6)
    assert float(out["entropy"]) == pytest.approx(entropy, abs=1e-6)
    assert float(out["loss"]) == pytest.approx(consistency - 5 * entropy, abs=1e-5)


def test_scan_loss_is_minimal_for_consistent_confident_balanced_neighbours() -> None:
    confident = torch.tensor([[20.0, 0.0], [0.0, 20.0]])
    best = float(scan_loss(confident, confident)["loss"])
    assert best == pytest.approx(-5 * math.log(2), abs=1e-4)  # consistency 0, entropy log 2
    others = [scan_loss(confident, confident.flip(0)),             # neighbours disagree
              scan_loss(torch.zeros(2, 2), torch.zeros(2, 2)),     # unsure
              scan_loss(confident[[0, 0]], confident[[0, 0]])]     # all in one cluster
    assert all(float(o["loss"]) > best + 0.5 for o in others)
    # per-head losses for stacked heads
    assert scan_loss(torch.stack([confident, confident]), torch.stack([confident, confident]))["loss"].shape == (2,)


def test_confident_self_label_loss_masks_and_balances() -> None:
    teacher = torch.tensor([[10.0, 0.0], [10.0, 0.0], [10.0, 0.0], [0.0, 10.0], [0.1, 0.0]])  # last: unsure
    student = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 5.0]])
    loss, n_conf = confident_self_label_loss(student, teacher, 0.99, class_balance=True)
    assert int(n_conf) == 4
    ce_right, ce_wrong = -math.log(math.e / (math.e + 1)), -math.log(1 / (math.e + 1))
    w0, w1 = 4 / 3, 4 / 1  # inverse frequency among the confident
    assert float(loss) == pytest.approx((3 * w0 * ce_right + w1 * ce_wrong) / (3 * w0 + w1), abs=1e-6)
    loss_unbalanced, _ = confident_self_label_loss(student, teacher, 0.99, class_balance=False)
    assert float(loss_unbalanced) == pytest.approx((3 * ce_right + ce_wrong) / 4, abs=1e-6)
    zero, none = confident_self_label_loss(student, torch.zeros(5, 2), 0.99)
    assert int(none) == 0 and float(zero) == 0.0


def test_multihead_heads_are_independent_linear_layers() -> None:
    mh = MultiHead(6, 3, n_heads=4)
    z = torch.randn(5, 6)
    out = mh(z)
    assert out.shape == (4, 5, 3)
    torch.testing.assert_close(mh.head(2)(z), out[2])
    # one product for all heads, summed losses: each head's gradient is the one it gets trained alone
    neighbours = torch.randn(5, 6)
    scan_loss(mh(z), mh(neighbours))["loss"].sum().backward()
    for h in range(4):
        alone = mh.head(h)
        scan_loss(alone(z), alone(neighbours))["loss"].backward()
        rows = slice(3 * h, 3 * h + 3)
        torch.testing.assert_close(mh.linear.weight.grad[rows], alone.linear.weight.grad)
        torch.testing.assert_close(mh.linear.bias.grad[rows], alone.linear.bias.grad)


def test_seen_predictions_put_each_batch_at_its_samples() -> None:
    """The stopping rule's labels read from the steps of one epoch (a permutation cut into batches)
    are those of a pass over the samples in order."""
    from deepclust.methods._selflabel import SeenPredictions, Settled

    logits = torch.randn(2, 50, 4)  # (heads, n, k)
    seen = SeenPredictions(torch.full((2, 50, 4), 0.25))
    rule = Settled(seen, tol=0.001, threshold=0.6)
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(0))
    for idx in perm.split(16):
        seen.record(idx, logits[:, idx])
    top, labels = torch.softmax(logits, -1).max(-1)
    torch.testing.assert_close(seen()[0], top)
    assert torch.equal(seen()[1], labels)
    record: dict = {}
    rule(0, record)
    assert record["changed"] == pytest.approx(float((labels != 0).float().mean(-1).max()))
    assert record["confident_share"] == pytest.approx(float((top > 0.6).float().mean(-1).max()))


# ------------------------------------------------------------------------------ neighbours, k-means, sampling
@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_cosine_knn_matches_brute_force(backend) -> None:
    if backend == "faiss":
        pytest.importorskip("faiss")
    X = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    sim = Xn @ Xn.T
    np.fill_diagonal(sim, -np.inf)
    expected = np.argsort(-sim, axis=1)[:, :5]
    got = cosine_knn(X, 5, backend=backend).numpy()
    assert (got == expected).mean() > 0.99  # ties in float32 may swap a pair
    assert not (got == np.arange(300)[:, None]).any()
    with pytest.raises(DeepclustError, match="neighbours"):
        cosine_knn(X[:5], 5)


@pytest.mark.parametrize("bf16", [True, False])
def test_cosine_knn_bfloat16_products_are_reranked_to_float32(bf16, monkeypatch) -> None:
    """On a CPU with bfloat16 instructions the blocks are bfloat16 products; the re-scoring in float32
    gives float32's neighbours, in order (most similar first), on either kind of CPU."""
    import deepclust.engines.neighbors as neighbors
    monkeypatch.setattr(neighbors, "native_cpu_bf16", lambda: bf16)
    X = np.random.default_rng(1).normal(size=(500, 48)).astype(np.float64)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    sim = Xn @ Xn.T
    np.fill_diagonal(sim, -np.inf)
    expected = np.argsort(-sim, axis=1)[:, :8]
    got = neighbors.cosine_knn(X.astype(np.float32), 8, backend="torch").numpy()
    assert (got == expected).mean() > 0.995
    bf16_alone = np.argsort(-(torch.from_numpy(Xn).bfloat16() @ torch.from_numpy(Xn).bfloat16().T).float()
                            .fill_diagonal_(-float("inf")).numpy(), axis=1, kind="stable")[:, :8]
    assert (bf16_alone == expected).mean() < 0.95  # what the re-scoring repairs


def test_euclidean_knn_is_float64_exact_with_ties_by_index(monkeypatch) -> None:
    """UMAP's exact neighbour lists: float32 candidates re-scored in float64, and the rows whose candidates
    float32's rounding could have spoiled searched again, give float64's distances and lists, equal
    distances ordered by index: here on two tight groups far apart (float32 cannot tell the points of a
    group apart) with duplicated rows (ties)."""
    from scipy.spatial.distance import cdist

    import deepclust.engines.neighbors as neighbors
    monkeypatch.setattr(neighbors, "EUCLIDEAN_RERANK_MIN_N", 100)
    X = np.random.default_rng(0).normal(size=(600, 30)) * 1e-2
    X[:300] += 1e2
    X[300:] -= 1e2
    X[100:130] = X[:30]  # 30 exact duplicates: distance-0 ties, and ties further down every list
    D = cdist(X, X, "sqeuclidean")
    np.fill_diagonal(D, np.inf)
    expected = np.argsort(D, axis=1, kind="stable")[:, :7]
    dist, idx = neighbors.euclidean_knn(X, 7)
    assert (idx == expected).all()
    np.testing.assert_allclose(dist, np.take_along_axis(D, expected, 1), rtol=1e-9)
    low = torch.from_numpy(X - X.mean(0)).float()  # float32 candidates alone: wrong lists
    sq = (low ** 2).sum(1)
    alone = (sq[:, None] - 2 * (low @ low.T) + sq[None]).fill_diagonal_(float("inf"))
    assert (alone.topk(7, dim=1, largest=False).indices.numpy() == expected).mean() < 0.5
    monkeypatch.setattr(neighbors, "EUCLIDEAN_RERANK_MIN_N", 10_000)  # small data: float64 products throughout
    X = np.random.default_rng(1).normal(size=(600, 30))
    D = cdist(X, X, "sqeuclidean")
    np.fill_diagonal(D, np.inf)
    dist, idx = neighbors.euclidean_knn(X, 7)
    np.testing.assert_allclose(dist, np.sort(D, axis=1)[:, :7], rtol=1e-9)
    np.testing.assert_allclose(np.take_along_axis(D, idx, 1), dist, rtol=1e-9)


def test_split_empty_clusters_fills_every_cluster() -> None:
    g = torch.Generator().manual_seed(0)
    feats = torch.cat([torch.randn(50, 2) * 0.1 + 3, torch.randn(10, 2) * 0.1 - 3])
    labels = torch.tensor([0] * 50 + [1] * 10)
    centers = torch.tensor([[3.0, 3.0], [-3.0, -3.0], [9.0, 9.0], [9.0, -9.0]])  # 2 and 3 are empty
    new_labels, new_centers = split_empty_clusters(feats, labels, centers, generator=g)
    assert (torch.bincount(new_labels, minlength=4) > 0).all()
    assert (new_labels[50:] == 1).all() or (torch.bincount(new_labels[50:], minlength=4) > 0).sum() >= 1
    # split centres sit next to the centre they came from (perturbation 1/1024)
    assert torch.cdist(new_centers[2:], centers[:2]).min(1).values.max() < 0.02
    # identical points cannot be split by distance: they are halved
    same = torch.ones(8, 2)
    lab, _ = split_empty_clusters(same, torch.zeros(8, dtype=torch.long), torch.ones(3, 2), generator=g)
    assert (torch.bincount(lab, minlength=3) > 0).all()


def test_kmeans_target_never_returns_empty_clusters() -> None:
    feats = torch.tensor([[0.0, 0.0]] * 10 + [[5.0, 5.0]] * 10)  # 2 distinct points, 4 clusters asked
    labels, centers = kmeans_target(feats, 4, seed=0)
    assert torch.bincount(labels, minlength=4).min() > 0 and centers.shape == (4, 2)


def test_balanced_indices_are_uniform_over_classes() -> None:
    labels = torch.tensor([0] * 900 + [1] * 90 + [2] * 10)
    idx = balanced_indices(labels, 30000, torch.Generator().manual_seed(0))
    freq = torch.bincount(labels[idx], minlength=3).float() / 30000
    torch.testing.assert_close(freq, torch.full((3,), 1 / 3), atol=0.02, rtol=0)
    assert int(torch.unique(idx[labels[idx] == 2]).numel()) == 10  # every member of the small class is drawn


# ------------------------------------------------------------------------------ the methods
@pytest.mark.parametrize("name", ["sela", "scan", "deepcluster", "clusterfit"])
def test_method_separates_blobs_and_reloads_identically(name, blobs, tmp_path: Path) -> None:
    X, y = blobs
    model = make_method(name, n_clusters=4, random_state=0, device="cpu", **FAST[name]).fit(X)
    assert accuracy(y, model.labels_) > 0.95
    pred = model.predict(X)
    assert accuracy(y, pred) > 0.95
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-5)
    assert (proba.argmax(1) == pred).all()
    again = load_model(model.save(tmp_path / name))
    assert type(again) is type(model)
    np.testing.assert_array_equal(again.predict(X), pred)
    np.testing.assert_allclose(again.predict_proba(X), proba, atol=1e-6)
    np.testing.assert_allclose(again.transform(X[:7]), model.transform(X[:7]), atol=1e-6)


def test_sela_follows_a_size_prior(blobs) -> None:
    X, _ = blobs
    prior = [0.4, 0.3, 0.2, 0.1]
    model = make_method("sela", n_clusters=4, prior=prior, **FAST["sela"]).fit(X)
    sizes = np.sort(np.bincount(model.pseudo_labels_, minlength=4))[::-1] / len(X)
    np.testing.assert_allclose(sizes, prior, atol=0.02)


def test_scan_keeps_the_lowest_loss_head_and_self_labels(blobs) -> None:
    X, y = blobs
    model = make_method("scan", n_clusters=4, n_heads=3, **FAST["scan"]).fit(X)
    assert len(model.head_losses_) == 3 and model.best_head_ == int(np.argmin(model.head_losses_))
    assert model.history_["selflabel"][-1]["confident"] > 0.5  # self-labelling had confident samples


def test_scan_schedule_scales_batches_and_learning_rate_on_embeddings(blobs) -> None:
    """On embeddings the default batches are EMBEDDING_BATCH_SCALE × the paper's at as many times its
    lr (linear scaling); a batch the user gives, and images, run at the lr given."""
    from deepclust.methods.scan import EMBEDDING_BATCH_SCALE, PAPER_BATCH, PAPER_SELFLABEL_BATCH

    X, _ = blobs
    model = make_method("scan", n_clusters=4, n_heads=1, epochs=1, selflabel_epochs=1, n_neighbors=5).fit(X)
    c = EMBEDDING_BATCH_SCALE
    assert model.schedule_ == {"batch_size": c * PAPER_BATCH, "lr": c * 1e-4,
                               "selflabel_batch_size": c * PAPER_SELFLABEL_BATCH, "selflabel_lr": c * 1e-4}
    given = make_method("scan", n_clusters=4, batch_size=64, lr=1e-3)
    assert given._schedule(images=False) == {"batch_size": 64, "lr": 1e-3,
                                             "selflabel_batch_size": c * PAPER_SELFLABEL_BATCH,
                                             "selflabel_lr": c * 1e-3}
    assert given._schedule(images=True)["selflabel_batch_size"] == PAPER_SELFLABEL_BATCH
    assert given._schedule(images=True)["selflabel_lr"] == 1e-3


def test_cpu_bfloat16_is_opt_in_and_keeps_scan_clusters(blobs, monkeypatch, one_thread) -> None:
    """bfloat16 head products on the CPU only where a method asks for them (SCAN's step on embeddings)
    and the CPU has them (forced here); SCAN's clustering of blobs is the float32 one."""
    import deepclust.training as training

    cpu = torch.device("cpu")
    monkeypatch.setattr(training, "native_cpu_bf16", lambda: False)
    with training.autocast(cpu, True, cpu=True):
        assert not torch.is_autocast_enabled("cpu")
    fp32 = make_method("scan", n_clusters=4, n_heads=2, **FAST["scan"]).fit(blobs[0]).labels_
    monkeypatch.setattr(training, "native_cpu_bf16", lambda: True)
    with training.autocast(cpu, True):  # other methods: unchanged
        assert not torch.is_autocast_enabled("cpu")
    with training.autocast(cpu, True, cpu=True):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    bf16 = make_method("scan", n_clusters=4, n_heads=2, **FAST["scan"]).fit(blobs[0]).labels_
    assert accuracy(fp32, bf16) > 0.99


def test_scan_steps_stop_once_labels_and_confidence_settle(blobs) -> None:
    """The label-free stopping rule (tol): on easy blobs both steps end early, every head settled;
    tol=0 runs the whole schedule."""
    X, _ = blobs
    settings = dict(FAST["scan"], selflabel_epochs=20)
    model = make_method("scan", n_clusters=4, n_heads=3, **settings).fit(X)
    scan, selflabel = model.history_["scan"], model.history_["selflabel"]
    assert len(scan) < settings["epochs"] and len(selflabel) < settings["selflabel_epochs"]
    for last in (scan[-1], selflabel[-1]):
        assert last["changed"] < model.tol and last["confident_share"] > 0.9
    full = make_method("scan", n_clusters=4, n_heads=3, tol=0, **settings).fit(X)
    assert len(full.history_["scan"]) == settings["epochs"]
    assert len(full.history_["selflabel"]) == settings["selflabel_epochs"]


# ------------------------------------------------------------------------------ SCAN on images
def test_strong_view_is_batched_seeded_and_cuts_a_hole() -> None:
    from deepclust.augment import strong_view

    x = torch.rand(64, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    a = strong_view(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, strong_view(x, torch.Generator().manual_seed(0)))
    assert not torch.equal(a, strong_view(x, torch.Generator().manual_seed(1)))
    holes = strong_view(x, torch.Generator().manual_seed(0), n_ops=0, flip=False, crop_scale=(1.0, 1.0))
    grey = (holes == 0.5).flatten(1).sum(1)
    assert (grey >= 4 * 4).all() and (grey <= 8 * 8).all()  # one square of side 8, clipped at the border
    rgb = strong_view(torch.rand(8, 3, 12, 12), torch.Generator().manual_seed(0))
    assert rgb.shape == (8, 3, 12, 12)


@pytest.mark.parametrize("name, magnitude", [("brightness", 1.0), ("contrast", 1.0), ("color", 1.0),
                                             ("sharpness", 1.0), ("rotate", 0.0), ("shear_x", 0.0),
                                             ("translate_y", 0.0), ("solarize", 1.01)])
def test_strong_operations_at_their_neutral_magnitude_change_nothing(name, magnitude) -> None:
    from deepclust.augment import _apply_op

    x = torch.rand(4, 3, 10, 10, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(_apply_op(name, x, torch.full((4,), magnitude)), x, atol=1e-5, rtol=0)


def test_equalize_flattens_the_histogram_and_posterize_keeps_levels() -> None:
    from deepclust.augment import _apply_op

    x = torch.rand(2, 1, 20, 20, generator=torch.Generator().manual_seed(0)) ** 4  # skewed towards black
    eq = _apply_op("equalize", x, torch.zeros(2))
    assert abs(float(eq.mean()) - 0.5) < 0.01 and float(x.mean()) < 0.25
    digit = torch.zeros(1, 1, 8, 8)
    digit[..., 2:6, 3:5] = 0.8
    assert torch.equal(_apply_op("equalize", digit, torch.zeros(1)), (digit > 0).float())  # black stays black
    poster = _apply_op("posterize", x, torch.full((2,), 2.0))  # 2 bits: 4 grey levels
    assert len(torch.unique(poster)) <= 4


def test_scan_on_images_trains_pretext_backbone_and_heads(tmp_path: Path, one_thread) -> None:
    from test_depict import pattern_images

    X, y = pattern_images(60, 16)
    X = (X * 255).astype(np.uint8)  # raw 8-bit pixels, as in MNIST
    model = make_method("scan", n_clusters=3, n_heads=3, epochs=15, batch_size=32, selflabel_epochs=5,
                        selflabel_batch_size=64, threshold=0.6, n_neighbors=5, lr=1e-3,
                        pretext=dict(epochs=15, width=8, batch_size=64), init="kmeans", random_state=0).fit(X)
    assert accuracy(y, model.labels_) > 0.9
    assert set(model.timings_) == {"pretext", "knn", "init", "scan", "selflabel"}
    assert len(model.history_["pretext"]) == 15 and model.history_["selflabel"][-1]["confident"] > 0.5
    assert model.transform(X).shape == (180, 32)  # the backbone's features (4 × width)
    again = load_model(model.save(tmp_path / "scan-images"))
    np.testing.assert_array_equal(again.predict(X), model.predict(X))
    np.testing.assert_array_equal(model.predict(X), model.labels_)
    with pytest.raises(DeepclustError, match="pretext does not take"):
        make_method("scan", n_clusters=3, pretext={"epoch": 3}).fit(X)


def test_scan_warns_when_its_heads_did_not_learn(blobs) -> None:
    X, _ = blobs
    tiny = X * 1e-4  # unnormalised, tiny features: the heads start (and, at lr 1e-7, stay) uniform
    with pytest.warns(RuntimeWarning) as caught:
        make_method("scan", n_clusters=4, epochs=1, selflabel_epochs=1, lr=1e-7, n_neighbors=5,
                    normalize=False).fit(tiny)
    messages = " ".join(str(w.message) for w in caught)
    assert "almost uniformly" in messages and "clusters are those of the SCAN step alone" in messages


def test_deepcluster_survives_empty_clusters() -> None:
    # 3 distinct points, 5 clusters: k-means alone would leave clusters empty
    X = np.repeat(np.eye(3, 6, dtype=np.float32), 12, axis=0)
    model = make_method("deepcluster", n_clusters=5, epochs=2, hidden_dims=(16,)).fit(X)
    assert np.bincount(model.labels_, minlength=5).min() > 0


def test_deepcluster_on_images_with_a_conv_net(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    imgs = np.zeros((60, 12, 12), dtype=np.float32)
    imgs[:30, 4:8, :] = 1.0  # horizontal bars
    imgs[30:, :, 4:8] = 1.0  # vertical bars
    imgs += rng.normal(0, 0.1, imgs.shape).astype(np.float32)
    y = np.repeat([0, 1], 30)
    model = make_method("deepcluster", n_clusters=2, epochs=4, channels=(8, 16), feature_dim=32,
                        batch_size=16).fit(imgs)
    assert model.labels_.shape == (60,) and accuracy(y, model.labels_) > 0.9
    again = load_model(model.save(tmp_path / "dc"))
    np.testing.assert_array_equal(again.predict(imgs), model.predict(imgs))


@pytest.mark.parametrize("name", ["sela", "scan", "deepcluster"])
def test_bad_input_gives_clear_errors(name, blobs) -> None:
    X, _ = blobs
    with pytest.raises(DeepclustError, match="larger than the number of samples"):
        make_method(name, n_clusters=50).fit(X[:20])
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(DeepclustError, match="NaN"):
        make_method(name, n_clusters=4).fit(bad)
    with pytest.raises(DeepclustError, match="1-D"):
        make_method(name, n_clusters=4).fit(X[:, 0])
    with pytest.raises(DeepclustError, match="not fitted"):
        make_method(name, n_clusters=4).predict(X)
    model = make_method(name, n_clusters=4, **FAST[name]).fit(X)
    with pytest.raises(DeepclustError, match="shape"):
        model.predict(X[:, :5])
    with pytest.raises(DeepclustError, match="epochs"):
        make_method(name, n_clusters=4, epochs=0).fit(X)


def test_embedding_methods_refuse_images_with_a_hint() -> None:
    with pytest.raises(DeepclustError, match="embeddings"):
        make_method("sela", n_clusters=2).fit(np.zeros((10, 1, 4, 4), dtype=np.float32))


def test_bad_settings(blobs) -> None:
    X, _ = blobs
    with pytest.raises(DeepclustError, match="prior"):
        make_method("sela", n_clusters=4, prior=[1, 2]).fit(X)
    with pytest.raises(DeepclustError, match="n_neighbors"):
        make_method("scan", n_clusters=2, n_neighbors=30).fit(X[:30])
    with pytest.raises(DeepclustError, match="mode"):
        make_method("deepcluster", n_clusters=4, mode="bogus").fit(X)
    with pytest.raises(DeepclustError, match="has no parameter .bogus."):
        make_method("scan", n_clusters=4, bogus=1)


def test_cli_cluster_with_each_method(blobs, tmp_path: Path, capsys) -> None:
    X, y = blobs
    np.savez(tmp_path / "blobs.npz", X=X, y=y)
    for name in ("sela", "deepcluster"):
        params = [a for k, v in FAST[name].items() for a in ("--param", f"{k}={list(v) if isinstance(v, tuple) else v}")]
        code = main(["--quiet", "cluster", str(tmp_path / "blobs.npz"), "--method", name, "--device", "cpu",
                     "--out", str(tmp_path / name), *params])
        assert code == 0
        assert "ACC" in capsys.readouterr().out
        assert (tmp_path / name / "model" / "model.safetensors").is_file()


def test_sela_neighbour_views_break_the_random_fixed_point() -> None:
    """Without augmentation the random first split is a fixed point (a linear head fits it exactly);
    training on neighbour views makes the labels follow the data: on touching blobs SeLa then
    recovers them, and keeps revising labels that a frozen split would never change."""
    # high-dimensional, as embeddings are: a random linear split of 800 points is easy to fit
    X, y = make_blobs(800, n_features=64, centers=4, cluster_std=6.0, random_state=1)
    common = dict(n_clusters=4, epochs=60, n_label_updates=15, init="random", device="cpu", random_state=0)
    with_views = make_method("sela", augment="neighbors", **common).fit(X)
    without = make_method("sela", augment=None, **common).fit(X)
    assert accuracy(y, with_views.labels_) > 0.95
    assert accuracy(y, without.labels_) < 0.7  # stuck on the random first split
    assert without.history_["train"][-1]["labels_changed"] < 0.01
    assert "knn" in with_views.timings_
    with pytest.raises(DeepclustError, match="augment"):
        make_method("sela", n_clusters=4, augment="crop").fit(X)


def test_scan_head_criterion_is_the_mean_pair_loss_minus_the_entropy() -> None:
    """The head-selection criterion, computed in row blocks, equals the loss written out pair by pair."""
    from deepclust.methods.scan import _scan_total_loss

    gen = torch.Generator().manual_seed(0)
    p = torch.softmax(3 * torch.randn(50, 6, generator=gen), 1)
    nbrs = torch.randint(50, (50, 4), generator=gen)
    pairs = [-math.log(float(p[i] @ p[j])) for i in range(50) for j in nbrs[i].tolist()]
    mean = p.mean(0)
    expected = sum(pairs) / len(pairs) + float((mean * mean.log()).sum())
    assert float(_scan_total_loss(p, nbrs, block=7 * 4 * 6)) == pytest.approx(expected, rel=1e-6)  # 7 rows a block
