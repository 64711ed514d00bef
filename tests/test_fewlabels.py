"""few-labels: the semi-supervised method chosen by cross-validation on the given labels (issue 18).

* two concentric rings: only the methods on the UMAP layout follow the rings, and the cross-validation
  says so (label spreading wins, constrained k-means on the features scores near chance);
* a cube cut in half by a plane: no neighbourhood structure, the layout breaks it into pieces, and
  the methods on the features win;
* folds: every class keeps a label in training, a single label is never hidden;
* the labelled samples keep their class, the scores are recorded, a saved model predicts as the fitted
  one; from the command line (``cluster --method few-labels`` and ``run --labels``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from deepclust import metrics
from deepclust.base import load_model
from deepclust.engines.fewlabels import CANDIDATES, FALLBACK, FewLabelsAuto, stratified_folds
from deepclust.engines.spreading import ManifoldLabelSpreading
from deepclust.errors import DeepclustError
from test_semisupervised import partial

pytestmark = pytest.mark.usefixtures("one_thread")
LAYOUT_FAMILY = ("umap-spreading", "transductive-fewshot@umap", "cluster-then-label")
FEATURE_FAMILY = ("constrained-kmeans", "transductive-fewshot", "tim")


def rings(seed: int, sizes: tuple[int, int] = (400, 200)) -> tuple[np.ndarray, np.ndarray]:
    """Points on circles of radius 1 and 2 (noise 0.05): the classes are the rings."""
    rng = np.random.default_rng(seed)
    parts = []
    for radius, m in zip((1.0, 2.0), sizes):
        angle = rng.uniform(0, 2 * np.pi, m)
        parts.append(np.c_[radius * np.cos(angle), radius * np.sin(angle)] + rng.normal(0, 0.05, (m, 2)))
    return np.vstack(parts).astype(np.float32), np.repeat([0, 1], sizes)


def cut_cube(seed: int, n: int = 600, d: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Uniform points in [-1, 1]^d, the class the sign of the first coordinate: one plane, no clusters."""
    X = np.random.default_rng(seed).uniform(-1, 1, (n, d)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(np.int64)


def test_folds_hide_each_label_once_and_keep_every_class_in_training() -> None:
    y = np.full(200, -1)
    y[:60] = np.repeat([0, 1, 2, 3], [30, 20, 2, 8])
    y[100] = 4  # a class with a single label
    fold = stratified_folds(y, 3, seed=0)
    assert (fold[y < 0] == -1).all() and fold[100] == -1
    assert set(fold[(y >= 0) & (y != 4)]) == {0, 1, 2}
    sizes = np.bincount(fold[fold >= 0])
    assert sizes.max() - sizes.min() <= 1
    for f in range(3):
        kept = y[(y >= 0) & (fold != f)]
        assert set(kept) == {0, 1, 2, 3, 4}  # every class keeps a label when fold f is hidden
    assert not (stratified_folds(y, 3, seed=1) == fold).all()  # the seed draws the folds


def test_rings_choose_the_layout_and_keep_the_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import umap

    fits = []
    fit_transform = umap.UMAP.fit_transform
    monkeypatch.setattr(umap.UMAP, "fit_transform",
                        lambda self, *a, **kw: fits.append(1) or fit_transform(self, *a, **kw))
    X, t = rings(0)
    y = partial(t, 0.04, 0)  # 24 labels of 600
    model = FewLabelsAuto(2, random_state=0).fit(X, y)
    assert len(fits) <= 1  # one layout for every candidate and fold (none when an earlier test left it remembered)
    assert set(model.cv_scores_) == set(CANDIDATES) == set(model.cv_seconds_)
    assert all(len(s) == model.n_folds == 5 for s in model.cv_fold_scores_.values())
    assert model.chosen_ in LAYOUT_FAMILY
    assert model.cv_scores_[model.chosen_] == max(model.cv_scores_.values())
    assert model.cv_scores_["constrained-kmeans"] < model.cv_scores_[model.chosen_] - 0.2  # k-means cuts the rings
    labelled = y >= 0
    assert (model.classes_[model.labels_[labelled]] == y[labelled]).all()
    assert metrics.accuracy(t[~labelled], model.labels_[~labelled]) > 0.99
    loaded = load_model(model.save(tmp_path / "m"))
    assert loaded.chosen_ == model.chosen_ and loaded.cv_scores_ == model.cv_scores_
    assert (loaded.predict(X) == model.predict(X)).all()
    assert (model.predict(X) == model.labels_).mean() > 0.98  # new samples: the classes of their neighbours


def test_a_cube_cut_by_a_plane_chooses_the_features() -> None:
    X, t = cut_cube(0)
    y = partial(t, 0.05, 0)
    model = FewLabelsAuto(2, random_state=0).fit(X, y)
    assert model.chosen_ in FEATURE_FAMILY
    assert max(model.cv_scores_[c] for c in FEATURE_FAMILY) > max(model.cv_scores_[c] for c in LAYOUT_FAMILY) + 0.05
    assert metrics.accuracy(t[y < 0], model.labels_[y < 0]) > 0.9


@pytest.mark.parametrize("ctl_wrong, kept", [(0.12, True), (0.25, False)])
def test_the_labelfree_answer_stays_unless_beaten_beyond_one_standard_error(
        monkeypatch: pytest.MonkeyPatch, ctl_wrong: float, kept: bool) -> None:
    """Candidates that predict the 300 hidden labels right except on disjoint random sets: TIM wrong on
    10 % of them, cluster-then-label on another 12 % (a gain of 2 points, within one standard error of
    the paired difference, 2.7 points: the label-free answer is kept) or 25 % (15 points: TIM)."""
    from types import SimpleNamespace

    rng = np.random.default_rng(0)
    n = 900
    t = rng.integers(0, 3, n)
    order = rng.permutation(np.arange(0, n, 3))  # the labelled samples, each hidden once
    wrong = {"tim": order[:30], "cluster-then-label": order[30: 30 + int(ctl_wrong * 300)]}

    def fake_fit(self, name, X, layout, y, seed):
        pred = t.copy()
        pred[wrong[name]] = (t[wrong[name]] + 1) % 3
        return SimpleNamespace(labels_=pred, classes_=np.arange(3)), pred

    monkeypatch.setattr(FewLabelsAuto, "_fit_candidate", fake_fit)
    X = rng.normal(size=(n, 2)).astype(np.float32)
    y = np.where(np.arange(n) % 3 == 0, t, -1)  # 300 labels
    model = FewLabelsAuto(3, candidates=["cluster-then-label", "tim"], random_state=0).fit(X, y)
    assert model.cv_scores_["tim"] > model.cv_scores_["cluster-then-label"]
    margin = model.cv_margin_
    assert margin["best"] == "tim" and margin["over"] == "cluster-then-label"
    assert margin["kept_label_free"] is kept and (margin["gain"] <= margin["standard_error"]) is kept
    assert model.chosen_ == ("cluster-then-label" if kept else "tim")
    plain = FewLabelsAuto(3, candidates=["cluster-then-label", "tim"], prefer_label_free=False, random_state=0)
    assert plain.fit(X, y).chosen_ == "tim" and plain.cv_margin_ is None


def test_one_label_per_class_or_none_falls_back() -> None:
    X, t = rings(1, (200, 100))
    y = np.full(len(t), -1)
    y[[0, 250]] = [0, 1]
    model = FewLabelsAuto(2, candidates=["constrained-kmeans", "umap-spreading"], random_state=0).fit(X, y)
    assert model.chosen_ == FALLBACK and all(v is None for v in model.cv_scores_.values())
    assert list(model.labels_[[0, 250]]) == [0, 1]
    plain = FewLabelsAuto(2, candidates=["constrained-kmeans"], random_state=0).fit(X)
    assert plain.chosen_ == FALLBACK and plain.cv_scores_ == {"constrained-kmeans": None}
    same = ManifoldLabelSpreading(2, random_state=0).fit(X).labels_  # k-means on the layout, smoothed by spreading
    assert (plain.labels_ == same).all()
    with pytest.raises(DeepclustError, match="candidates must be"):
        FewLabelsAuto(2, candidates=["kmeans"]).fit(X, y)


def _labels_file(path: Path, y: np.ndarray) -> Path:
    path.write_text("index,label\n" + "".join(f"{i},{'ab'[y[i]]}\n" for i in np.flatnonzero(y >= 0)))
    return path


def test_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from deepclust.cli import main

    X, t = rings(0)
    np.savez(tmp_path / "data.npz", X=X, y=t)
    y = partial(t, 0.04, 0)
    labels = _labels_file(tmp_path / "labels.csv", y)
    code = main(["--quiet", "cluster", str(tmp_path / "data.npz"), "-k", "2", "--method", "few-labels",
                 "--labels", str(labels), "--out", str(tmp_path / "c"), "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    found = np.loadtxt(tmp_path / "c" / "assignments.csv", delimiter=",", skiprows=1, usecols=1).astype(int)
    assert metrics.accuracy(t[y < 0], found[y < 0]) > 0.99
    cv = json.loads((tmp_path / "c" / "metrics.json").read_text())["chosen_by_cv"]  # why it won, in metrics.json
    assert cv["chosen"] in LAYOUT_FAMILY and set(cv["cv_scores"]) == set(CANDIDATES)

    # `run --labels`: few-labels at k = the number of labelled classes, scored on the unlabelled samples only
    capsys.readouterr()
    code = main(["run", str(tmp_path / "data.npz"), "--labels", str(labels), "--out", str(tmp_path / "r"),
                 "--json", "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert summary["method"] == "few-labels" and summary["n_clusters"] == 2
    assert summary["supervision"]["n_scored"] == int((y < 0).sum())
    assert summary["scores"]["acc"] > 0.99
    assert "cross-validation" in summary["choices"]["method"] and "umap-spreading" in summary["choices"]["method"]

    (tmp_path / "bad.csv").write_text("index,label\n0,a\n99999,b\n")
    code = main(["run", str(tmp_path / "data.npz"), "--labels", str(tmp_path / "bad.csv"), "--out",
                 str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "outside 0" in err
