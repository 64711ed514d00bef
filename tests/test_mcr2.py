"""MCR² clustering (MLC, CPP): the rate-reduction loss against its definition, the doubly stochastic
membership, the objective rising while training, blobs recovered, k by coding length, save/load."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from deepclust.base import load_model
from deepclust.heads import MCR2Net, doubly_stochastic
from deepclust.losses import coding_length, coding_rate, compressed_coding_rate, rate_reduction
from deepclust.methods import make_method
from deepclust.select_k import select_k

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = dict(hidden_dims=(64,), out_dim=16, batch_size=200, epochs=15, device="cpu")


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_blobs(600, n_features=20, centers=4, cluster_std=1.0, random_state=0)
    return X.astype(np.float32), y


def _logdet_rate(Z: np.ndarray, eps_sq: float) -> float:
    n, d = Z.shape
    return 0.5 * np.linalg.slogdet(np.eye(d) + d / (n * eps_sq) * Z.T @ Z)[1]


@pytest.mark.parametrize("n, d", [(50, 8), (6, 30)])
def test_coding_rate_is_half_the_logdet_on_either_side(n, d) -> None:
    Z = np.random.default_rng(0).normal(size=(n, d))
    assert float(coding_rate(torch.tensor(Z, dtype=torch.float64), 0.5, torch.float64)) == pytest.approx(
        _logdet_rate(Z, 0.5), rel=1e-9)


def test_compressed_rate_of_a_hard_partition_is_the_size_weighted_rate_of_each_part() -> None:
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(60, 5))
    labels = rng.integers(0, 3, 60)
    onehot = torch.nn.functional.one_hot(torch.tensor(labels), 3).double()
    expected = sum((labels == j).sum() / 60 * _logdet_rate(Z[labels == j], 0.1) for j in range(3))
    got = compressed_coding_rate(torch.tensor(Z), onehot, 0.1, torch.float64)
    assert float(got) == pytest.approx(expected, rel=1e-9)
    # rate reduction of any partition is >= 0 (logdet is concave) and 0 for the trivial one
    assert float(rate_reduction(torch.tensor(Z), onehot, 0.1, torch.float64)["rate_reduction"]) > 0
    assert float(rate_reduction(torch.tensor(Z), torch.ones(60, 1, dtype=torch.float64), 0.1,
                                torch.float64)["rate_reduction"]) == pytest.approx(0, abs=1e-9)


def test_coding_length_prefers_the_true_partition_of_separated_groups() -> None:
    X, y = make_blobs(300, n_features=6, centers=3, cluster_std=0.3, random_state=2)
    Z = torch.nn.functional.normalize(torch.tensor(X), dim=1)
    true = coding_length(Z, torch.tensor(y))
    merged = coding_length(Z, torch.tensor(np.minimum(y, 1)))
    split = coding_length(Z, torch.tensor(np.where((y == 0) & (np.arange(300) % 2 == 0), 3, y)))
    assert true < merged and true < split


@pytest.mark.parametrize("iters, tol", [(5, 0.05), (50, 1e-3)])
def test_membership_is_doubly_stochastic_and_differentiable(iters, tol) -> None:
    c = torch.nn.functional.normalize(torch.randn(300, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    c.requires_grad_()
    pi = doubly_stochastic((c @ c.T).abs(), 0.175, iters)
    assert (pi >= 0).all()
    assert torch.allclose(pi.sum(1), torch.ones(300), atol=1e-4)  # rows exact
    assert float((pi.detach().sum(0) - 1).abs().max()) < tol  # columns: n/k with k = n groups
    pi.pow(2).sum().backward()
    assert c.grad is not None and torch.isfinite(c.grad).all() and float(c.grad.abs().sum()) > 0


def test_one_shot_initialisation_copies_the_feature_head() -> None:
    net = MCR2Net(10, (16,), 4).eval()
    x = torch.randn(5, 10)
    z, c = net(x)
    assert not torch.allclose(z, c)
    net.init_cluster_from_features()
    z, c = net(x)
    assert torch.equal(z, c)


@pytest.mark.parametrize("method", ["cpp", "mlc"])
def test_rate_reduction_rises_and_blobs_are_recovered(blobs, method) -> None:
    X, y = blobs
    model = make_method(method, n_clusters=4, **SMALL, **({"warmup_epochs": 3} if method == "mlc" else {})).fit(X)
    joint = [r for r in model.history_["train"] if r["phase"] == "joint"]
    assert len(joint) == 15
    assert joint[-1]["rate_reduction"] > joint[0]["rate_reduction"] + 1.0
    assert adjusted_rand_score(y, model.labels_) > 0.95
    proba = model.predict_proba(X)
    assert np.allclose(proba.sum(1), 1, atol=1e-4)
    assert (model.predict(X) == model.labels_).all()
    with torch.no_grad():  # the trained membership of a batch is doubly stochastic
        _, c = model.net_.eval()(model._prepare(X[:200], torch.device("cpu")))
        pi = model._membership(c)[0]
    assert torch.allclose(pi.sum(1), torch.ones(200), atol=1e-4) and float((pi.sum(0) - 1).abs().max()) < 0.05


def test_mlc_warm_up_maximises_the_coding_rate(blobs) -> None:
    model = make_method("mlc", n_clusters=4, **{**SMALL, "epochs": 1}, warmup_epochs=5).fit(blobs[0])
    warm = [r for r in model.history_["train"] if r["phase"] == "warmup"]
    assert len(warm) == 5 and warm[-1]["rate"] > warm[0]["rate"]


def test_cpp_estimates_k_by_coding_length(blobs) -> None:
    X, _ = blobs
    model = make_method("cpp", n_clusters=2, **SMALL).fit(X)  # training does not use k
    est = model.estimate_k(range(2, 11))
    assert est["k"] == 4 and len(est["coding_length"]) == 9


def test_select_k_coding_length_criterion_finds_k_on_separated_blobs() -> None:
    import inspect

    from deepclust.select_k import DEFAULT_CRITERIA

    X, _ = make_blobs(500, n_features=10, centers=5, cluster_std=0.5, random_state=3)
    sel = select_k(X, (2, 12), criteria=["coding_length"], rule="coding_length")
    assert sel.k == 5 and sel.choices["coding_length"] == 5
    assert len(sel.curves["coding_length"]) == len(sel.k_values)
    # selectable, not the default
    assert "coding_length" not in DEFAULT_CRITERIA
    assert inspect.signature(select_k).parameters["rule"].default == "silhouette"


def test_save_load_gives_the_same_predictions(blobs, tmp_path: Path) -> None:
    X, _ = blobs
    model = make_method("mlc", n_clusters=4, **{**SMALL, "epochs": 3}, warmup_epochs=1).fit(X)
    loaded = load_model(model.save(tmp_path / "mlc"))
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X), atol=1e-6)
    assert (loaded.predict(X) == model.labels_).all()
    assert loaded.estimate_k(range(2, 8)) == model.estimate_k(range(2, 8))


def test_bad_settings_are_one_clear_error(blobs) -> None:
    from deepclust.errors import DeepclustError

    for bad in (dict(eta=0), dict(warmup_epochs=-1), dict(n_anchors=1), dict(pi_weight=-1.0)):
        with pytest.raises(DeepclustError, match=next(iter(bad))):
            make_method("cpp", n_clusters=4, **SMALL, **bad).fit(blobs[0])
    assert math.isfinite(float(coding_rate(torch.zeros(3, 2))))


def test_clusters_are_named_by_the_candidates_their_members_vote_for() -> None:
    from deepclust.explain import keyword_name, name_clusters

    rng = np.random.default_rng(0)
    directions = np.eye(3, 8)  # three candidate names, each embedded along its own axis
    labels = np.repeat([0, 1, 2, -1], 20)
    features = np.concatenate([directions[[2, 0, 1]].repeat(20, 0), rng.normal(size=(20, 8))]) + 0.1 * rng.normal(size=(80, 8))
    names = name_clusters(features, labels, ["cat", "dog", "ship"], directions)
    assert {c: n for c, (n, _) in names.items()} == {0: "ship", 1: "cat", 2: "dog"}
    assert all(0.5 < share <= 1 for _, share in names.values())
    assert keyword_name([["goal", 0.3], ["match", 0.2], ["team", 0.1], ["cup", 0.05]]) == "goal · match · team"


def test_cli_cluster_cpp_and_a_bad_setting(blobs, tmp_path: Path, capsys) -> None:
    from deepclust.cli import main

    X, y = blobs
    np.savez(tmp_path / "blobs.npz", X=X, y=y)
    args = ["--quiet", "cluster", str(tmp_path / "blobs.npz"), "--method", "cpp", "--device", "cpu", "-k", "4",
            "--param", "hidden_dims=[32]", "--param", "out_dim=8", "--param", "epochs=3"]
    assert main([*args, "--out", str(tmp_path / "out")]) == 0
    assert "ACC" in capsys.readouterr().out
    assert (tmp_path / "out" / "model" / "model.safetensors").is_file()
    assert main([*args, "--param", "eta=-1", "--out", str(tmp_path / "bad")]) == 2
    assert "eta" in capsys.readouterr().err
