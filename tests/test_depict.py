"""DEPICT end to end on small synthetic images: it separates them, learns, reloads identically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deepclust.base import load_model
from deepclust.errors import DeepclustError
from deepclust.methods import make_method
from deepclust.methods.depict import DEPICT
from deepclust.metrics import accuracy

FAST = dict(pretrain_epochs=40, warmup_epochs=5, cluster_epochs=10, batch_size=32, lr=2e-3, channels=(8, 8),
            kmeans_n_init=5)


def pattern_images(n_per_class: int = 100, size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three families of N×1×size×size images in [0, 1]: a horizontal bar, a vertical bar and a ring,
    each moved by up to a pixel, with random brightness and Gaussian pixel noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(float)
    images, labels = [], []
    for cls in range(3):
        for _ in range(n_per_class):
            cy, cx = size / 2 - 0.5 + rng.uniform(-1, 1, 2)
            if cls == 0:
                img = (np.abs(yy - cy) < 1.5) & (np.abs(xx - cx) < 5.5)
            elif cls == 1:
                img = (np.abs(xx - cx) < 1.5) & (np.abs(yy - cy) < 5.5)
            else:
                r = np.hypot(yy - cy, xx - cx)
                img = (r > 3) & (r < 5.5)
            images.append(np.clip(img * rng.uniform(0.6, 1.0) + rng.normal(0, 0.2, img.shape), 0, 1))
            labels.append(cls)
    return np.asarray(images, dtype=np.float32)[:, None], np.asarray(labels)


@pytest.fixture(scope="module")
def fitted() -> tuple[DEPICT, np.ndarray, np.ndarray]:
    X, y = pattern_images()
    return DEPICT(3, random_state=0, **FAST).fit(X), X, y


def test_depict_separates_different_images(fitted) -> None:
    model, X, y = fitted
    assert accuracy(y, model.labels_) > 0.9
    assert model.labels_.shape == (len(X),) and set(model.labels_) <= {0, 1, 2}


def test_reconstruction_loss_falls_during_pretraining(fitted) -> None:
    model, _, _ = fitted
    losses = [r["loss"] for r in model.history_["pretrain"]]
    assert losses[-1] < 0.5 * losses[0]


def test_outputs_of_the_estimator_api(fitted) -> None:
    model, X, _ = fitted
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 3) and np.allclose(proba.sum(1), 1, atol=1e-5)
    np.testing.assert_array_equal(model.predict(X), model.labels_)
    assert model.transform(X).shape == (len(X), 3)  # the K-dimensional embedding
    assert set(model.timings_) == {"pretrain", "init", "warmup", "cluster"}
    assert all(0 <= r["changed"] <= 1 for r in model.history_["cluster"])


def test_saved_model_reloads_to_identical_predictions(fitted, tmp_path: Path) -> None:
    model, X, _ = fitted
    model.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    np.testing.assert_array_equal(again.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(again.labels_, model.labels_)


def test_same_seed_same_result() -> None:
    X, _ = pattern_images(20)
    kw = dict(FAST, pretrain_epochs=3, cluster_epochs=2)
    a = DEPICT(3, random_state=1, **kw).fit(X).predict_proba(X)
    b = DEPICT(3, random_state=1, **kw).fit(X).predict_proba(X)
    np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("init", ["pic", "kmeans"])
def test_dec_target_option_and_flat_vectors(init) -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 6, (3, 12))
    X = np.concatenate([c + rng.normal(0, 1, (50, 12)) for c in centers]).astype(np.float32)
    y = np.repeat(np.arange(3), 50)
    model = DEPICT(3, target="dec", hidden_dims=(32, 32), init=init, random_state=0, **FAST).fit(X)
    assert model.init_used_ == init
    assert accuracy(y, model.labels_) > 0.9


def test_pic_init_above_its_size_limit_clusters_a_subsample(monkeypatch) -> None:
    """Above PIC_MAX_SAMPLES, AC-PIC runs on a random subsample and every point joins its nearest
    centroid: the fit still separates the blobs and labels every point."""
    import deepclust.methods.depict as depict_module

    monkeypatch.setattr(depict_module, "PIC_MAX_SAMPLES", 60)
    rng = np.random.default_rng(1)
    centers = rng.normal(0, 6, (3, 12))
    X = np.concatenate([c + rng.normal(0, 1, (50, 12)) for c in centers]).astype(np.float32)
    y = np.repeat(np.arange(3), 50)
    model = DEPICT(3, hidden_dims=(32, 32), init="pic", random_state=0, **FAST).fit(X)
    assert model.init_used_ == "pic" and model.labels_.shape == (150,)
    assert accuracy(y, model.labels_) > 0.9


def test_auto_init_is_pic_for_small_data(fitted) -> None:
    assert fitted[0].init_used_ == "pic"


def test_grayscale_images_without_channel_axis() -> None:
    X, y = pattern_images(20)
    model = DEPICT(3, random_state=0, **dict(FAST, pretrain_epochs=3, cluster_epochs=1)).fit(X[:, 0])
    assert model.predict(X[:, 0]).shape == (60,)


def test_catalogue_builds_depict() -> None:
    assert isinstance(make_method("depict", n_clusters=4), DEPICT)


@pytest.mark.parametrize("kwargs, message", [
    (dict(target="kl"), "target must be one of"),
    (dict(prior=[0.5, 0.5]), "prior must be 3 positive"),
    (dict(pretrain_epochs=-1), "pretrain_epochs must be >= 0"),
    (dict(init="random"), "init must be one of"),
])
def test_bad_settings_are_named(kwargs, message) -> None:
    X, _ = pattern_images(5)
    with pytest.raises(DeepclustError, match=message):
        DEPICT(3, **kwargs).fit(X)


def test_images_too_small_and_wrong_shape_at_predict(fitted) -> None:
    with pytest.raises(DeepclustError, match="too small"):
        DEPICT(2, **FAST).fit(np.random.rand(10, 1, 3, 3).astype(np.float32))
    model, _, _ = fitted
    with pytest.raises(DeepclustError, match="shape"):
        model.predict(np.zeros((2, 1, 8, 8), np.float32))


def test_pretrained_autoencoder_cache_gives_the_same_fit(tmp_path: Path) -> None:
    X, _ = pattern_images(20)
    kw = dict(FAST, pretrain_epochs=3, cluster_epochs=2, cache_dir=str(tmp_path))
    first = DEPICT(3, random_state=2, **kw).fit(X)
    assert len(list((tmp_path / "autoencoders").glob("*.safetensors"))) == 1
    second = DEPICT(3, random_state=2, **kw).fit(X)
    assert "cached" in second.history_["pretrain"][0]
    np.testing.assert_allclose(second.predict_proba(X), first.predict_proba(X), atol=1e-6)
    other = DEPICT(3, random_state=3, **kw).fit(X)  # another seed pretrains its own
    assert "cached" not in other.history_["pretrain"][0]
