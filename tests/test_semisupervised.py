"""Clustering with a little supervision: what each method is for, on generated data.

* a few labels fix a split that k-means gets wrong (seeded and constrained k-means);
* COP-k-means respects every constraint, and says so clearly when it cannot;
* PCKMeans violates fewer constraints as their weight grows;
* transductive few-shot clustering: the Laplacian term keeps neighbours together and, with a few
  labels, beats seeded k-means on real digits;
* scores count only the samples the user did not label or constrain.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from deepclust import metrics
from deepclust.base import load_model
from deepclust.cli import main
from deepclust.engines.cluster_then_label import ClusterThenLabel, match_clusters
from deepclust.engines.constrained import COPKMeans, PCKMeans, SeededKMeans
from deepclust.engines.kmeans import KMeans
from deepclust.engines.tim import TransductiveInfoMax
from deepclust.engines.transductive import TransductiveFewShot
from deepclust.errors import DeepclustError

pytestmark = pytest.mark.usefixtures("one_thread")


def broad_and_two_tight(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """600 points of a broad blob and two tight blobs of 100 close to each other: k-means (k=3) prefers
    to cut the broad blob in two and merge the tight ones (lower inertia), the classes are the blobs."""
    rng = np.random.default_rng(seed)
    X = np.r_[rng.normal(0, 3, (600, 2)), rng.normal(0, 0.3, (100, 2)) + [12, 0],
              rng.normal(0, 0.3, (100, 2)) + [12, 2.5]].astype(np.float32)
    return X, np.repeat([0, 1, 2], [600, 100, 100])


def partial(t: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """``t`` with all but a random ``fraction`` of the samples set to -1 (unlabelled)."""
    rng = np.random.default_rng(seed + 100)
    y = np.full(len(t), -1)
    idx = rng.choice(len(t), int(fraction * len(t)), replace=False)
    y[idx] = t[idx]
    return y


def true_pairs(t: np.ndarray, n_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random pairs, must-link when their classes agree and cannot-link otherwise."""
    pairs = np.random.default_rng(seed + 200).choice(len(t), (n_pairs, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    same = t[pairs[:, 0]] == t[pairs[:, 1]]
    return pairs[same], pairs[~same]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_few_labels_fix_the_split_kmeans_gets_wrong(seed: int) -> None:
    X, t = broad_and_two_tight(seed)
    y = partial(t, 0.02, seed)  # 16 labels of 800
    unlabelled = y < 0
    assert metrics.accuracy(t, KMeans(3, random_state=seed).fit(X).labels_) < 0.6
    for model in (SeededKMeans(3, random_state=seed), SeededKMeans(3, constrained=True, random_state=seed),
                  TransductiveFewShot(3, random_state=seed)):
        model.fit(X, y)
        assert metrics.accuracy(t[unlabelled], model.labels_[unlabelled]) > 0.95
        assert model.n_labelled_ == int((y >= 0).sum())


def test_constrained_kmeans_keeps_the_seeds_and_names_the_classes() -> None:
    X, t = broad_and_two_tight(0)
    y = partial(t, 0.05, 0)
    y[y >= 0] += 10  # any whole numbers are class ids
    wrong = np.flatnonzero(y >= 0)[:3]
    y[wrong] = 10 + (t[wrong] + 1) % 3  # seeds that contradict the data stay where the user put them
    model = SeededKMeans(3, constrained=True).fit(X, y)
    assert model.classes_.tolist() == [10, 11, 12]
    labelled = y >= 0
    assert (model.classes_[model.labels_[labelled]] == y[labelled]).all()
    seeded = SeededKMeans(3, constrained=False).fit(X, y)
    assert (seeded.classes_[seeded.labels_[wrong]] != y[wrong]).any()  # seeded k-means lets them move


def test_cop_kmeans_respects_every_constraint() -> None:
    X, t = broad_and_two_tight(0)
    ml, cl = true_pairs(t, 300, 0)
    labels = KMeans(3).fit(X).labels_
    assert (labels[ml[:, 0]] != labels[ml[:, 1]]).any() or (labels[cl[:, 0]] == labels[cl[:, 1]]).any()
    model = COPKMeans(3).fit(X, must_link=ml, cannot_link=cl)
    lab = model.labels_
    assert (lab[ml[:, 0]] == lab[ml[:, 1]]).all() and (lab[cl[:, 0]] != lab[cl[:, 1]]).all()
    assert model.violations_ == {"must_link": 0, "cannot_link": 0}


def test_cop_kmeans_reports_infeasible_constraints() -> None:
    X, _ = broad_and_two_tight(0)
    triangle = [(0, 1), (1, 2), (0, 2)]  # three samples pairwise apart cannot fit in two clusters
    with pytest.raises(DeepclustError, match="no cluster for sample .* infeasible for k=2"):
        COPKMeans(2).fit(X, cannot_link=triangle)
    COPKMeans(3).fit(X, cannot_link=triangle)  # with three clusters they fit


@pytest.mark.parametrize("seed", [0, 1])
def test_pckmeans_violates_less_as_the_weight_grows(seed: int) -> None:
    X, t = broad_and_two_tight(seed)
    ml, cl = true_pairs(t, 200, seed)
    violated = [sum(PCKMeans(3, weight=w, random_state=seed).fit(X, must_link=ml, cannot_link=cl)
                    .violations_.values()) for w in (0.0, 10.0, 100.0)]
    assert violated[0] > violated[1] > violated[2]
    assert violated[2] <= 0.1 * violated[0]  # greedy single-sample moves may leave a few (as in the paper)


def test_transductive_laplacian_keeps_neighbours_together() -> None:
    from deepclust.engines.neighbors import euclidean_knn

    X, t = broad_and_two_tight(1)
    y = partial(t, 0.02, 1)
    _, knn = euclidean_knn(X, 10)
    cut = []
    for weight in (0.0, 1.0):
        model = TransductiveFewShot(3, laplacian_weight=weight, n_neighbors=10).fit(X, y)
        labels = model.labels_
        cut.append(float((labels[:, None] != labels[knn]).mean()))
        labelled = y >= 0
        assert (model.classes_[labels[labelled]] == y[labelled]).all()  # the labelled points keep their class
    assert cut[1] < 0.5 * cut[0]


@pytest.mark.parametrize("seed", [0, 1])
def test_transductive_beats_seeded_kmeans_on_digits(seed: int) -> None:
    from deepclust.data import load_dataset

    ds = load_dataset("digits")  # scikit-learn's 1,797 8×8 digits, shipped with it
    X = ds.X.reshape(len(ds), -1)
    y = partial(ds.y, 0.05, seed)
    rest = y < 0
    seeded = metrics.accuracy(ds.y[rest], SeededKMeans(10, random_state=seed).fit(X, y).labels_[rest])
    fewshot = metrics.accuracy(ds.y[rest], TransductiveFewShot(10, random_state=seed).fit(X, y).labels_[rest])
    assert fewshot > 0.9 and fewshot > seeded + 0.05


@pytest.mark.parametrize("seed", [0, 1])
def test_tim_raises_mutual_information_and_moves_past_its_prototype_start(seed: int) -> None:
    """TIM's objective at work: from the labelled class means (its start, n_iter=0) the mutual information
    of the unlabelled samples and their predictions more than doubles, and so does accuracy rise; the
    labelled samples keep their class, and predict_proba is a distribution over the clusters."""
    from deepclust.data import load_dataset

    ds = load_dataset("digits")
    X = ds.X.reshape(len(ds), -1)
    y = partial(ds.y, 0.02, seed)
    rest = y < 0
    start = TransductiveInfoMax(10, n_iter=0, random_state=seed).fit(X, y)
    model = TransductiveInfoMax(10, random_state=seed).fit(X, y)
    assert model.mutual_information_ > 2 * start.mutual_information_
    assert metrics.accuracy(ds.y[rest], model.labels_[rest]) > metrics.accuracy(ds.y[rest], start.labels_[rest]) + 0.05
    assert (model.classes_[model.labels_[~rest]] == y[~rest]).all()
    proba = model.predict_proba(X[:50])
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    assert (proba.argmax(1) == model.predict(X[:50])).all()
    assert (model.predict(X[rest]) == model.labels_[rest]).mean() > 0.99  # the classifier it fitted


def test_tim_gives_a_class_without_labels_its_own_cluster() -> None:
    """Labels for two of three groups and n_clusters=3: the third cluster (started k-means++ style) takes
    the unlabelled group, and each labelled group stays with its class."""
    rng = np.random.default_rng(0)
    centres = np.eye(3) * 5 + 1
    X = np.vstack([rng.normal(c, 0.5, (100, 3)) for c in centres])
    t = np.repeat([0, 1, 2], 100)
    y = np.full(300, -1)
    y[[0, 1, 2, 100, 101, 102]] = [0, 0, 0, 1, 1, 1]
    model = TransductiveInfoMax(3, random_state=0).fit(X, y)
    assert list(model.classes_) == [0, 1]
    assert (model.labels_[t == 0] == 0).all() and (model.labels_[t == 1] == 1).all()
    assert (model.labels_[t == 2] == 2).all()


@pytest.mark.parametrize("bad", [{"temperature": 0}, {"lr": float("nan")}, {"ce_weight": -1.0},
                                 {"marginal_weight": True}, {"conditional_weight": "0.1"}, {"n_iter": 1.5}])
def test_tim_refuses_bad_settings_in_one_line(bad: dict) -> None:
    X, t = broad_and_two_tight(0)
    with pytest.raises(DeepclustError, match=f"{next(iter(bad))} must be a (finite|whole) number"):
        TransductiveInfoMax(3, **bad).fit(X, partial(t, 0.05, 0))


def test_match_clusters_undoes_a_permutation_despite_a_wrong_label() -> None:
    """Clusters that are the classes under a permutation: the Hungarian match on a few labels (one of
    them wrong) gives every cluster the slot of its class."""
    rng = np.random.default_rng(0)
    t = rng.integers(0, 5, 500)
    perm = np.array([3, 0, 4, 1, 2])
    y = partial(t, 0.04, 0)
    y[np.flatnonzero(y >= 0)[0]] = (y[np.flatnonzero(y >= 0)[0]] + 1) % 5  # one label wrong
    classes, slot = match_clusters(perm[t], y, 5)
    assert list(classes) == [0, 1, 2, 3, 4]
    assert (classes[slot[perm[t]]] == t).all()


def test_match_clusters_gives_unlabelled_clusters_the_last_slots() -> None:
    clusters = np.repeat([2, 0, 1], 10)
    y = np.full(30, -1)
    y[[0, 1, 10]] = [7, 7, 5]  # cluster 2 holds class 7, cluster 0 class 5, cluster 1 no label
    classes, slot = match_clusters(clusters, y, 3)
    assert list(classes) == [5, 7]
    assert slot[2] == 1 and slot[0] == 0 and slot[1] == 2


def test_cluster_then_label_names_the_labelfree_clusters_and_keeps_the_labels() -> None:
    """Three separated blobs, k-means finds them; one label per blob names each whole blob, and a labelled
    sample whose blob says otherwise keeps its given class."""
    rng = np.random.default_rng(1)
    X = np.vstack([rng.normal(c, 0.3, (100, 2)) for c in ([0, 0], [6, 0], [0, 6])]).astype(np.float32)
    t = np.repeat([0, 1, 2], 100)
    y = np.full(300, -1)
    y[[5, 105, 205]] = [2, 0, 1]  # class ids in another order than the blobs
    y[6] = 1  # a labelled sample whose blob is another class's
    model = ClusterThenLabel(3, method="kmeans", random_state=0).fit(X, y)
    named = model.classes_[model.labels_]
    rest = y < 0
    assert (named[rest] == np.array([2, 0, 1])[t[rest]]).all()
    assert (named[~rest] == y[~rest]).all()
    assert model.agreement_ == pytest.approx(3 / 4)
    assert metrics.accuracy(t, model.cluster_labels_) == 1.0
    assert (model.predict(X[rest]) == model.labels_[rest]).all()


def test_cluster_then_label_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(2)
    X = np.vstack([rng.normal(c, 0.3, (100, 2)) for c in ([0, 0], [6, 0], [0, 6])]).astype(np.float32)
    t = np.repeat([0, 1, 2], 100)
    np.savez(tmp_path / "data.npz", X=X, y=t)
    (tmp_path / "labels.csv").write_text("index,label\n5,b\n105,c\n205,a\n")
    args = ["--quiet", "cluster", str(tmp_path / "data.npz"), "-k", "3", "--method", "cluster-then-label",
            "--labels", str(tmp_path / "labels.csv"), "--threads", "1"]
    assert main(args + ["--param", "method=kmeans", "--out", str(tmp_path / "ok")]) == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "ok" / "metrics.json").read_text())
    assert summary["scores"]["acc"] == 1.0 and summary["supervision"]["n_scored"] == 297
    capsys.readouterr()
    assert main(args + ["--param", "method=tim", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot be the clustering of cluster-then-label" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("method", ["tim", "hdbscan", "cluster-then-label"])
def test_cluster_then_label_refuses_a_clustering_that_cannot_be_named(method: str) -> None:
    X, t = broad_and_two_tight(0)
    with pytest.raises(DeepclustError, match="cannot be the clustering of cluster-then-label"):
        ClusterThenLabel(3, method=method).fit(X, partial(t, 0.05, 0))


def test_no_supervision_is_kmeans() -> None:
    X, _ = broad_and_two_tight(0)
    for model in (SeededKMeans(3), COPKMeans(3), PCKMeans(3)):
        labels = model.fit(X).labels_
        centres = np.stack([X[labels == h].mean(0) for h in range(3)])
        nearest = ((X[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
        assert (nearest == labels).mean() > 0.99  # a fixed point of Lloyd's iteration


@pytest.mark.parametrize("make", [lambda X, t: SeededKMeans(3, constrained=True).fit(X, partial(t, 0.05, 0)),
                                  lambda X, t: COPKMeans(3).fit(X, cannot_link=true_pairs(t, 50, 0)[1]),
                                  lambda X, t: PCKMeans(3).fit(X, must_link=true_pairs(t, 50, 0)[0]),
                                  lambda X, t: TransductiveFewShot(3).fit(X, partial(t, 0.02, 0)),
                                  lambda X, t: TransductiveInfoMax(3).fit(X, partial(t, 0.02, 0)),
                                  lambda X, t: ClusterThenLabel(3, method="kmeans").fit(X, partial(t, 0.02, 0))],
                         ids=["seeded", "cop", "pck", "transductive", "tim", "cluster-then-label"])
def test_save_and_load_predict_the_same(make, tmp_path: Path) -> None:
    X, t = broad_and_two_tight(0)
    model = make(X, t)
    loaded = load_model(model.save(tmp_path / "m"))
    assert (loaded.predict(X) == model.predict(X)).all()
    assert loaded.n_labelled_ == model.n_labelled_ and loaded.n_cannot_link_ == model.n_cannot_link_


def test_contradictions_are_refused() -> None:
    X, _ = broad_and_two_tight(0)
    with pytest.raises(DeepclustError, match="both must-link and cannot-link"):
        COPKMeans(3).fit(X, must_link=[(0, 1)], cannot_link=[(1, 0)])
    with pytest.raises(DeepclustError, match="chain of must-links"):
        PCKMeans(3).fit(X, must_link=[(0, 1), (1, 2)], cannot_link=[(0, 2)])
    with pytest.raises(DeepclustError, match="4 classes but n_clusters=3"):
        SeededKMeans(3).fit(X, np.r_[np.arange(4), -np.ones(796, int)])
    with pytest.raises(DeepclustError, match="does not use constraints"):
        SeededKMeans(3).fit(X, must_link=[(0, 1)])


def test_cli_scores_only_the_samples_not_given(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    X, t = broad_and_two_tight(0)
    np.savez(tmp_path / "data.npz", X=X, y=t)
    y = partial(t, 0.05, 0)
    labelled = np.flatnonzero(y >= 0)
    (tmp_path / "labels.csv").write_text("index,label\n" + "".join(f"{i},{'abc'[y[i]]}\n" for i in labelled))
    code = main(["--quiet", "cluster", str(tmp_path / "data.npz"), "-k", "3", "--method", "constrained-kmeans",
                 "--labels", str(tmp_path / "labels.csv"), "--out", str(tmp_path / "run"), "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    found = np.loadtxt(tmp_path / "run" / "assignments.csv", delimiter=",", skiprows=1, usecols=1).astype(int)
    rest = y < 0
    assert summary["supervision"] == {"n_labelled": len(labelled), "n_classes_labelled": 3, "n_must_link": 0,
                                      "n_cannot_link": 0, "n_scored": int(rest.sum())}
    assert summary["scores"]["acc"] == pytest.approx(metrics.accuracy(t[rest], found[rest]))
    assert "scores on the 760 other samples" in capsys.readouterr().out

    pairs = np.array([(0, 1), (2, 700), (3, 750)])
    (tmp_path / "pairs.csv").write_text("i,j,kind\n0,1,must\n2,700,cannot\n3,750,cannot\n")
    code = main(["--quiet", "cluster", str(tmp_path / "data.npz"), "-k", "3", "--method", "cop-kmeans",
                 "--constraints", str(tmp_path / "pairs.csv"), "--out", str(tmp_path / "run2"), "--threads", "1"])
    assert code == 0
    summary = json.loads((tmp_path / "run2" / "metrics.json").read_text())
    assert summary["supervision"]["n_scored"] == 800 - len(np.unique(pairs))
    assert summary["supervision"]["n_must_link"] == 1 and summary["supervision"]["n_cannot_link"] == 2


def test_labels_column_of_the_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    X, t = broad_and_two_tight(0)
    y = partial(t, 0.02, 0)
    cells = [str(v) if v >= 0 else "" for v in y]
    (tmp_path / "d.csv").write_text("a,b,known\n" + "".join(f"{a},{b},{c}\n" for (a, b), c in zip(X, cells)))
    code = main(["--quiet", "cluster", str(tmp_path / "d.csv"), "-k", "3", "--method", "seeded-kmeans",
                 "--labels-column", "known", "--out", str(tmp_path / "run"), "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["supervision"]["n_labelled"] == int((y >= 0).sum())
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert config["fitted"]["n_features_in_"] == 2  # the labels are not a feature
    found = np.loadtxt(tmp_path / "run" / "assignments.csv", delimiter=",", skiprows=1, usecols=1).astype(int)
    assert metrics.accuracy(t[y < 0], found[y < 0]) > 0.95


def test_labels_file_with_one_column_and_empty_cells(tmp_path: Path) -> None:
    from deepclust.supervision import read_labels_file

    (tmp_path / "l.csv").write_text("label\ncat\n\ndog\n\ncat\n")
    y, names = read_labels_file(tmp_path / "l.csv", 5)
    assert y.tolist() == [0, -1, 1, -1, 0] and names == ["cat", "dog"]
