"""Self-labelling at large k (issue 20 part 3): the label-free collapse check, SCAN's running-mean
entropy, the k-means warm start, and SCAN / SeLa on 100 generated clusters."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

from deepclust.losses import entropy, scan_loss
from deepclust.methods import make_method
from deepclust.methods._selflabel import collapse
from deepclust.metrics import accuracy


def test_collapse_flags_empty_and_giant_clusters() -> None:
    balanced = np.repeat(np.arange(100), 50)
    assert collapse(balanced, 100) is None
    one_empty = balanced.copy()
    one_empty[one_empty == 7] = 8
    assert collapse(one_empty, 100).startswith("99 of 100 clusters are non-empty")
    giant = np.concatenate([np.zeros(400, dtype=int), np.arange(1, 100).repeat(46)])  # every cluster used
    assert collapse(giant, 100).endswith("the largest holds 400 of 4,954 samples (8.1 × n/k)")
    big = np.concatenate([np.zeros(200, dtype=int), np.arange(1, 100).repeat(48)])  # 4 × its share: uneven, fine
    assert collapse(big, 100) is None
    # what SCAN did on CLINC150: 28 non-empty clusters of 150, the largest with 6,229 of 22,500 texts
    clinc = np.concatenate([np.zeros(6229, dtype=int), np.arange(1, 28).repeat(602), np.arange(1, 18)])
    assert collapse(clinc, 150) == ("28 of 150 clusters are non-empty and the largest holds 6,229 of 22,500 "
                                    "samples (41.5 × n/k)")
    assert collapse(torch.as_tensor(balanced), 100) is None


def test_running_mean_entropy_has_the_batch_entropy_gradient_when_they_agree() -> None:
    """With the running mean equal to the batch mean, the surrogate's gradient is exactly the
    batch entropy's; its reported entropy is the running mean's."""
    g = torch.Generator().manual_seed(0)
    anchors, neighbours = torch.randn(3, 64, 20, generator=g), torch.randn(3, 64, 20, generator=g)
    a1, a2 = anchors.clone().requires_grad_(), anchors.clone().requires_grad_()
    batch = scan_loss(a1, neighbours, 5.0)
    running = scan_loss(a2, neighbours, 5.0, mean_assignment=torch.softmax(anchors, -1).mean(-2))
    batch["loss"].sum().backward()
    running["loss"].sum().backward()
    torch.testing.assert_close(a2.grad, a1.grad, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(running["entropy"], batch["entropy"])
    uniform = torch.full((3, 20), 1 / 20)
    assert torch.allclose(scan_loss(anchors, neighbours, mean_assignment=uniform)["entropy"], entropy(uniform))


@pytest.fixture(scope="module")
def many_blobs() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_blobs(100 * 30, n_features=32, centers=100, cluster_std=3.0, center_box=(-10, 10), random_state=0)
    return X.astype(np.float32), y


@pytest.mark.parametrize("init", ["kmeans", "auto"])
def test_scan_holds_at_k_100(many_blobs, one_thread, init) -> None:
    X, y = many_blobs
    kmeans = accuracy(y, make_method("kmeans", n_clusters=100, random_state=0).fit(X).labels_)
    model = make_method("scan", n_clusters=100, n_heads=2, epochs=10, selflabel_epochs=5, n_neighbors=10,
                        random_state=0, device="cpu", init=init).fit(X)
    assert np.bincount(model.labels_, minlength=100).min() > 0
    assert accuracy(y, model.labels_) >= kmeans - 0.02
    # "auto": batches of 1,024 hold over 5 samples per cluster at k = 100, so the paper's random start
    # comes first; in 10 epochs of 3 steps it empties clusters, and the k-means start takes over
    assert "init" in model.timings_
    assert model.start_ == "kmeans" and model.restarted_ is (init == "auto")


def test_scan_auto_start_follows_samples_per_cluster_in_a_batch() -> None:
    """The warm start is used exactly where the entropy term leaves the paper's batch mean."""
    for k, batch, warm in ((10, 1024, False), (204, 1024, False), (205, 1024, True), (26, 128, True), (25, 128, False)):
        model = make_method("scan", n_clusters=k, init="auto")
        assert model._warm_start(batch) is warm
        assert model._running_entropy(batch) is warm
    assert make_method("scan", n_clusters=10)._warm_start(1024)  # the default: k-means
    assert not make_method("scan", n_clusters=500, init="random")._warm_start(1024)


def test_sela_holds_at_k_100(many_blobs, one_thread) -> None:
    X, y = many_blobs
    model = make_method("sela", n_clusters=100, epochs=20, n_label_updates=5, random_state=0, device="cpu").fit(X)
    assert np.bincount(model.labels_, minlength=100).min() > 0
    assert accuracy(y, model.labels_) > 0.9


def test_self_labelling_warns_when_the_clustering_collapses() -> None:
    # 3 distinct points asked for 5 clusters: identical inputs get identical predictions
    X = np.repeat(np.eye(3, 8, dtype=np.float32), 20, axis=0)
    for name, params in (("scan", dict(epochs=2, selflabel_epochs=1, n_neighbors=5)), ("sela", dict(epochs=2, n_label_updates=1))):
        with pytest.warns(RuntimeWarning, match="collapsed clustering: 3 of 5 clusters are non-empty"):
            make_method(name, n_clusters=5, random_state=0, device="cpu", **params).fit(X)


def test_scan_auto_keeps_the_papers_start_where_it_holds(one_thread) -> None:
    X, y = make_blobs(600, n_features=16, centers=5, cluster_std=1.0, random_state=0)
    model = make_method("scan", n_clusters=5, n_heads=2, epochs=50, batch_size=128, lr=3e-3, selflabel_epochs=5,
                        n_neighbors=10, init="auto", random_state=0, device="cpu").fit(X.astype(np.float32))
    assert model.start_ == "random" and not model.restarted_ and "init" not in model.timings_
    assert accuracy(y, model.labels_) > 0.95
