"""Deep clustering with pairwise constraints: what ClusterNet and DCC are for, on generated data.

* ClusterNet: a few constraints reshape the embedding so that two long parallel stripes, which
  k-means (and PCKMeans) cut across, are found; its k-means loss is part of why;
* DCC keeps must-linked pairs together, and with a fifth to a third of the annotations flipped its
  learned confusion matrix and volume regulariser still find the clusters where the plain logistic
  loss does not;
* bad input gets one clear line (exit 2 on the command line).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from deepclust import metrics
from deepclust.base import load_model
from deepclust.cli import main
from deepclust.engines.constrained import PCKMeans
from deepclust.engines.kmeans import KMeans
from deepclust.errors import DeepclustError
from deepclust.losses import log_volume, pair_link_loss
from deepclust.methods import make_method
from deepclust.methods.clusternet import ClusterNet
from deepclust.methods.dcc import DCC
from deepclust.validation import check_constraints

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL_AE = {"hidden_dims": (64, 64), "pretrain_epochs": 30, "device": "cpu"}
SMALL_DCC = {"hidden_dims": (64,), "steps_per_round": 50, "max_rounds": 10, "device": "cpu"}


def stripes(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Two long horizontal stripes 3 apart: k-means (k=2) cuts them left/right, the classes are the stripes."""
    rng = np.random.default_rng(seed)
    X = np.r_[np.c_[rng.uniform(-10, 10, n), rng.normal(0, 0.5, n)],
              np.c_[rng.uniform(-10, 10, n), rng.normal(3, 0.5, n)]].astype(np.float32)
    return X, np.repeat([0, 1], n)


def blobs(seed: int, k: int = 4, per: int = 150, d: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (k, d))
    return (np.concatenate([c + rng.normal(0, 1, (per, d)) for c in centres]).astype(np.float32),
            np.repeat(np.arange(k), per))


def noisy_pairs(t: np.ndarray, n_pairs: int, flip: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random pairs annotated by ``t`` (must-link when the classes agree), a ``flip`` share of them wrongly."""
    rng = np.random.default_rng(seed + 7)
    pairs = rng.choice(len(t), (n_pairs, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    same = (t[pairs[:, 0]] == t[pairs[:, 1]]) ^ (rng.random(len(pairs)) < flip)
    return pairs[same], pairs[~same]


def untouched(n: int, *pairs: np.ndarray) -> np.ndarray:
    mask = np.ones(n, bool)
    for p in pairs:
        mask[p.ravel()] = False
    return mask


@pytest.mark.parametrize("seed", [0, 1])
def test_clusternet_a_few_constraints_fix_the_split_kmeans_gets_wrong(seed: int) -> None:
    X, t = stripes(seed)
    ml, cl = noisy_pairs(t, 30, 0.0, seed + 193)  # 30 pairs: at most 60 of the 600 samples named
    rest = untouched(len(X), ml, cl)
    assert metrics.accuracy(t[rest], KMeans(2, random_state=seed).fit(X).labels_[rest]) < 0.6
    assert metrics.accuracy(t[rest], PCKMeans(2, random_state=seed).fit(X, must_link=ml, cannot_link=cl)
                            .labels_[rest]) < 0.6
    model = ClusterNet(2, random_state=seed, **SMALL_AE).fit(X, must_link=ml, cannot_link=cl)
    assert metrics.accuracy(t[rest], model.labels_[rest]) > 0.95
    assert model.violations_["must_link"] == 0 and model.n_must_link_ == len(ml)
    assert (model.predict(X) == model.labels_).mean() > 0.95  # new samples: nearest centre in the embedding


def test_clusternet_needs_its_kmeans_loss_for_that() -> None:
    X, t = stripes(0)
    ml, cl = noisy_pairs(t, 30, 0.0, 193)
    rest = untouched(len(X), ml, cl)
    without = ClusterNet(2, kmeans_weight=0.0, random_state=0, **SMALL_AE).fit(X, must_link=ml, cannot_link=cl)
    assert metrics.accuracy(t[rest], without.labels_[rest]) < 0.8


def test_dcc_keeps_must_linked_pairs_together() -> None:
    X, t = blobs(0)
    ml, cl = noisy_pairs(t, 1500, 0.0, 0)
    model = DCC(4, random_state=0, **SMALL_DCC).fit(X, must_link=ml, cannot_link=cl)
    lab = model.labels_
    assert (lab[ml[:, 0]] == lab[ml[:, 1]]).mean() > 0.95 and (lab[cl[:, 0]] != lab[cl[:, 1]]).mean() > 0.95
    assert metrics.accuracy(t, lab) > 0.95
    assert model.violations_["must_link"] == int((lab[ml[:, 0]] != lab[ml[:, 1]]).sum())
    assert model.confusion_.shape == (4, 4)
    images = DCC(4, random_state=0, **SMALL_DCC).fit(X.reshape(-1, 2, 2, 2), must_link=ml, cannot_link=cl)
    assert metrics.accuracy(t, images.labels_) > 0.95  # images are flattened


def test_dcc_degrades_gracefully_with_flipped_annotations() -> None:
    """30 % of the annotations flipped: the plain logistic loss (B = I, no volume term) loses the clusters on
    average, DCC with its learned confusion matrix and volume regulariser keeps them on every seed."""
    plain, robust = [], []
    for seed in (0, 1, 2):
        X, t = blobs(seed)
        ml, cl = noisy_pairs(t, 1500, 0.3, seed)
        with pytest.raises(DeepclustError, match="contradict"):  # what noisy annotations look like
            check_constraints(ml, cl, len(X))
        robust.append(metrics.accuracy(t, DCC(4, random_state=seed, **SMALL_DCC)
                                       .fit(X, must_link=ml, cannot_link=cl).labels_))
        plain.append(metrics.accuracy(t, DCC(4, noise_model=False, volume_weight=0.0, random_state=seed, **SMALL_DCC)
                                      .fit(X, must_link=ml, cannot_link=cl).labels_))
    assert min(robust) > 0.95
    assert np.mean(plain) < 0.8


def test_pair_losses() -> None:
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    same = torch.tensor([True, False, True])
    expected = torch.nn.functional.binary_cross_entropy(torch.tensor([1.0, 0.0, 0.5]).clamp(1e-6, 1 - 1e-6),
                                                        same.float())
    assert float(pair_link_loss(p, p[[0, 0, 2]], same)) == pytest.approx(float(expected), rel=1e-5)
    noisy = torch.tensor([[0.8, 0.2], [0.2, 0.8]])  # annotators link different clusters 20 % of the time
    assert float(pair_link_loss(p[:2], p[[1, 0]], torch.tensor([False, False]), noisy)) == \
        pytest.approx(-np.log(0.8), rel=1e-5)
    spread, stacked = torch.eye(3).repeat(4, 1), torch.tensor([[1.0, 0, 0]]).repeat(12, 1)
    assert float(log_volume(spread)) > float(log_volume(stacked)) + 10


@pytest.mark.parametrize("make", [lambda X, ml, cl: ClusterNet(4, random_state=0, **SMALL_AE)
                                  .fit(X, must_link=ml, cannot_link=cl),
                                  lambda X, ml, cl: DCC(4, random_state=0, **SMALL_DCC)
                                  .fit(X, must_link=ml, cannot_link=cl)], ids=["clusternet", "dcc"])
def test_save_and_load_predict_the_same(make, tmp_path: Path) -> None:
    X, t = blobs(1, per=50)
    ml, cl = noisy_pairs(t, 300, 0.0, 1)
    model = make(X, ml, cl)
    loaded = load_model(model.save(tmp_path / "m"))
    assert (loaded.predict(X) == model.predict(X)).all()
    assert loaded.n_must_link_ == len(ml)


def test_bad_input_is_one_clear_line() -> None:
    X, t = blobs(0, per=20)
    with pytest.raises(DeepclustError, match="dcc learns from pairwise constraints and none were given"):
        DCC(4, **SMALL_DCC).fit(X)
    with pytest.raises(DeepclustError, match="does not use labels"):
        DCC(4, **SMALL_DCC).fit(X, t)
    with pytest.raises(DeepclustError, match="both must-link and cannot-link"):  # ClusterNet's are exact
        ClusterNet(4, **SMALL_AE).fit(X, must_link=[(0, 1)], cannot_link=[(1, 0)])
    with pytest.raises(DeepclustError, match="outside"):
        DCC(4, **SMALL_DCC).fit(X, must_link=[(0, 80)])
    with pytest.raises(DeepclustError, match="volume_weight"):
        make_method("dcc", n_clusters=4, volume_weight=-1.0).fit(X, must_link=[(0, 1)])
    with pytest.raises(DeepclustError, match="margin"):
        make_method("clusternet", n_clusters=4, margin=0.0, **SMALL_AE).fit(X, must_link=[(0, 1)])


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    X, t = blobs(0, per=40)
    np.savez(tmp_path / "data.npz", X=X, y=t)
    ml, cl = noisy_pairs(t, 300, 0.0, 0)
    (tmp_path / "pairs.csv").write_text("i,j,kind\n" + "".join(f"{i},{j},must\n" for i, j in ml)
                                        + "".join(f"{i},{j},cannot\n" for i, j in cl))
    for method, params in (("dcc", ["hidden_dims=[64]", "max_rounds=4"]),
                           ("clusternet", ["hidden_dims=[64]", "pretrain_epochs=5", "max_iter=100"])):
        code = main(["--quiet", "cluster", str(tmp_path / "data.npz"), "-k", "4", "--method", method, "--constraints",
                     str(tmp_path / "pairs.csv"), "--out", str(tmp_path / method), "--threads", "1", "--device", "cpu",
                     *[a for p in params for a in ("--param", p)]])
        assert code == 0, capsys.readouterr().err
        summary = json.loads((tmp_path / method / "metrics.json").read_text())
        assert summary["supervision"]["n_must_link"] == len(ml)
    capsys.readouterr()
    (tmp_path / "bad.csv").write_text("0,1,must\n2,999,cannot\n")
    code = main(["--quiet", "cluster", str(tmp_path / "data.npz"), "-k", "4", "--method", "dcc", "--constraints",
                 str(tmp_path / "bad.csv"), "--out", str(tmp_path / "bad"), "--threads", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "sample index 999 is outside" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "bad").exists()
