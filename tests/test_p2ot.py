"""P²OT / SP²OT: the partial transport target (mass, relaxed sizes, confident samples first), the
k-NN regulariser, imbalanced blobs against SeLa, save/load, the CLI, bad settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

from deepclust.base import load_model
from deepclust.cli import main
from deepclust.engines.neighbors import cosine_knn
from deepclust.methods import make_method
from deepclust.metrics import accuracy
from deepclust.targets import knn_graph, p2ot_target, partial_transport_plan, sigmoid_rampup, sp2ot_target

SIZES = [1000, 200, 40]
FAST = dict(epochs=20, n_label_updates=20)


@pytest.fixture(scope="module")
def imbalanced() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_blobs(SIZES, n_features=16, cluster_std=1.0, random_state=0)
    return X.astype(np.float32), y


def _noisy_logits(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.cat([torch.full((s,), i) for i, s in enumerate(SIZES)])
    return torch.nn.functional.one_hot(y, 3).float() * 2 + torch.randn(len(y), 3, generator=g) * 0.8, y


@pytest.mark.parametrize("rho", [0.1, 0.5, 1.0])
def test_partial_plan_transports_rho_and_rows_stay_below_one(rho) -> None:
    logits, _ = _noisy_logits()
    q = p2ot_target(logits, rho)
    n = len(logits)
    assert (q >= 0).all() and (q.sum(1) <= 1 + 1e-5).all()
    assert float(q.sum()) / n == pytest.approx(rho, rel=1e-4)


def test_relaxed_sizes_follow_the_predictions_where_equal_sizes_would_not() -> None:
    logits, y = _noisy_logits()
    sizes = torch.bincount(p2ot_target(logits, 1.0).argmax(1), minlength=3)
    assert int(sizes[0]) > 600 and int(sizes[2]) < 300  # a uniform Sinkhorn gives 413 each
    hard_kl = torch.bincount(p2ot_target(logits, 1.0, kl_weight=1e4).argmax(1), minlength=3)
    assert (hard_kl - len(y) / 3).abs().max() < 30  # a very stiff KL brings back equal sizes


def test_small_rho_keeps_the_confident_samples() -> None:
    logits, y = _noisy_logits()
    q = p2ot_target(logits, 0.1)
    right = q.argmax(1) == y
    assert float(q.sum(1)[right].mean()) > 2 * float(q.sum(1)[~right].mean())


def test_plan_survives_a_cluster_nobody_likes() -> None:
    logits = torch.zeros(200, 3)
    logits[:, 0] = -200.0  # exp(-cost/eps) of column 0 underflows float64
    q = p2ot_target(logits, 1.0)
    assert torch.isfinite(q).all()
    assert float(q.sum()) == pytest.approx(200, rel=1e-4)


def test_partial_plan_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        partial_transport_plan(torch.zeros(5), 0.5)
    with pytest.raises(ValueError):
        partial_transport_plan(torch.zeros(5, 2), 0.0)


def test_sigmoid_ramp_ends() -> None:
    assert sigmoid_rampup(0) == pytest.approx(np.exp(-5))
    assert sigmoid_rampup(1) == 1.0 and sigmoid_rampup(2) == 1.0


def test_semantic_regulariser_makes_neighbours_agree(imbalanced) -> None:
    X, y = imbalanced
    logits, _ = _noisy_logits()
    graph = knn_graph(cosine_knn(torch.from_numpy(X), 10))
    dense = graph.to_dense()
    torch.testing.assert_close(dense, dense.T)
    plain = p2ot_target(logits, 1.0).argmax(1)
    regular = sp2ot_target(logits, 1.0, graph, weight=1.0).argmax(1)
    nbrs = cosine_knn(torch.from_numpy(X), 10)

    def agreement(labels: torch.Tensor) -> float:
        return float((labels[nbrs] == labels[:, None]).float().mean())

    assert agreement(regular) > agreement(plain) + 0.05
    assert accuracy(y, regular.numpy()) > accuracy(y, plain.numpy())


def test_p2ot_recovers_imbalanced_sizes_where_sela_splits_the_big_one(imbalanced, tmp_path: Path) -> None:
    X, y = imbalanced
    sela = make_method("sela", n_clusters=3, random_state=0, device="cpu", epochs=20, n_label_updates=5).fit(X)
    sela_sizes = np.sort(np.bincount(sela.labels_, minlength=3))
    assert sela_sizes[-1] < 700  # the 1000 are split to fill the small clusters
    model = make_method("p2ot", n_clusters=3, random_state=0, device="cpu", **FAST).fit(X)
    sizes = np.sort(np.bincount(model.labels_, minlength=3))
    assert np.abs(sizes - np.sort(SIZES)).max() <= 30
    assert accuracy(y, model.labels_) > 0.97 > accuracy(y, sela.labels_) + 0.2
    assert model.sample_weights_.shape == (len(X),)
    pred, proba = model.predict(X), model.predict_proba(X)
    again = load_model(model.save(tmp_path / "p2ot"))
    assert type(again) is type(model)
    np.testing.assert_array_equal(again.predict(X), pred)
    np.testing.assert_allclose(again.predict_proba(X), proba, atol=1e-6)


def test_sp2ot_by_name_sets_the_regulariser(imbalanced) -> None:
    X, y = imbalanced
    model = make_method("sp2ot", n_clusters=3, random_state=0, device="cpu", epochs=6, n_label_updates=6,
                        mm_iters=3)
    assert model.semantic_weight == 0.5
    model.fit(X)
    assert accuracy(y, model.labels_) > 0.9


def test_cli_cluster_p2ot(imbalanced, tmp_path: Path, capsys) -> None:
    X, y = imbalanced
    np.savez(tmp_path / "imb.npz", X=X, y=y)
    code = main(["--quiet", "cluster", str(tmp_path / "imb.npz"), "--method", "p2ot", "--device", "cpu",
                 "--param", "epochs=10", "--param", "n_label_updates=10", "--out", str(tmp_path / "out")])
    assert code == 0
    assert "ACC" in capsys.readouterr().out
    assert (tmp_path / "out" / "model" / "model.safetensors").is_file()
    code = main(["--quiet", "cluster", str(tmp_path / "imb.npz"), "--method", "p2ot", "--device", "cpu",
                 "--param", "rho_start=2", "--out", str(tmp_path / "bad")])
    assert code == 2
    assert "rho_start" in capsys.readouterr().err


def test_kmeans_prior_and_start_keep_a_long_tail_the_uniform_prior_splits() -> None:
    """The default start (head and prior from k-means) against the paper's (random head, uniform prior)
    on blobs of 1500/300/60/12: the uniform prior splits the big blob to fill the small clusters."""
    X, y = make_blobs([1500, 300, 60, 12], n_features=16, cluster_std=2.5, random_state=0)
    X = X.astype(np.float32)
    paper = make_method("p2ot", n_clusters=4, random_state=0, device="cpu", prior=None, init="random", **FAST).fit(X)
    model = make_method("p2ot", n_clusters=4, random_state=0, device="cpu", **FAST).fit(X)
    assert model.prior == "kmeans" and model.init == "kmeans"
    assert accuracy(y, model.labels_) > 0.95 > 0.85 > accuracy(y, paper.labels_)
    assert paper.prior_ is None and model.prior_.shape == (4,) and abs(model.prior_.sum() - 1) < 1e-9


def test_kmeans_prior_reads_the_input_as_given() -> None:
    """Blobs on one ray differ only in norm: the estimate comes from X as given, not from the
    L2-normalised rows the head reads (where the three blobs are one)."""
    rng = np.random.default_rng(0)
    sizes = [600, 150, 30]
    X = np.concatenate([c * np.ones(8) + rng.normal(0, 0.3, (s, 8)) for c, s in zip((1, 5, 10), sizes)])
    model = make_method("sela", n_clusters=3, random_state=0, device="cpu", prior="kmeans", epochs=2,
                        n_label_updates=1).fit(X.astype(np.float32))
    np.testing.assert_allclose(np.sort(model.prior_), (np.sort(sizes) + 1) / (sum(sizes) + 3))
    with pytest.raises(Exception, match="prior must be 'kmeans'"):
        make_method("sela", n_clusters=3, device="cpu", prior="means").fit(X.astype(np.float32))
