"""DeepDPM (deepclust.methods.deepdpm): the Hastings ratio of its moves, and k found from a wrong start."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_t
from sklearn.datasets import make_blobs

from deepclust.base import load_model
from deepclust.methods import deepdpm
from deepclust.methods.deepdpm import DeepDPM, NIWPrior, accept, log_split_ratio

pytestmark = pytest.mark.usefixtures("one_thread")

#: a short schedule for small data: 12 moves in 100 epochs
SHORT = dict(epochs=100, start_params=5, start_subclusters=8, start_moves=10, move_every=8, freeze_epochs=3,
             batch_size=32, device="cpu")


def _prior(d: int, kappa: float = 0.5) -> NIWPrior:
    return NIWPrior(torch.zeros(d, dtype=torch.float64), torch.eye(d, dtype=torch.float64) * 0.3, kappa, d + 2.0)


def _log_evidence_by_prediction(X: np.ndarray, prior: NIWPrior) -> float:
    """log p(X) as the sum of each point's Student-t posterior predictive given the points before it."""
    d = X.shape[1]
    m0, psi = prior.m0.numpy(), prior.psi.numpy()
    total = 0.0
    for i in range(len(X)):
        seen = X[:i]
        n = len(seen)
        kn, nun = prior.kappa + n, prior.nu + n
        xbar = seen.mean(0) if n else m0
        scatter = (seen - xbar).T @ (seen - xbar) if n else np.zeros((d, d))
        mn = (prior.kappa * m0 + n * xbar) / kn
        psin = psi + scatter + prior.kappa * n / kn * np.outer(xbar - m0, xbar - m0)
        df = nun - d + 1
        total += multivariate_t(loc=mn, shape=psin * (kn + 1) / (kn * df), df=df).logpdf(X[i])
    return total


def test_niw_marginal_likelihood_is_the_product_of_the_predictives():
    X = np.random.default_rng(0).normal(size=(7, 2)) + [1.0, -0.5]
    prior = _prior(2)
    Xt = torch.as_tensor(X)
    assert prior.log_marginal(Xt, Xt.mean(0)) == pytest.approx(_log_evidence_by_prediction(X, prior), abs=1e-8)


def test_split_ratio_is_the_paper_formula_and_merge_its_inverse():
    rng = np.random.default_rng(1)
    X1, X2 = (torch.as_tensor(rng.normal(size=(6, 2)) + c) for c in ([3.0, 0.0], [-3.0, 0.5]))
    prior = _prior(2)
    both = torch.cat([X1, X2])
    by_hand = (math.log(10.0) + math.lgamma(6) + _log_evidence_by_prediction(X1.numpy(), prior) + math.lgamma(6)
               + _log_evidence_by_prediction(X2.numpy(), prior) - math.lgamma(12)
               - _log_evidence_by_prediction(both.numpy(), prior))
    log_h = log_split_ratio(10.0, X1, X2, X1.mean(0), X2.mean(0), both.mean(0), prior)
    assert log_h == pytest.approx(by_hand, abs=1e-8)
    assert log_h > 0  # two groups 6 apart: splitting them is accepted for sure
    one = torch.as_tensor(rng.normal(size=(40, 2)))  # one Gaussian cut in random halves: the split is rejected
    a, b = one[:20], one[20:]
    assert log_split_ratio(10.0, a, b, a.mean(0), b.mean(0), one.mean(0), prior) < math.log(1e-3)


def test_acceptance_is_metropolis_hastings():
    rng = np.random.default_rng(0)
    assert all(accept(0.1, rng) for _ in range(100))
    share = np.mean([accept(math.log(0.3), rng) for _ in range(20_000)])
    assert share == pytest.approx(0.3, abs=0.015)
    assert not any(accept(-50.0, rng) for _ in range(1000))


def _blobs(k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    X, y = make_blobs(800, 6, centers=k, cluster_std=0.5, center_box=(-10, 10), random_state=seed)
    return X.astype(np.float32), y


@pytest.mark.parametrize("k, init_k", [(8, 3), (5, 20)])
def test_finds_k_from_a_wrong_start(k, init_k):
    X, y = _blobs(k)
    model = DeepDPM(init_k=init_k, **SHORT).fit(X)
    assert model.n_clusters_found_ == k
    moves = [m for h in model.history_ for m in ("split", "merge") if m in h]
    assert moves and set(moves) == ({"split"} if init_k < k else {"merge"})
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(y, model.labels_) > 0.95
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), model.n_clusters_) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert (model.predict(X) == model.labels_).all()


def test_moves_follow_the_acceptance_rule(monkeypatch):
    X, _ = _blobs(8)
    seen: list[float] = []
    monkeypatch.setattr(deepdpm, "accept", lambda log_h, rng: seen.append(log_h) or False)
    rejected = DeepDPM(init_k=3, **SHORT).fit(X)
    assert seen and rejected.n_clusters_ == 3 and not any("split" in h or "merge" in h for h in rejected.history_)
    monkeypatch.setattr(deepdpm, "accept", lambda log_h, rng: True)
    taken = DeepDPM(init_k=2, **{**SHORT, "epochs": 11}).fit(X)  # one split epoch (10): every proposal taken
    assert taken.n_clusters_ == 4 and taken.history_[10]["split"] == 2


def test_save_and_load_give_the_same_predictions(tmp_path):
    X, _ = _blobs(4)
    model = DeepDPM(init_k=2, pca_dim=3, **{**SHORT, "epochs": 30}).fit(X)
    loaded = load_model(model.save(tmp_path / "m"))
    assert loaded.n_clusters_ == model.n_clusters_
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X), atol=1e-6)


def test_bad_parameters_are_one_clear_error():
    from deepclust.errors import DeepclustError

    with pytest.raises(DeepclustError, match="init_k"):
        DeepDPM(init_k=0).fit(np.zeros((10, 2)) + np.arange(10)[:, None])
    with pytest.raises(DeepclustError, match="prior_nu"):
        DeepDPM(prior_nu=0.5, device="cpu").fit(np.random.default_rng(0).normal(size=(20, 4)))
