"""Label spreading on the UMAP layout (umap-spreading): what it is for, on generated data.

* two rings of unequal size: UMAP + k-means / GMM without labels cut the large ring (on these
  seeds), 1 % labels spread along the rings separate them on every seed;
* a class the labels never reach (a piece of the layout with no labelled sample) takes its cluster
  from constrained k-means in the layout; a class with no label at all is found as a cluster;
* labelled samples keep their class; a saved model predicts as the fitted one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import make_moons

from deepclust import metrics
from deepclust.base import load_model
from deepclust.engines.manifold import ManifoldClustering
from deepclust.engines.spreading import ManifoldLabelSpreading
from deepclust.errors import DeepclustError
from test_semisupervised import broad_and_two_tight, partial

pytestmark = pytest.mark.usefixtures("one_thread")


def two_rings(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """900 points on a circle of radius 1 and 300 on one of radius 2 (noise 0.05): the classes are the rings."""
    rng = np.random.default_rng(seed)
    parts = []
    for radius, m in ((1.0, 900), (2.0, 300)):
        angle = rng.uniform(0, 2 * np.pi, m)
        parts.append(np.c_[radius * np.cos(angle), radius * np.sin(angle)] + rng.normal(0, 0.05, (m, 2)))
    return np.vstack(parts).astype(np.float32), np.repeat([0, 1], [900, 300])


def test_one_percent_labels_separate_the_rings_the_layout_clustering_cuts() -> None:
    unsupervised, spread = [], []
    for seed in (0, 1):
        X, t = two_rings(seed)
        y = partial(t, 0.01, seed)  # 12 labels of 1,200
        rest = y < 0
        unsupervised.append(min(metrics.accuracy(t, ManifoldClustering(2, clusterer=c, random_state=seed)
                                                 .fit(X).labels_) for c in ("kmeans", "gmm")))
        model = ManifoldLabelSpreading(2, random_state=seed).fit(X, y)
        spread.append(metrics.accuracy(t[rest], model.labels_[rest]))
        labelled = y >= 0
        assert (model.classes_[model.labels_[labelled]] == y[labelled]).all()  # the labelled samples keep their class
        assert model.n_labelled_ == int(labelled.sum())
    assert min(unsupervised) < 0.85  # the premise: without labels the layout's clustering cuts a ring
    assert min(spread) > 0.99


def test_pieces_the_labels_do_not_reach_follow_constrained_kmeans() -> None:
    X, t = make_moons(1000, noise=0.08, random_state=0)
    y = partial(t, 0.01, 0)  # 10 labels; UMAP breaks the moons into several pieces, some without a label
    rest = y < 0
    model = ManifoldLabelSpreading(2, random_state=0).fit(X.astype(np.float32), y)
    assert metrics.accuracy(t[rest], model.labels_[rest]) > 0.99
    assert np.allclose(model.label_distributions_.sum(1), 1.0, atol=1e-4)  # every sample has a distribution


def test_a_class_without_labels_is_found_and_no_labels_is_layout_kmeans(tmp_path: Path) -> None:
    X, t = broad_and_two_tight(0)
    y = partial(t, 0.02, 0)
    y[t == 2] = -1  # the third class gets no label
    model = ManifoldLabelSpreading(3, random_state=0).fit(X, y)
    assert list(model.classes_) == [0, 1]
    assert metrics.accuracy(t[y < 0], model.labels_[y < 0]) > 0.95
    loaded = load_model(model.save(tmp_path / "m"))
    assert (loaded.predict(X) == model.predict(X)).all()
    assert (model.predict(X) == model.labels_).mean() > 0.95  # new samples: the spread labels of their neighbours

    plain = ManifoldLabelSpreading(3, random_state=0).fit(X).labels_
    kmeans = ManifoldClustering(3, clusterer="kmeans", random_state=0).fit(X).labels_
    assert metrics.ari(kmeans, plain) > 0.95


def test_bad_settings_are_refused() -> None:
    X, t = broad_and_two_tight(0)
    with pytest.raises(DeepclustError, match="alpha must be"):
        ManifoldLabelSpreading(3, alpha=1.0).fit(X, partial(t, 0.02, 0))
    with pytest.raises(DeepclustError, match="does not use constraints"):
        ManifoldLabelSpreading(3).fit(X, must_link=[(0, 1)])


def test_from_the_command_line_with_a_labels_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from deepclust.cli import main

    X, t = two_rings(0)
    np.savez(tmp_path / "data.npz", X=X, y=t)
    y = partial(t, 0.01, 0)
    rows = "".join(f"{i},{'ab'[y[i]]}\n" for i in np.flatnonzero(y >= 0))
    (tmp_path / "labels.csv").write_text("index,label\n" + rows)
    code = main(["--quiet", "cluster", str(tmp_path / "data.npz"), "-k", "2", "--method", "umap-spreading",
                 "--labels", str(tmp_path / "labels.csv"), "--out", str(tmp_path / "run"), "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    found = np.loadtxt(tmp_path / "run" / "assignments.csv", delimiter=",", skiprows=1, usecols=1).astype(int)
    assert metrics.accuracy(t[y < 0], found[y < 0]) > 0.99
