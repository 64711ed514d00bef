"""The command-line contract: outputs, refusal to overwrite, and one clear error (exit 2) per bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deepclust.cli import main


def run_cli(*argv: str) -> int:
    return main(["--quiet", *argv])


def assert_error(capsys, code: int, *fragments: str) -> None:
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("deepclust: error:"), err
    assert len(err.splitlines()) == 1, f"error must be one line: {err}"
    for frag in fragments:
        assert frag.lower() in err.lower(), err


def test_cluster_digits_writes_outputs(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert run_cli("cluster", "digits", "--method", "kmeans", "--n-clusters", "10", "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert "ACC" in printed and str(out) in printed
    rows = list(csv.DictReader(open(out / "assignments.csv")))
    assert len(rows) == 1797 and set(rows[0]) == {"index", "cluster", "confidence"}
    assert all(0 <= int(r["cluster"]) < 10 and 0 < float(r["confidence"]) <= 1 for r in rows)
    m = json.loads((out / "metrics.json").read_text())
    assert {"acc", "nmi", "ari", "ami", "silhouette", "davies_bouldin"} <= set(m["scores"])
    assert m["scores"]["acc"] > 0.6  # k-means on digits: ~0.7-0.8
    assert m["device"] == "cpu" and "torch" in m["versions"] and m["seconds"]["fit"] > 0
    assert (out / "model" / "model.safetensors").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folder left behind"


def test_cluster_refuses_non_empty_out_unless_overwrite(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    keep = out / "precious.txt"
    keep.write_text("mine")
    code = run_cli("cluster", "digits", "--n-clusters", "3", "--out", str(out))
    assert_error(capsys, code, "not empty", "--overwrite")
    assert keep.read_text() == "mine"
    code = run_cli("cluster", "digits", "--n-clusters", "3", "--out", str(out), "--overwrite")
    assert_error(capsys, code, "not written by deepclust")  # --overwrite replaces only deepclust's own runs
    assert keep.read_text() == "mine"
    keep.unlink()
    assert run_cli("cluster", "digits", "--n-clusters", "3", "--out", str(out)) == 0  # an empty folder is fine
    assert run_cli("cluster", "digits", "--n-clusters", "4", "--out", str(out), "--overwrite") == 0
    assert json.loads((out / "metrics.json").read_text())["n_clusters"] == 4


def test_cluster_json_summary(tmp_path: Path, capsys) -> None:
    assert run_cli("cluster", "digits", "-k", "4", "--method", "gmm", "--out", str(tmp_path / "o"), "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["method"] == "gmm" and summary["n_clusters"] == 4


def test_datasets_and_methods_listings(capsys) -> None:
    assert run_cli("datasets") == 0
    listing = capsys.readouterr().out
    for name in ("digits", "mnist", "mnist-test", "usps", "fashion-mnist", "stackoverflow", "agnews-8k"):
        assert name in listing
    assert run_cli("methods") == 0
    listing = capsys.readouterr().out
    for name in ("kmeans", "gmm", "hdbscan", "agglomerative", "kmedoids"):
        assert name in listing


def test_bench_appends_records_and_prints_table(tmp_path: Path, capsys) -> None:
    out = tmp_path / "b.jsonl"
    code = run_cli("bench", "--methods", "kmeans,gmm", "--datasets", "digits", "--seeds", "0,1", "--out", str(out))
    assert code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 4
    for r in records:
        assert {"method", "dataset", "protocol", "seed", "n", "acc", "nmi", "ari", "seconds", "peak_memory_mb",
                "device", "versions"} <= set(r)
        assert r["n"] == 1797 and 0 < r["acc"] <= 1 and r["peak_memory_mb"] > 0
    table = capsys.readouterr().out
    assert "± " in table and "kmeans" in table and "gmm" in table
    assert run_cli("table", str(out)) == 0


# ---------------------------------------------------------------- bad input: exit 2, one line, nothing written
@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    return tmp_path / "out"


def check_nothing_written(out: Path) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


def test_missing_path(out_dir: Path, capsys) -> None:
    code = run_cli("cluster", str(out_dir.parent / "nope.npy"), "-k", "2", "--out", str(out_dir))
    assert_error(capsys, code, "nope.npy")
    check_nothing_written(out_dir)


def test_unreadable_file(tmp_path: Path, out_dir: Path, capsys) -> None:
    bad = tmp_path / "broken.npy"
    bad.write_bytes(b"this is not numpy")
    code = run_cli("cluster", str(bad), "-k", "2", "--out", str(out_dir))
    assert_error(capsys, code, "broken.npy")
    check_nothing_written(out_dir)


def test_unknown_dataset(out_dir: Path, capsys) -> None:
    code = run_cli("cluster", "mnisst", "-k", "2", "--out", str(out_dir))
    assert_error(capsys, code, "mnisst")
    check_nothing_written(out_dir)


def test_unknown_method(out_dir: Path, capsys) -> None:
    code = run_cli("cluster", "digits", "--method", "kmean", "-k", "2", "--out", str(out_dir))
    assert_error(capsys, code, "unknown method", "kmeans")
    check_nothing_written(out_dir)


def test_empty_input(tmp_path: Path, out_dir: Path, capsys) -> None:
    path = tmp_path / "empty.npy"
    np.save(path, np.zeros((0, 5), dtype=np.float32))
    code = run_cli("cluster", str(path), "-k", "2", "--out", str(out_dir))
    assert_error(capsys, code, "empty")
    check_nothing_written(out_dir)


@pytest.mark.parametrize("bad_value, word", [(np.nan, "nan"), (np.inf, "infinite")])
def test_nan_or_infinite_values(tmp_path: Path, out_dir: Path, capsys, bad_value: float, word: str) -> None:
    X = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    X[7, 2] = bad_value
    path = tmp_path / "x.npy"
    np.save(path, X)
    code = run_cli("cluster", str(path), "-k", "2", "--out", str(out_dir))
    assert_error(capsys, code, word, "sample 7")
    check_nothing_written(out_dir)


def test_inconsistent_image_sizes(tmp_path: Path, out_dir: Path, capsys) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "a.png")
    Image.fromarray(np.zeros((9, 8), np.uint8)).save(folder / "b.png")
    code = run_cli("cluster", str(folder), "-k", "2", "--out", str(out_dir))
    assert_error(capsys, code, "size")
    check_nothing_written(out_dir)


@pytest.mark.parametrize("k, word", [("0", "at least 1"), ("5000", "larger than the number of samples")])
def test_bad_number_of_clusters(out_dir: Path, capsys, k: str, word: str) -> None:
    code = run_cli("cluster", "digits", "-k", k, "--out", str(out_dir))
    assert_error(capsys, code, word)
    check_nothing_written(out_dir)


def test_non_numeric_table_column(tmp_path: Path, out_dir: Path, capsys) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b,colour\n1,2,red\n3,4,blue\n5,6,red\n")
    code = run_cli("cluster", str(path), "-k", "2", "--out", str(out_dir))
    assert_error(capsys, code, "colour")
    check_nothing_written(out_dir)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_where_there_is_none(out_dir: Path, capsys) -> None:
    code = run_cli("cluster", "digits", "-k", "3", "--device", "cuda", "--out", str(out_dir))
    assert_error(capsys, code, "cuda")
    check_nothing_written(out_dir)


def test_bad_param_syntax(out_dir: Path, capsys) -> None:
    code = run_cli("cluster", "digits", "-k", "3", "--param", "oops", "--out", str(out_dir))
    assert_error(capsys, code, "key=value")
    check_nothing_written(out_dir)
