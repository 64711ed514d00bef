"""AE + k-means, DEC, IDEC and N2D: they separate easy data, follow their formulas, stop by their
label-free rule, share a cache of pretrained autoencoders and reload to identical predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sklearn.datasets import make_blobs

from deepclust.base import load_model
from deepclust.errors import DeepclustError
from deepclust.methods import make_method
from deepclust.methods.ae_kmeans import AEKMeans
from deepclust.methods.dec import DEC, IDEC
from deepclust.methods.n2d import N2D
from deepclust.metrics import accuracy
from deepclust.training import train_epochs

SMALL = dict(hidden_dims=(32, 32, 64), pretrain_epochs=15, batch_size=64, device="cpu")


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_blobs(500, n_features=20, centers=4, cluster_std=1.5, random_state=3)
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def fitted(blobs, tmp_path_factory) -> dict:
    X, _ = blobs
    cache = tmp_path_factory.mktemp("ae-cache")
    models = {
        "ae-kmeans": AEKMeans(4, embedding_dim=5, cache_dir=str(cache), **SMALL),
        "dec": DEC(4, embedding_dim=5, update_interval=20, cache_dir=str(cache), **SMALL),
        "idec": IDEC(4, embedding_dim=5, update_interval=20, cache_dir=str(cache), **SMALL),
        "n2d": N2D(4, embedding_dim=5, n_neighbors=10, cache_dir=str(cache), **SMALL),
    }
    return {name: m.fit(X) for name, m in models.items()} | {"cache": cache}


@pytest.mark.parametrize("name", ["ae-kmeans", "dec", "idec", "n2d"])
def test_each_method_separates_blobs(fitted, blobs, name) -> None:
    X, y = blobs
    model = fitted[name]
    assert accuracy(y, model.labels_) > 0.95
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 4) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert model.transform(X).shape == (len(X), 5)


def test_fit_and_predict_leave_the_callers_array_unchanged(fitted, blobs) -> None:
    """On the CPU torch.from_numpy shares memory: scaling in place used to rewrite the user's X."""
    X = blobs[0][:100].copy()
    before = X.copy()
    AEKMeans(4, embedding_dim=2, hidden_dims=(8,), pretrain_epochs=1, device="cpu").fit(X)
    fitted["dec"].predict(X)
    fitted["dec"].transform(X)
    assert np.array_equal(X, before)


def test_pretrained_autoencoder_is_shared_through_the_cache(fitted) -> None:
    files = list((fitted["cache"] / "autoencoders").glob("*.safetensors"))
    assert len(files) == 1  # same data, network, schedule and seed: pretrained once
    assert "loss" in fitted["ae-kmeans"].history_["pretrain"][0]  # the first one trained it
    for name in ("dec", "idec", "n2d"):
        assert "cached" in fitted[name].history_["pretrain"][0]


@pytest.mark.parametrize("name", ["ae-kmeans", "dec", "idec", "n2d"])
def test_saved_model_reloads_to_identical_predictions(fitted, blobs, name, tmp_path: Path) -> None:
    X, _ = blobs
    model = fitted[name]
    again = load_model(model.save(tmp_path / name))
    assert type(again) is type(model)
    np.testing.assert_array_equal(again.predict(X), model.predict(X))
    np.testing.assert_allclose(again.predict_proba(X), model.predict_proba(X), atol=1e-6)


def test_dec_stops_when_few_labels_change(fitted) -> None:
    model = fitted["dec"]
    changed = [r["changed"] for r in model.history_["cluster"]]
    assert changed[-1] < model.tol or model.n_iter_ == model.max_iter
    assert all(changed[i] >= model.tol for i in range(len(changed) - 1))
    assert model.n_iter_ == len(changed) * model.update_interval


def test_dec_learns_on_top_of_kmeans() -> None:
    """On overlapping blobs the clustering phase runs more than one round and lowers KL(P‖Q)."""
    X, _ = make_blobs(600, n_features=10, centers=5, cluster_std=3.0, random_state=0)
    model = DEC(5, embedding_dim=5, update_interval=10, max_iter=200, tol=0.0, **SMALL).fit(X)
    losses = [r["loss"] for r in model.history_["cluster"]]
    assert len(losses) == 20 and min(losses[-5:]) < losses[0]


def test_dec_keeps_the_decoder_and_idec_trains_it(blobs, tmp_path: Path) -> None:
    X, _ = blobs
    dec = DEC(4, embedding_dim=5, update_interval=20, max_iter=60, tol=0.0, cache_dir=str(tmp_path),
              **SMALL).fit(X)
    idec = IDEC(4, embedding_dim=5, update_interval=20, max_iter=60, tol=0.0, **SMALL).fit(X)
    assert "reconstruction" not in dec.history_["cluster"][0]
    assert "reconstruction" in idec.history_["cluster"][0]
    assert idec.gamma == 0.1 and idec.optimizer == "adam" and dec.optimizer == "sgd"
    # clustering trains DEC's encoder but leaves its decoder as pretrained (the cache holds both)
    (cached,) = (tmp_path / "autoencoders").glob("*.safetensors")
    pretrained = load_file(str(cached))
    trained = dec.autoencoder_.state_dict()
    assert all(torch.equal(pretrained[k], trained[k]) for k in pretrained if k.startswith("dec."))
    assert not all(torch.equal(pretrained[k], trained[k]) for k in pretrained if k.startswith("enc."))


def test_layerwise_pretraining_trains_each_layer_then_the_stack(blobs) -> None:
    X, y = blobs
    model = AEKMeans(4, embedding_dim=5, architecture="mlp", pretrain="layerwise", layerwise_epochs=3,
                     **SMALL).fit(X)
    layers = [r.get("layer") for r in model.history_["pretrain"]]
    assert layers[:12] == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4] and layers[12:] == [None] * 15
    assert accuracy(y, model.labels_) > 0.95


def test_ae_kmeans_uses_the_conv_autoencoder_for_images() -> None:
    rng = np.random.default_rng(0)
    X = rng.random((64, 1, 12, 12), dtype=np.float32)
    model = AEKMeans(2, embedding_dim=4, pretrain_epochs=1, batch_size=32, device="cpu").fit(X)
    assert model.architecture_ == "conv" and model.transform(X).shape == (64, 4)


def test_same_seed_same_labels(blobs) -> None:
    X, _ = blobs
    a = DEC(4, embedding_dim=5, update_interval=20, max_iter=40, **SMALL).fit(X)
    b = DEC(4, embedding_dim=5, update_interval=20, max_iter=40, **SMALL).fit(X)
    np.testing.assert_array_equal(a.labels_, b.labels_)


def test_steps_per_epoch_streams_over_permutations() -> None:
    seen: list[torch.Tensor] = []

    def loss(idx: torch.Tensor) -> dict[str, torch.Tensor]:
        seen.append(idx.clone())
        return {"loss": (w ** 2).sum()}

    w = torch.nn.Parameter(torch.ones(1))
    history = train_epochs([w], loss, 10, epochs=3, batch_size=4, device=torch.device("cpu"),
                           generator=torch.Generator().manual_seed(0), steps_per_epoch=2)
    assert len(history) == 3 and len(seen) == 6
    # each permutation of 10 samples is cut 4, 4, 2: the first three batches cover every sample once
    assert sorted(torch.cat(seen[:3]).tolist()) == list(range(10))


def test_catalogue_and_bad_settings(blobs) -> None:
    X, _ = blobs
    for name, cls in (("ae-kmeans", AEKMeans), ("dec", DEC), ("idec", IDEC), ("n2d", N2D)):
        assert isinstance(make_method(name, n_clusters=3), cls)
    with pytest.raises(DeepclustError, match="optimizer"):
        DEC(4, optimizer="rmsprop", **SMALL).fit(X)
    with pytest.raises(DeepclustError, match="pretrain"):
        DEC(4, pretrain="greedy", **SMALL).fit(X)
    with pytest.raises(DeepclustError, match="architecture"):
        IDEC(4, architecture="resnet", **SMALL).fit(X)
    with pytest.raises(DeepclustError, match="needs images"):
        AEKMeans(4, architecture="conv", **SMALL).fit(X)
    with pytest.raises(DeepclustError, match="n_neighbors"):
        N2D(2, n_neighbors=50, **SMALL).fit(X[:20])
    with pytest.raises(DeepclustError, match="n_clusters"):
        DEC(600, **SMALL).fit(X)
    with pytest.raises(DeepclustError, match="NaN"):
        DEC(4, **SMALL).fit(np.where(np.eye(500, 20) > 0, np.nan, X))
    with pytest.raises(DeepclustError, match="not fitted"):
        DEC(4).predict(X)


def test_cli_runs_idec_on_a_file_and_saves_a_reloadable_model(blobs, tmp_path: Path, capsys) -> None:
    from deepclust.cli import main

    X, y = blobs
    np.savez(tmp_path / "blobs.npz", X=X, y=y)
    out = tmp_path / "run"
    code = main(["--quiet", "cluster", str(tmp_path / "blobs.npz"), "--method", "idec", "-k", "4", "--out", str(out),
                 "--device", "cpu", "--param", "hidden_dims=[32,32,64]", "--param", "pretrain_epochs=15",
                 "--param", "batch_size=64", "--param", "embedding_dim=5", "--param", "update_interval=20"])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "idec" and metrics["scores"]["acc"] > 0.95
    model = load_model(out / "model")
    np.testing.assert_array_equal(model.predict(X), model.labels_)


def test_n2d_leaves_torchs_thread_count_as_it_found_it(blobs) -> None:
    """umap-learn's numba kernels reset the shared OpenMP pool to all cores; N2D must not let that
    override the caller's thread setting for the rest of the process."""
    from deepclust.runtime import keep_torch_threads

    X, _ = blobs
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with keep_torch_threads():
            torch.set_num_threads(2)  # what foreign code may do
        assert torch.get_num_threads() == 1
        N2D(4, embedding_dim=5, n_neighbors=10, **(SMALL | {"pretrain_epochs": 2})).fit(X)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("name", ["dec", "idec"])
def test_a_cached_autoencoder_gives_the_same_fit(blobs, name, tmp_path: Path) -> None:
    """The draws after pretraining (DEC's batches, k-means' start) do not depend on whether the
    autoencoder was trained or loaded from the cache."""
    from deepclust.methods import make_method

    X, _ = blobs
    params = dict(embedding_dim=2, hidden_dims=(16,), pretrain_epochs=3, max_iter=40, update_interval=10,
                  device="cpu", random_state=0, cache_dir=str(tmp_path))
    first = make_method(name, n_clusters=4, **params).fit(X)
    second = make_method(name, n_clusters=4, **params).fit(X)
    assert "loss" in first.history_["pretrain"][0] and "cached" in second.history_["pretrain"][0]
    np.testing.assert_array_equal(first.labels_, second.labels_)
    np.testing.assert_allclose(first.predict_proba(X), second.predict_proba(X), rtol=1e-5, atol=1e-6)
