"""Novel-class and generalized category discovery: what each method is for, on generated data.

* NCD (ncd-kmeans, ncd-spectral, pbn; Troisemaine et al. 2024): the number of novel classes among the
  unlabelled samples is recovered, the novel classes are found, the known classes keep their labels;
  the hidden-class cross-validation scores settings on hidden known classes only;
* GCD (gpc; Zhao, Wen & Han 2023): split and merge recover the total number of classes when the
  unlabelled samples hold known and novel classes, from too few or too many components;
* bad input: one clear line, exit status 2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deepclust import metrics
from deepclust.base import load_model
from deepclust.cli import main
from deepclust.engines.discovery import NCDKMeans, NCDSpectralClustering, tune_on_hidden_classes
from deepclust.engines.gpc import GPC
from deepclust.errors import DeepclustError
from deepclust.methods.pbn import PBN

pytestmark = pytest.mark.usefixtures("one_thread")


def blobs(n_classes: int, seed: int, n_per: int = 80, dim: int = 6, spread: float = 12.0) -> tuple[np.ndarray, np.ndarray]:
    """``n_classes`` Gaussian blobs (unit deviation) whose centres are drawn in a cube of side ``spread``."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-spread, spread, (n_classes, dim))
    t = np.repeat(np.arange(n_classes), n_per)
    return (centres[t] + rng.normal(size=(len(t), dim))).astype(np.float32), t


def ncd_split(t: np.ndarray, n_known: int) -> np.ndarray:
    """The NCD setting: the first ``n_known`` classes labelled, the others (novel) unlabelled."""
    return np.where(t < n_known, t, -1)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("make", [lambda: NCDKMeans(device="cpu", k_max=8),
                                  lambda: NCDSpectralClustering(device="cpu", k_max=8),
                                  lambda: PBN(device="cpu", epochs=60, batch_size=64, latent_dim=8, k_max=8)],
                         ids=["ncd-kmeans", "ncd-spectral", "pbn"])
def test_ncd_recovers_the_number_of_novel_classes_and_keeps_the_known(make, seed: int) -> None:
    X, t = blobs(7, seed)
    y = ncd_split(t, 4)
    model = make().fit(X, y)
    novel = y < 0
    assert model.n_novel_ == 3
    assert (model.labels_[~novel] == y[~novel]).all()
    assert set(model.labels_[novel]) <= set(model.novel_classes_) and list(model.novel_classes_) == [4, 5, 6]
    assert metrics.accuracy(t[novel], model.labels_[novel]) > 0.95
    assert (model.predict_novel(X[novel]) == model.labels_[novel]).mean() > 0.95


def test_ncd_count_is_fixed_by_n_clusters_and_class_ids_may_be_any() -> None:
    X, t = blobs(6, 3)
    y = np.where(t < 3, t * 10 + 5, -1)  # known classes 5, 15, 25
    model = NCDKMeans(n_clusters=6, device="cpu").fit(X, y)
    assert model.n_novel_ == 3 and list(model.classes_) == [5, 15, 25, 26, 27, 28]
    assert (model.labels_[y >= 0] == y[y >= 0]).all()
    assert model.predict_proba(X).shape == (len(X), 29)


def test_hidden_class_cross_validation_scores_hidden_known_classes_only() -> None:
    X, t = blobs(7, 4)
    y = ncd_split(t, 4)
    seen = []

    class Spy(NCDKMeans):
        def fit(self, X, y=None, **kw):  # noqa: N803 - scikit-learn's name
            seen.append(np.unique(y[y >= 0]))
            return super().fit(X, y, **kw)

    best, records = tune_on_hidden_classes(Spy(n_novel=3, device="cpu"), {"n_init": [1, 3]}, X, y, n_folds=2)
    assert best["n_init"] in (1, 3) and len(records) == 2 and all(len(r["fold_accs"]) == 2 for r in records)
    assert all(set(s) < {0, 1, 2, 3} and len(s) == 2 for s in seen)  # every fold hides two known classes
    assert max(r["hidden_acc"] for r in records) > 0.95
    tuned = NCDSpectralClustering(n_clusters=7, device="cpu", tune=True, param_grid={"min_dist": [0.3, 0.6]},
                                  cv_folds=2).fit(X, y)
    assert tuned.best_params_["min_dist"] in (0.3, 0.6) and tuned.n_novel_ == 3
    with pytest.raises(DeepclustError, match="at least 2 known classes"):
        NCDKMeans(tune=True, param_grid={"n_init": [1]}).fit(X, np.where(t == 0, 0, -1))


@pytest.mark.parametrize("init", [None, 14])
@pytest.mark.parametrize("seed", [0, 1])
def test_gpc_split_and_merge_find_the_number_of_classes(init: int | None, seed: int) -> None:
    X, t = blobs(8, seed, n_per=120, dim=8)
    rng = np.random.default_rng(seed)
    y = np.where((t < 4) & (rng.random(len(t)) < 0.5), t, -1)  # GCD: half the classes, half their samples
    model = GPC(init_clusters=init, device="cpu").fit(X, y)
    rest = y < 0
    assert model.n_clusters_found_ == 8
    assert (model.labels_[~rest] == y[~rest]).all()
    assert metrics.accuracy(t[rest], model.labels_[rest]) > 0.95
    known_rest = rest & (t < 4)
    assert (model.labels_[known_rest] == t[known_rest]).mean() > 0.95  # unlabelled known samples get their class


@pytest.mark.parametrize("make", [lambda: PBN(device="cpu", epochs=5, batch_size=64, n_novel=3),
                                  lambda: GPC(device="cpu")], ids=["pbn", "gpc"])
def test_save_and_load_predict_the_same(make, tmp_path: Path) -> None:
    X, t = blobs(7, 5)
    model = make().fit(X, ncd_split(t, 4))
    loaded = load_model(model.save(tmp_path / "m"))
    assert (loaded.predict(X) == model.predict(X)).all()
    assert np.allclose(loaded.predict_proba(X), model.predict_proba(X), atol=1e-6)


def test_bad_input_is_one_clear_line() -> None:
    X, t = blobs(5, 6)
    y = ncd_split(t, 3)
    with pytest.raises(DeepclustError, match="leaves no novel class"):
        NCDKMeans(n_clusters=3).fit(X, y)
    with pytest.raises(DeepclustError, match="n_novel must be 'auto' or a whole number"):
        PBN(n_novel=0).fit(X, y)
    with pytest.raises(DeepclustError, match="init_clusters must be a whole number from 3"):
        GPC(init_clusters=2).fit(X, y)
    with pytest.raises(DeepclustError, match=r"0 sample\(s\) are unlabelled"):
        NCDKMeans().fit(X, np.where(t < 5, t, -1))


@pytest.mark.parametrize("method, extra, message", [
    ("gpc", ["--labels", "bad.csv"], "sample index 9999 is outside"),
    ("pbn", ["--labels", "labels.csv", "--param", "n_novel=0"], "n_novel must be"),
    ("ncd-kmeans", ["--constraints", "labels.csv"], "does not use constraints"),
])
def test_cli_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], method: str, extra: list[str],
                               message: str) -> None:
    X, t = blobs(5, 7)
    np.savez(tmp_path / "data.npz", X=X, y=t)
    (tmp_path / "labels.csv").write_text("".join(f"{i},{t[i]}\n" for i in range(0, len(t), 3) if t[i] < 3))
    (tmp_path / "bad.csv").write_text("0,a\n9999,b\n")
    extra = [str(tmp_path / e) if e.endswith(".csv") else e for e in extra]
    code = main(["--quiet", "cluster", str(tmp_path / "data.npz"), "--method", method, *extra,
                 "--out", str(tmp_path / "run"), "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_discovers_with_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    X, t = blobs(6, 8)
    np.savez(tmp_path / "data.npz", X=X, y=t)
    (tmp_path / "labels.csv").write_text("".join(f"{i},{'abc'[t[i]]}\n" for i in range(len(t)) if t[i] < 3))
    code = main(["--quiet", "cluster", str(tmp_path / "data.npz"), "--method", "ncd-kmeans", "--param", "k_max=8",
                 "--labels", str(tmp_path / "labels.csv"), "--out", str(tmp_path / "run"), "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    found = np.loadtxt(tmp_path / "run" / "assignments.csv", delimiter=",", skiprows=1, usecols=1).astype(int)
    assert len(np.unique(found[t >= 3])) == 3 and metrics.accuracy(t[t >= 3], found[t >= 3]) > 0.95
