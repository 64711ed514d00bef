"""Loading a model folder never runs code, and a damaged or hostile folder gives one DeepclustError
naming the file and the problem, at load time (issue 14, items 8 and 9)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from sklearn.datasets import make_blobs

from deepclust import base
from deepclust.base import CONFIG_FILE, WEIGHTS_FILE, load_model
from deepclust.engines.kmeans import KMeans
from deepclust.errors import DeepclustError
from deepclust.methods.dec import DEC


@pytest.fixture(scope="module")
def blobs() -> np.ndarray:
    return make_blobs(120, n_features=6, centers=3, random_state=0)[0].astype(np.float32)


@pytest.fixture(scope="module")
def kmeans_dir(blobs, tmp_path_factory) -> Path:
    return KMeans(3, device="cpu").fit(blobs).save(tmp_path_factory.mktemp("m") / "kmeans")


@pytest.fixture(scope="module")
def dec_dir(blobs, tmp_path_factory) -> Path:
    model = DEC(3, embedding_dim=2, hidden_dims=(8,), pretrain_epochs=1, max_iter=2, update_interval=1,
                batch_size=64, device="cpu")
    return model.fit(blobs).save(tmp_path_factory.mktemp("m") / "dec")


def copy_model(src: Path, dst: Path, config_change=None, weights_change=None) -> Path:
    """A copy of the model folder ``src`` with its config (a dict) and/or weights (name → array) changed."""
    dst.mkdir()
    config = json.loads((src / CONFIG_FILE).read_text())
    arrays = load_file(str(src / WEIGHTS_FILE))
    if config_change:
        config_change(config)
    if weights_change:
        weights_change(arrays)
    (dst / CONFIG_FILE).write_text(json.dumps(config))
    save_file(arrays, str(dst / WEIGHTS_FILE))
    return dst


def assert_load_error(path: Path, *fragments: str) -> None:
    with pytest.raises(DeepclustError) as info:
        load_model(path)
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    for fragment in fragments:
        assert fragment in message, message


def test_round_trip_still_identical(kmeans_dir, blobs) -> None:
    model = load_model(kmeans_dir)
    assert (model.predict(blobs) == model.labels_).all()


@pytest.mark.parametrize("cls, params", [
    ("subprocess:Popen", {"args": ["touch", "PWNED"]}),
    ("os:system", {"command": "touch PWNED"}),
    ("builtins:eval", {"source": "open('PWNED', 'w')"}),
    ("deepclust.base:BaseClusterer", {}),  # a deepclust class, but not a registered method
    ("deepclust.engines.kmeans:KMeans.__init__.__globals__", {}),
])
def test_foreign_class_is_never_imported_or_called(kmeans_dir, tmp_path, monkeypatch, cls, params) -> None:
    monkeypatch.chdir(tmp_path)

    def hostile(config):
        config["class"], config["params"] = cls, params

    folder = copy_model(kmeans_dir, tmp_path / "hostile", hostile)
    assert_load_error(folder, str(folder / CONFIG_FILE), repr(cls), "not a deepclust method")
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("name, value, fragment", [
    ("n_clusters", "3", "'n_clusters'"),
    ("n_clusters", 3.5, "'n_clusters'"),
    ("n_clusters", True, "'n_clusters'"),
    ("n_clusters", 10**30, "'n_clusters'"),  # beyond int64
    ("max_iter", [300], "'max_iter'"),
    ("verbose", "yes", "'verbose'"),
    ("tol", "0.0001", "'tol'"),
    ("metric", {"a": {"b": {"c": 1}}}, "'metric'"),  # nested object
    ("init", [[[[[[0.0]]]]]], "'init'"),  # deeper than any parameter may be
    ("init", [0.0] * (base.MAX_JSON_ITEMS + 1), "'init'"),  # a huge array
    ("evil", 1, "no parameter 'evil'"),  # unknown parameter
    ("self", 1, "no parameter 'self'"),
])
def test_hostile_or_wrong_params_are_refused(kmeans_dir, tmp_path, name, value, fragment) -> None:
    folder = copy_model(kmeans_dir, tmp_path / "bad", lambda c: c["params"].__setitem__(name, value))
    assert_load_error(folder, str(folder / CONFIG_FILE), fragment)


def test_params_of_declared_types_are_accepted(kmeans_dir, blobs, tmp_path) -> None:
    folder = copy_model(kmeans_dir, tmp_path / "ok", lambda c: c["params"].update(max_iter=5, tol=1, batch_size=None))
    model = load_model(folder)
    assert (model.max_iter, model.tol, model.batch_size) == (5, 1, None)
    assert (model.predict(blobs) == model.labels_).all()


def test_huge_network_in_config_is_refused_without_building_it(dec_dir, tmp_path) -> None:
    """A hidden layer of 2**36 units would need terabytes; the check builds the networks on the meta device."""
    folder = copy_model(dec_dir, tmp_path / "huge", lambda c: c["params"].update(hidden_dims=[2**36]))
    assert_load_error(folder, str(folder / WEIGHTS_FILE), "wrong shape")


def test_fitted_values_are_checked(kmeans_dir, tmp_path) -> None:
    folder = copy_model(kmeans_dir, tmp_path / "a", lambda c: c["fitted"].update(_networks=["x"]))
    assert_load_error(folder, str(folder / CONFIG_FILE), "no fitted value '_networks'")
    folder = copy_model(kmeans_dir, tmp_path / "b", lambda c: c["fitted"].update(input_shape_=[7]))
    assert_load_error(folder, str(folder / CONFIG_FILE), "input shape")


@pytest.mark.parametrize("change, fragment", [
    (lambda c: c.pop("class"), 'no "class"'),
    (lambda c: c.pop("format"), "not a deepclust model config"),
    (lambda c: c.update(format_version=99), "format_version 99"),
    (lambda c: c.update(params=[1, 2]), '"params" must be a JSON object'),
    (lambda c: c.update(fitted=None), '"fitted" must be a JSON object'),
])
def test_corrupt_config(kmeans_dir, tmp_path, change, fragment) -> None:
    folder = copy_model(kmeans_dir, tmp_path / "bad", change)
    assert_load_error(folder, str(folder / CONFIG_FILE), fragment)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "\xff\xfe", "[" * 100_000])
def test_unreadable_config(kmeans_dir, tmp_path, text) -> None:
    folder = copy_model(kmeans_dir, tmp_path / "bad")
    (folder / CONFIG_FILE).write_bytes(text.encode("latin-1"))
    assert_load_error(folder, str(folder / CONFIG_FILE))


def test_oversized_config_is_not_read(kmeans_dir, tmp_path, monkeypatch) -> None:
    folder = copy_model(kmeans_dir, tmp_path / "big")
    monkeypatch.setattr(base, "MAX_CONFIG_BYTES", 100)
    assert_load_error(folder, str(folder / CONFIG_FILE), "larger than")


def test_truncated_weights(kmeans_dir, tmp_path) -> None:
    folder = copy_model(kmeans_dir, tmp_path / "cut")
    data = (folder / WEIGHTS_FILE).read_bytes()
    (folder / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    assert_load_error(folder, str(folder / WEIGHTS_FILE), "not a readable safetensors file")


@pytest.mark.parametrize("change, fragment", [
    (lambda a: a.pop("cluster_centers_"), "missing arrays: cluster_centers_"),
    (lambda a: a.update(extra_=np.zeros(3, np.float32)), "does not save: extra_"),
    (lambda a: a.update(labels_=np.zeros(3, np.int64)), "wrong shape"),
    (lambda a: a.update(cluster_centers_=a["cluster_centers_"].astype(np.float64)), "wrong shape or type"),
])
def test_weights_that_do_not_match_the_config(kmeans_dir, tmp_path, change, fragment) -> None:
    folder = copy_model(kmeans_dir, tmp_path / "bad", weights_change=change)
    assert_load_error(folder, str(folder / WEIGHTS_FILE), fragment)


def test_network_tensors_are_checked_even_when_config_agrees(dec_dir, tmp_path) -> None:
    """A folder whose config lists the same (wrong) tensors as its weights still fails at load, not at predict."""
    name = next(n for n in load_file(str(dec_dir / WEIGHTS_FILE)) if n.startswith("autoencoder_."))

    def drop_from_config(config):
        config["arrays"].pop(name)

    folder = copy_model(dec_dir, tmp_path / "missing", drop_from_config, lambda a: a.pop(name))
    assert_load_error(folder, str(folder / WEIGHTS_FILE), "missing tensors", name)

    def reshape_in_config(config):
        config["arrays"][name]["shape"] = [1, 1]

    folder = copy_model(dec_dir, tmp_path / "shape", reshape_in_config,
                        lambda a: a.update({name: np.zeros((1, 1), a[name].dtype)}))
    assert_load_error(folder, str(folder / WEIGHTS_FILE), "wrong shape", name)


def test_format_1_folders_still_load(kmeans_dir, blobs, tmp_path) -> None:
    def as_format_1(config):
        config["format_version"] = 1
        del config["arrays"]

    model = load_model(copy_model(kmeans_dir, tmp_path / "v1", as_format_1))
    assert (model.predict(blobs) == model.labels_).all()


def test_missing_or_wrong_folder(tmp_path, kmeans_dir) -> None:
    assert_load_error(tmp_path / "nope", "does not exist")
    (tmp_path / "file").write_text("x")
    assert_load_error(tmp_path / "file", "not a folder")
    folder = copy_model(kmeans_dir, tmp_path / "noweights")
    (folder / WEIGHTS_FILE).unlink()
    assert_load_error(folder, f"{WEIGHTS_FILE} is missing")


def test_save_to_a_file_is_refused(blobs, tmp_path) -> None:
    target = tmp_path / "model"
    target.write_text("the user's file")
    with pytest.raises(DeepclustError, match="is a file"):
        KMeans(3, device="cpu").fit(blobs).save(target)
    assert target.read_text() == "the user's file"
