"""Issue 14: Ctrl-C ends a run without writing it, bad input is one line (exit 2) and never a
traceback, silently wrong results are warned about and recorded, and the CPU thread count
adapts to a loaded machine."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from deepclust.cli import main

SRC = Path(__file__).resolve().parents[1] / "src"


def run_cli(*argv: str) -> int:
    return main(["--quiet", *argv])


def one_line_error(capsys, code: int, *fragments: str) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("deepclust: error:") and len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for frag in fragments:
        assert frag.lower() in err.lower(), err
    return err


def tree_hash(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def strict_json(text: str):
    """json.loads that refuses NaN / Infinity (as JSON.parse in a browser does)."""
    def refuse(name: str):
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


# ------------------------------------------------------------------------------------- interrupts
def start_cli(argv: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
           "DEEPCLUST_CACHE": str(cwd / "cache"), "DEEPCLUST_NO_PROGRESS": "1"}
    return subprocess.Popen([sys.executable, "-m", "deepclust.cli", *argv], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_line(proc: subprocess.Popen, text: str, timeout: float = 180) -> None:
    """Read the child's stdout until a line holds ``text`` (the training loop is running)."""
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        for line in proc.stdout:
            if text in line:
                return
    finally:
        timer.cancel()
    pytest.fail(f"{text!r} never printed: {proc.stderr.read()[-2000:]}")


# DEC that trains "forever" and says so after every round of target updates
ENDLESS_DEC = ["--method", "dec", "-k", "5", "--device", "cpu", "--param", "pretrain_epochs=1",
               "--param", "hidden_dims=[16]", "--param", "max_iter=100000000", "--param", "tol=0",
               "--param", "update_interval=20", "--param", "kmeans_n_init=1", "--param", "verbose=true"]


def test_ctrl_c_in_deep_training_exits_130_and_keeps_the_previous_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run_cli("cluster", "digits", "-k", "3", "--out", str(out)) == 0
    before = tree_hash(out)
    proc = start_cli(["cluster", "digits", *ENDLESS_DEC, "--out", str(out), "--overwrite"], tmp_path)
    wait_for_line(proc, "DEC round")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert tree_hash(out) == before  # the half-trained model did not replace the user's run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "run"]  # no temporary folder left


def test_ctrl_c_stops_bench_worker_at_once(tmp_path: Path) -> None:
    """SIGINT to the bench process alone: before, it waited for the worker's whole fit."""
    records = tmp_path / "r.jsonl"
    proc = start_cli(["bench", "--methods", "dec", "--datasets", "digits", "--seeds", "0", "--out", str(records),
                      *ENDLESS_DEC[ENDLESS_DEC.index("--device"):]], tmp_path)
    wait_for_line(proc, "DEC round")
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("bench kept running after Ctrl-C")
    assert proc.returncode == 130 and time.perf_counter() - t0 < 20
    assert "Traceback" not in err and "leaked" not in err, err  # the worker stopped cleanly
    assert not records.exists() or records.read_text() == ""


def interrupt_after(monkeypatch, module: str, n_calls: int) -> None:
    """Make ``module.train_epochs`` receive Ctrl-C at its ``n_calls``-th mini-batch."""
    from deepclust import training

    def train_epochs(params, loss_fn, *args, **kwargs):
        calls = {"n": 0}

        def loss(idx):
            calls["n"] += 1
            if calls["n"] > n_calls:
                raise KeyboardInterrupt
            return loss_fn(idx)
        return training.train_epochs(params, loss, *args, **kwargs)
    monkeypatch.setattr(f"{module}.train_epochs", train_epochs)


def test_python_user_keeps_a_partial_model_marked_as_such(monkeypatch, one_thread) -> None:
    from deepclust.methods.dec import DEC

    interrupt_after(monkeypatch, "deepclust.methods._autoencoder", 3)
    X = np.random.default_rng(0).normal(size=(120, 6)).astype(np.float32)
    with pytest.warns(RuntimeWarning, match="interrupted"):
        model = DEC(3, hidden_dims=(8,), pretrain_epochs=50, kmeans_n_init=1, device="cpu").fit(X)
    assert model.interrupted_ and model.predict(X).shape == (120,)


def test_pipeline_never_scores_an_interrupted_fit(monkeypatch, one_thread) -> None:
    from deepclust.data import Dataset, DatasetMeta
    from deepclust.pipeline import run_clustering

    interrupt_after(monkeypatch, "deepclust.methods._autoencoder", 3)
    X = np.random.default_rng(0).normal(size=(120, 6)).astype(np.float32)
    ds = Dataset(X, None, DatasetMeta(name="x", modality="array"))
    with pytest.raises(KeyboardInterrupt):
        run_clustering(ds, "dec", 3, params={"hidden_dims": [8], "pretrain_epochs": 50, "kmeans_n_init": 1})


def test_training_loop_lets_ctrl_c_through_inside_interrupts_abort() -> None:
    from deepclust.training import interrupts_abort, train_epochs

    w = torch.nn.Parameter(torch.zeros(1))

    def loss_fn(idx):
        raise KeyboardInterrupt

    with interrupts_abort(), pytest.raises(KeyboardInterrupt):
        train_epochs([w], loss_fn, 10, epochs=2, batch_size=5, device=torch.device("cpu"),
                     generator=torch.Generator().manual_seed(0))
    assert train_epochs([w], loss_fn, 10, epochs=2, batch_size=5, device=torch.device("cpu"),
                        generator=torch.Generator().manual_seed(0)).interrupted  # outside: stops, returns


# ------------------------------------------------------------------------- tracebacks → one line
@pytest.fixture
def files(tmp_path: Path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    (d / "num.csv").write_text("a,b\n1,2\n3,4\n5,6\n7,8\n")
    (d / "header.csv").write_text("a,b\n")
    (d / "bad.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n{oops\n')
    rng = np.random.default_rng(0)
    (d / "random.npy").write_bytes(rng.bytes(4000))
    (d / "binary.txt").write_bytes(rng.bytes(4000) + b"\0")
    (d / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (d / "binary.jsonl").write_bytes(rng.bytes(4000))
    big = rng.normal(size=(20, 3))
    big[4, 1] = 1e40
    np.save(d / "big.npy", big)
    np.save(d / "constant.npy", np.ones((30, 4), np.float32))
    for name, content in (("empty-dict", "{}"), ("a-list", "[1, 2]")):
        (d / name).mkdir()
        (d / name / "report_data.json").write_text(content)
    return d


BAD_INPUTS = [
    (["cluster", "digits", "-k", "3", "--seed", "-1"], ["--seed", "-1"]),
    (["cluster", "digits", "-k", "3", "--seed", "1180591620717411303424"], ["--seed"]),
    (["run", "digits", "--k", "3", "--seed", "-5"], ["--seed"]),
    (["cluster", "digits", "-k", "abc"], ["-k", "abc"]),
    (["cluster", "digits", "-k", "3", "--threads", "0"], ["--threads"]),
    (["cluster", "digits", "-k", "3", "--method", "dec", "--param", "lr=abc"], ["lr", "abc", "float"]),
    (["cluster", "digits", "-k", "3", "--method", "dec", "--param", "pretrain_epochs=2.5"], ["pretrain_epochs", "int"]),
    (["cluster", "digits", "-k", "3", "--method", "dec", "--param", "lrr=0.1"], ["lrr", "did you mean 'lr'"]),
    (["cluster", "{in}/num.csv", "-k", "2", "--text-column", "a"], ["'a'", "numbers"]),
    (["cluster", "{in}/num.csv", "-k", "2", "--encoder-param", "epochs=3"], ["raw", "epochs", "takes none"]),
    (["cluster", "{in}/header.csv", "-k", "2"], ["no rows"]),
    (["cluster", "{in}/bad.jsonl", "-k", "2"], ["line 3"]),
    (["cluster", "{in}/random.npy", "-k", "2"], ["random.npy", "not a valid .npy"]),
    (["cluster", "{in}/binary.txt", "-k", "2"], ["binary.txt", "binary"]),
    (["cluster", "{in}/latin1.txt", "-k", "2"], ["latin1.txt", "UTF-8", "line 1"]),
    (["cluster", "{in}/binary.jsonl", "-k", "2"], ["binary.jsonl"]),
    (["cluster", "{in}/big.npy", "-k", "2"], ["too large for float32", "sample 4"]),
    (["cluster", "{in}/constant.npy", "-k", "2"], ["identical"]),
    (["bench", "--methods", "kmeans", "--datasets", "digits", "--seeds", "0,-1"], ["--seeds"]),
    (["table", "{in}/random.npy"], ["random.npy", "not a JSONL"]),
    (["table", "{in}/num.csv"], ["num.csv:1"]),
    (["report", "{in}/empty-dict"], ["report_data.json", "summary"]),
    (["report", "{in}/a-list"], ["report_data.json"]),
]


@pytest.mark.parametrize("argv, fragments", BAD_INPUTS, ids=[" ".join(a[:2] + a[-2:]) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_and_touches_nothing(files: Path, capsys, argv: list[str],
                                                   fragments: list[str]) -> None:
    out = files.parent / ("out.jsonl" if argv[0] == "bench" else "out")
    argv = [a.replace("{in}", str(files)) for a in argv]
    if argv[0] in ("cluster", "run", "bench"):
        argv += ["--out", str(out)]
    before = tree_hash(files)
    err = one_line_error(capsys, run_cli(*argv), *fragments)
    assert "allow_pickle" not in err  # never advise loading pickled data
    assert tree_hash(files) == before and not out.exists()


# ------------------------------------------------------------------------ silently wrong → said so
def test_k_above_the_distinct_points_is_warned_and_recorded(tmp_path: Path, capsys) -> None:
    path = tmp_path / "two.npy"
    np.save(path, np.repeat(np.eye(2, dtype=np.float32), 6, axis=0))
    assert run_cli("cluster", str(path), "-k", "5", "--out", str(tmp_path / "o")) == 0
    captured = capsys.readouterr()
    assert "deepclust: warning: 5 clusters were asked for but 2 were found" in captured.err
    assert "2 distinct points" in captured.err and "k=5, 2 found" in captured.out
    m = strict_json((tmp_path / "o" / "metrics.json").read_text())
    assert m["n_clusters_found"] == 2 and "2 distinct points" in m["warnings"][0]


def test_hdbscan_reports_the_k_it_found(tmp_path: Path, capsys) -> None:
    assert run_cli("cluster", "digits", "--method", "hdbscan", "-k", "10", "--out", str(tmp_path / "o")) == 0
    captured = capsys.readouterr()
    m = strict_json((tmp_path / "o" / "metrics.json").read_text())
    assert m["n_clusters"] == m["n_clusters_found"] != 10
    assert f"k={m['n_clusters_found']}," in captured.out
    assert "n_clusters=10 is ignored" in captured.err and "n_clusters=10 is ignored" in m["warnings"][0]


def test_metrics_json_has_null_not_nan(tmp_path: Path, capsys) -> None:
    """One cluster: silhouette and Davies-Bouldin are undefined; metrics.json must still be JSON."""
    assert run_cli("cluster", "digits", "-k", "1", "--out", str(tmp_path / "o")) == 0
    assert "silhouette –" in capsys.readouterr().out
    m = strict_json((tmp_path / "o" / "metrics.json").read_text())
    assert m["scores"]["silhouette"] is None


# ----------------------------------------------------------------------------------------- threads
def test_thread_count_follows_the_load(monkeypatch) -> None:
    from deepclust.runtime import choose_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.2, 1.0, 1.0))
    assert choose_threads()[0] == 1  # a 2-core machine busy with one other job
    monkeypatch.setattr(os, "getloadavg", lambda: (0.1, 0.0, 0.0))
    assert choose_threads()[0] == 2
    monkeypatch.setattr(os, "getloadavg", lambda: (7.0, 7.0, 7.0))
    assert choose_threads()[0] == 1
    assert choose_threads(3) == (3, "given")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert choose_threads() == (2, "OMP_NUM_THREADS")


def test_threads_option_is_used_and_recorded(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    try:
        assert run_cli("cluster", "digits", "-k", "3", "--threads", "1", "--out", str(tmp_path / "o")) == 0
    finally:
        torch.set_num_threads(before)
    m = strict_json((tmp_path / "o" / "metrics.json").read_text())
    assert m["threads"] == 1 and m["threads_rule"] == "given" and "1 torch threads" in m["device_name"]
