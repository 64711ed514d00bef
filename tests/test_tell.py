"""TELL: centres are the layer's weights, labels are the nearest centre, it matches k-means on
blobs and digits, explanations add up, save/load, the report shows the explanations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, make_blobs

from deepclust.base import load_model
from deepclust.cli import main
from deepclust.errors import DeepclustError
from deepclust.explain.prototypes import assignment_reasons, centre_profiles
from deepclust.heads import KMeansLayer
from deepclust.methods import make_method
from deepclust.metrics import accuracy


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_blobs(400, n_features=6, centers=4, cluster_std=1.5, random_state=0)
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def tell(blobs):
    return make_method("tell", n_clusters=4, random_state=0, device="cpu", epochs=20).fit(blobs[0])


def test_layer_logits_rank_as_distances() -> None:
    g = torch.Generator().manual_seed(0)
    layer = KMeansLayer(torch.randn(5, 3, generator=g), temperature=0.5, scale=2.0)
    x = torch.randn(50, 3, generator=g)
    torch.testing.assert_close(torch.softmax(layer(x), 1), torch.softmax(-layer.sq_distances(x) / 1.0, 1),
                               atol=1e-5, rtol=0)


def test_centres_are_the_weights_and_labels_the_nearest_centre(tell, blobs) -> None:
    X, y = blobs
    np.testing.assert_array_equal(tell.cluster_centers_, tell.layer_.weight.detach().numpy())
    d2 = ((X[:, None, :] - tell.cluster_centers_[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(tell.labels_, d2.argmin(1))
    np.testing.assert_array_equal(tell.predict(X), d2.argmin(1))
    assert (tell.predict_proba(X).argmax(1) == tell.labels_).all()
    assert accuracy(y, tell.labels_) > 0.98
    assert tell.inertia_ == pytest.approx(float(d2.min(1).sum()), rel=1e-4)


def test_training_lowers_the_kmeans_loss_and_ends_near_kmeans() -> None:
    d = load_digits()
    X = d.data.astype(np.float32)
    km = make_method("kmeans", n_clusters=10, random_state=0, device="cpu").fit(X)
    model = make_method("tell", n_clusters=10, random_state=0, device="cpu", epochs=15).fit(X)
    losses = [r["loss"] for r in model.history_["train"]]
    assert losses[-1] < losses[0]
    km_inertia = float(((X - km.cluster_centers_[km.labels_]) ** 2).sum())
    assert model.inertia_ < 1.05 * km_inertia
    assert accuracy(d.target, model.labels_) > 0.7


def test_explanations_add_up(tell, blobs) -> None:
    X, _ = blobs
    names = [f"f{j}" for j in range(X.shape[1])]
    out = tell.explain(X[:20], names, top=X.shape[1])
    assert len(out["clusters"]) == 4 and out["clusters"][0][0]["feature"] in names
    for x, r in zip(X[:20], out["samples"]):
        assert r["cluster"] == tell.predict(x[None])[0]
        assert r["margin"] >= 0
        assert sum(f["contribution"] for f in r["features"]) == pytest.approx(r["margin"], rel=1e-4, abs=1e-4)
    # the centre profile is in standard deviations from the data's mean
    prof = centre_profiles(np.array([[2.0, 0.0]]), np.array([[0.0, 0.0], [2.0, 0.0]]), ["a", "b"])
    assert prof[0][0] == {"feature": "a", "value": 2.0, "z": 1.0}
    one = assignment_reasons(np.zeros((1, 2)), np.array([[1.0, 0.0]]))
    assert one[0]["runner_up"] is None


def test_save_load_gives_identical_predictions(tell, blobs, tmp_path: Path) -> None:
    X, _ = blobs
    again = load_model(tell.save(tmp_path / "tell"))
    np.testing.assert_array_equal(again.predict(X), tell.predict(X))
    np.testing.assert_allclose(again.predict_proba(X), tell.predict_proba(X), atol=1e-6)
    np.testing.assert_array_equal(again.cluster_centers_, tell.cluster_centers_)


def test_bad_settings() -> None:
    with pytest.raises(DeepclustError, match="temperature"):
        make_method("tell", n_clusters=2, temperature=0, device="cpu").fit(np.random.rand(20, 3))


def test_report_shows_centres_and_reasons(tmp_path: Path, capsys) -> None:
    # under 20 rows: the report's map is a PCA, not UMAP (whose compilation takes most of a minute)
    X, y = make_blobs(18, centers=3, n_features=4, cluster_std=0.7, random_state=0)
    path = tmp_path / "table.csv"
    header = "width,height,depth,weight,label"
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", header=header, comments="", fmt="%.5f")
    out = tmp_path / "run"
    assert main(["--quiet", "run", str(path), "--label-column", "label", "--k", "3", "--method", "tell",
                 "--param", "epochs=5", "--device", "cpu", "--out", str(out)]) == 0
    data = json.loads((out / "report_data.json").read_text())
    cluster = data["clusters"][0]
    assert cluster["centre"][0]["feature"] in header.split(",")
    assert cluster["reasons"] and cluster["reasons"][0]["index"] in cluster["typical"]
    html = (out / "report.html").read_text()
    assert "Its centre" in html and "Why its most typical members belong to it" in html
