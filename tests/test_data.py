"""Datasets: built-in loaders on the real files, checksums and downloads, the user's file readers."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepclust.data import DATA_ENV, list_datasets, load_dataset, load_input, read_path, resolve_data_dir
from deepclust.data import builtin
from deepclust.data.download import RemoteFile, locate, md5_of, sha256_of
from deepclust.errors import DeepclustError


# ---------------------------------------------------------------------------------------------- built-in sets
def test_digits_is_embedded() -> None:
    ds = load_dataset("digits")
    assert ds.X.shape == (1797, 1, 8, 8) and ds.X.dtype == np.float32
    assert 0.0 == ds.X.min() and ds.X.max() == 1.0
    assert ds.meta.modality == "image" and ds.meta.n_classes == 10 and np.bincount(ds.y).min() > 170


@pytest.mark.parametrize("name, n, shape", [("mnist", 70000, (1, 28, 28)), ("mnist-test", 10000, (1, 28, 28)),
                                            ("usps", 9298, (1, 16, 16))])
def test_image_sets_match_their_protocol(data_dir: Path, name: str, n: int, shape: tuple) -> None:
    ds = load_dataset(name, data_dir)
    assert ds.X.shape == (n, *shape) and ds.meta.image_shape == shape
    assert ds.X.min() == 0.0 and ds.X.max() == 1.0
    assert set(np.unique(ds.y)) == set(range(10)) and ds.meta.class_names == [str(i) for i in range(10)]
    assert ds.meta.protocol


def test_usps_class_counts_match_the_data_description(data_dir: Path) -> None:
    # zip.info.txt: train 1194 1005 731 658 652 556 664 645 542 644, test 359 264 198 166 200 160 170 147 166 177
    counts = np.bincount(load_dataset("usps", data_dir).y)
    assert counts.tolist() == [1553, 1269, 929, 824, 852, 716, 834, 792, 708, 821]


def test_fashion_mnist_found_in_debian_folder(tmp_path: Path) -> None:
    if not builtin.DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip("dataset-fashion-mnist (Debian) is not installed")
    ds = load_dataset("fashion-mnist", tmp_path)  # empty data folder: falls back to the Debian one
    assert ds.X.shape == (70000, 1, 28, 28) and ds.meta.class_names[9] == "Ankle boot"
    assert np.bincount(ds.y).tolist() == [7000] * 10
    test = load_dataset("fashion-mnist-test", tmp_path)
    assert test.X.shape == (10000, 1, 28, 28) and np.bincount(test.y).tolist() == [1000] * 10
    np.testing.assert_array_equal(test.X, ds.X[60000:])  # the test split is the last 10,000 of the 70,000


@pytest.mark.parametrize("name, n, k", [("stackoverflow", 20000, 20), ("biomedical", 20000, 20),
                                        ("searchsnippets", 12340, 8), ("agnews-8k", 8000, 4)])
def test_short_text_sets(data_dir: Path, name: str, n: int, k: int) -> None:
    ds = load_dataset(name, data_dir)
    assert len(ds) == n and ds.meta.modality == "text" and ds.meta.n_classes == k
    assert all(isinstance(t, str) and t for t in ds.X[:100])


@pytest.mark.parametrize("name, n, k, splits", [("banking77", 13083, 77, {"train": 10003, "test": 3080}),
                                                ("clinc150", 22500, 150, {"train": 15000, "val": 3000, "test": 4500})])
def test_intent_sets_have_every_row_and_their_splits(data_dir: Path, name: str, n: int, k: int, splits: dict) -> None:
    ds = load_dataset(name, data_dir)
    assert len(ds) == n and ds.meta.modality == "text" and ds.meta.n_classes == k and len(ds.meta.class_names) == k
    assert np.bincount(ds.y, minlength=k).min() > 0 and ds.y.dtype == np.int64
    assert dict(zip(*np.unique(ds.extra["split"], return_counts=True))) == splits
    test = load_dataset(f"{name}-test", data_dir)
    assert len(test) == splits["test"] and set(test.extra["split"]) == {"test"} and len(np.unique(test.y)) == k
    full_test = ds.extra["split"] == "test"
    assert test.X.tolist() == ds.X[full_test].tolist() and test.y.tolist() == ds.y[full_test].tolist()
    assert test.meta.class_names == ds.meta.class_names


def test_clinc150_keeps_the_texts_that_begin_with_a_quote(data_dir: Path) -> None:
    ds = load_dataset("clinc150", data_dir)
    quoted = [t for t in ds.X if t.startswith('"')]
    assert len(quoted) == 16 and all("\n" not in t and "\t" not in t for t in quoted)
    assert ds.meta.class_names[ds.y[ds.X.tolist().index('"please set 5 minute timer')]] == "timer"


@pytest.mark.parametrize("name, n, d, k, splits", [
    ("pendigits", 10992, 16, 10, {"train": 7494, "test": 3498}), ("letter", 20000, 16, 26, {"train": 16000, "test": 4000}),
    ("satimage", 6435, 36, 6, {"train": 4435, "test": 2000}), ("optdigits", 5620, 64, 10, {"train": 3823, "test": 1797}),
    ("mfeat", 2000, 649, 10, None)])
def test_uci_tables(data_dir: Path, name: str, n: int, d: int, k: int, splits: dict | None) -> None:
    ds = load_dataset(name, data_dir)
    assert ds.X.shape == (n, d) and ds.X.dtype == np.float32 and np.isfinite(ds.X).all()
    assert ds.meta.modality == "table" and ds.meta.n_classes == k and len(ds.meta.feature_names) == d
    if splits is None:
        assert "split" not in ds.extra
    else:
        assert dict(zip(*np.unique(ds.extra["split"], return_counts=True))) == splits
        assert (ds.extra["split"][:splits["train"]] == "train").all()  # train rows first, as UCI ships them


def test_uci_class_counts_match_the_data_descriptions(data_dir: Path) -> None:
    # tabular/SOURCES.md (from UCI): satimage's classes are 1, 2, 3, 4, 5, 7 (no 6); mfeat has 200 a digit
    sat = load_dataset("satimage", data_dir)
    assert sat.meta.class_names == ["1", "2", "3", "4", "5", "7"]
    assert np.bincount(sat.y[sat.extra["split"] == "test"]).tolist() == [461, 224, 397, 211, 237, 470]
    assert np.bincount(load_dataset("mfeat", data_dir).y).tolist() == [200] * 10
    letter = load_dataset("letter", data_dir)
    assert letter.meta.class_names[0] == "A" and np.bincount(letter.y)[:3].tolist() == [789, 766, 736]


def test_cluster_a_builtin_table_from_the_cli(data_dir: Path, tmp_path: Path, capsys) -> None:
    from deepclust.cli import main

    assert main(["cluster", "satimage", "-k", "6", "--out", str(tmp_path / "out"), "--data-dir", str(data_dir)]) == 0
    assert "satimage (6435 samples, k=6" in capsys.readouterr().out


def test_list_datasets_reports_presence(tmp_path: Path, data_dir: Path) -> None:
    present = {i.name: i.available for i in list_datasets(data_dir)}
    assert present["digits"] and present["mnist"] and present["usps"] and present["stackoverflow"]
    new = ("banking77", "banking77-test", "clinc150", "clinc150-test", "pendigits", "letter", "satimage", "optdigits",
           "mfeat")
    assert all(present[name] for name in new)
    absent = {i.name: i for i in list_datasets(tmp_path)}
    assert not absent["mnist"].available and absent["mnist"].location == str(tmp_path / "mnist")


# ---------------------------------------------------------------------------------------------- data folder
def test_data_dir_precedence(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv(DATA_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert resolve_data_dir() == tmp_path / "cache" / "deepclust"


def test_missing_file_offline_names_file_and_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(builtin, "USPS_FILES", {k: RemoteFile(v.filename, ("http://127.0.0.1:9/nowhere",), v.md5)
                                                for k, v in builtin.USPS_FILES.items()})
    with pytest.raises(DeepclustError, match=r"zip\.train\.gz not found \(looked in .*usps\).*download failed"):
        load_dataset("usps", tmp_path)
    assert not any((tmp_path / "usps").iterdir()), "a failed download must leave no partial file"


def test_download_verifies_and_places_file(tmp_path: Path, data_dir: Path) -> None:
    source = data_dir / "usps" / "zip.test.gz"
    remote = RemoteFile("zip.test.gz", (source.as_uri(),), builtin.USPS_FILES["test"].md5)
    got = locate(remote, [tmp_path / "none"], tmp_path / "dl")
    assert got == tmp_path / "dl" / "zip.test.gz" and md5_of(got) == remote.md5
    bad = RemoteFile("zip.test.gz", (source.as_uri(),), "0" * 32)
    with pytest.raises(DeepclustError, match="corrupt"):
        locate(bad, [tmp_path / "none"], tmp_path / "dl2")
    assert not list((tmp_path / "dl2").iterdir())


def test_repacked_file_is_rebuilt_from_checksummed_originals(tmp_path: Path) -> None:
    # a miniature CLINC150 data_full.json: in-scope splits kept in order, out-of-scope left out, tabs → spaces
    original = tmp_path / "src" / "data_full.json"
    original.parent.mkdir()
    original.write_text(json.dumps({"train": [["set a\ttimer", "timer"]], "val": [['"hey" you', "greeting"]],
                                    "test": [["bye", "goodbye"]], "oos_train": [["meh", "oos"]]}))
    expected = 'label\ttext\tsplit\ntimer\tset a timer\ttrain\ngreeting\t"hey" you\tval\ngoodbye\tbye\ttest\n'
    source = RemoteFile("data_full.json", ("http://127.0.0.1:9/offline", original.as_uri()), sha256=sha256_of(original))
    sha = hashlib.sha256(expected.encode()).hexdigest()
    remote = RemoteFile("clinc150.tsv", (), sha256=sha, sources=(source,), build=builtin._build_clinc150)
    got = locate(remote, [tmp_path / "none"], tmp_path / "dl")
    assert got.read_text() == expected and [p.name for p in (tmp_path / "dl").iterdir()] == ["clinc150.tsv"]
    wrong_original = RemoteFile("data_full.json", (original.as_uri(),), sha256="0" * 64)
    with pytest.raises(DeepclustError, match="data_full.json from file:.* is corrupt"):
        locate(RemoteFile("clinc150.tsv", (), sha256=sha, sources=(wrong_original,), build=builtin._build_clinc150),
               [], tmp_path / "dl2")
    wrong_result = RemoteFile("clinc150.tsv", (), sha256="0" * 64, sources=(source,), build=builtin._build_clinc150)
    with pytest.raises(DeepclustError, match=r"clinc150.tsv from the originals \(data_full.json\) is corrupt: sha256"):
        locate(wrong_result, [], tmp_path / "dl3")
    assert not list((tmp_path / "dl2").iterdir()) and not list((tmp_path / "dl3").iterdir())  # nothing half-built


def test_recompressed_table_passes_by_content(tmp_path: Path, data_dir: Path) -> None:
    (tmp_path / "tabular").mkdir()
    content = gzip.decompress((data_dir / "tabular" / "satimage.csv.gz").read_bytes())
    (tmp_path / "tabular" / "satimage.csv.gz").write_bytes(gzip.compress(content, compresslevel=1))
    assert load_dataset("satimage", tmp_path, download=False).X.shape == (6435, 36)
    (tmp_path / "tabular" / "satimage.csv.gz").write_bytes(gzip.compress(content.replace(b"\n92,", b"\n93,", 1)))
    with pytest.raises(DeepclustError, match="satimage.csv.gz is corrupt: md5"):
        load_dataset("satimage", tmp_path, download=False)


def test_corrupt_local_file_is_refused(tmp_path: Path, data_dir: Path) -> None:
    (tmp_path / "usps").mkdir()
    shutil.copy(data_dir / "usps" / "zip.train.gz", tmp_path / "usps")
    with gzip.open(tmp_path / "usps" / "zip.test.gz", "wt") as fh:
        fh.write("1 0 0\n")
    with pytest.raises(DeepclustError, match="zip.test.gz is corrupt"):
        load_dataset("usps", tmp_path, download=False)


def test_unknown_dataset_suggests_a_name() -> None:
    with pytest.raises(DeepclustError, match="did you mean 'mnist'"):
        load_input("mnsit")


# ---------------------------------------------------------------------------------------------- readers
def test_image_folder_with_class_subfolders(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (6, 5), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    ds = read_path(tmp_path)
    assert ds.X.shape == (6, 1, 6, 5) and ds.X.dtype == np.float32 and 0 <= ds.X.min() and ds.X.max() <= 1
    assert ds.meta.class_names == ["cat", "dog"] and ds.y.tolist() == [0, 0, 0, 1, 1, 1]
    expected = np.asarray(Image.open(tmp_path / "dog" / "1.png"), dtype=np.float32) / 255
    np.testing.assert_allclose(ds.X[4, 0], expected)


def test_flat_rgb_image_folder_has_no_labels(tmp_path: Path) -> None:
    for i in range(4):
        Image.fromarray(np.full((4, 4, 3), i * 20, np.uint8)).save(tmp_path / f"{i}.jpg")
    ds = read_path(tmp_path)
    assert ds.X.shape == (4, 3, 4, 4) and ds.y is None


def test_image_folder_problems(tmp_path: Path) -> None:
    with pytest.raises(DeepclustError, match="no images"):
        read_path(tmp_path)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DeepclustError, match="cannot read image"):
        read_path(tmp_path)


def test_npy_is_memory_mapped_and_npz_labels(tmp_path: Path) -> None:
    X = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "x.npy", X)
    ds = read_path(tmp_path / "x.npy")
    assert isinstance(ds.X, np.memmap) and ds.meta.modality == "array"
    np.savez(tmp_path / "x.npz", X=X, y=np.array(["b", "a", "b", "a"]))
    ds = read_path(tmp_path / "x.npz")
    assert ds.y.tolist() == [1, 0, 1, 0] and ds.meta.class_names == ["a", "b"]
    np.save(tmp_path / "img.npy", np.zeros((2, 5, 5), np.uint8))
    assert read_path(tmp_path / "img.npy").meta.image_shape == (1, 5, 5)


def test_numeric_table_with_label_column(tmp_path: Path, monkeypatch) -> None:
    from deepclust.data import readers

    monkeypatch.setattr(readers, "CSV_CHUNK_ROWS", 2)  # several chunks into one pre-allocated array
    path = tmp_path / "t.csv"
    path.write_text("a,b,kind\n1,2,x\n3,4.5,y\n5,6,x\n7,8,z\n9,10,y\n")
    ds = read_path(path, label_column="kind")
    np.testing.assert_array_equal(ds.X, [[1, 2], [3, 4.5], [5, 6], [7, 8], [9, 10]])
    assert ds.y.tolist() == [0, 1, 0, 2, 1] and ds.meta.feature_names == ["a", "b"]
    with pytest.raises(DeepclustError, match="no column 'label'"):
        read_path(path, label_column="label")


def test_parquet_table(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    path = tmp_path / "t.parquet"
    pd.DataFrame({"f1": [0.5, 1.5, 2.5], "f2": [1, 2, 3], "y": [2, 2, 7]}).to_parquet(path)
    ds = read_path(path, label_column="y")
    assert ds.X.shape == (3, 2) and ds.X.dtype == np.float32 and ds.y.tolist() == [0, 0, 1]


def test_text_inputs(tmp_path: Path) -> None:
    (tmp_path / "d.txt").write_text("first doc\n\nsecond doc\n")
    assert read_path(tmp_path / "d.txt").X.tolist() == ["first doc", "second doc"]
    (tmp_path / "d.tsv").write_text("topic\ttext\nsport\tgoal scored\nnews\tvote held\n")
    ds = read_path(tmp_path / "d.tsv", label_column="topic")
    assert ds.meta.modality == "text" and ds.X.tolist() == ["goal scored", "vote held"] and ds.y.tolist() == [1, 0]
    (tmp_path / "d.csv").write_text("id,body\n1,hello there\n2,bye now\n")
    assert read_path(tmp_path / "d.csv", text_column="body").X.tolist() == ["hello there", "bye now"]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps({"text": t, "tag": i}) for i, t in enumerate("ab")))
    ds = read_path(tmp_path / "d.jsonl", label_column="tag")
    assert ds.X.tolist() == ["a", "b"] and ds.y.tolist() == [0, 1]
    (tmp_path / "bad.jsonl").write_text('{"body": "x"}\n')
    with pytest.raises(DeepclustError, match="line 1 has no 'text' field"):
        read_path(tmp_path / "bad.jsonl")


def test_unknown_file_type_and_single_image(tmp_path: Path) -> None:
    (tmp_path / "x.xyz").write_text("?")
    with pytest.raises(DeepclustError, match="unknown file type .xyz"):
        read_path(tmp_path / "x.xyz")
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(tmp_path / "one.png")
    with pytest.raises(DeepclustError, match="single image"):
        read_path(tmp_path / "one.png")


def test_tsv_text_with_a_leading_quote_stays_one_record_a_line(tmp_path: Path) -> None:
    # CLINC150 has 16 texts that begin with '"'; quote handling glued the following lines into one record
    lines = ["greeting\thello there", 'quote\t"ok google" play music', 'quote\t"where is my phone',
             "greeting\thi", "farewell\tbye now", "farewell\tNA"]
    (tmp_path / "q.tsv").write_text("label\ttext\n" + "\n".join(lines) + "\n")
    ds = read_path(tmp_path / "q.tsv", label_column="label")
    assert ds.X.tolist() == [line.split("\t")[1] for line in lines]  # verbatim, "NA" included
    assert ds.y.tolist() == [1, 2, 2, 1, 0, 0]


def test_csv_whose_quotes_would_merge_lines_is_read_a_line_a_record(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('label,text\na,"where is my phone\nb,hello\nc,"quoted" text\n')
    with pytest.warns(UserWarning, match="would merge lines"):
        ds = read_path(path, text_column="text", label_column="label")
    assert ds.X.tolist() == ['"where is my phone', "hello", '"quoted" text']
    path.write_text('label,text\na,"where, oh where\nb,hello\n')  # no reading keeps every line whole
    for columns in ({"text_column": "text", "label_column": "label"}, {}):
        with pytest.raises(DeepclustError, match=r"line 2.*\.tsv"):
            read_path(path, **columns)


def test_csv_with_quoted_line_breaks_and_commas_is_read_as_csv(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text('id,text\n1,"two\nlines"\n2,"a, b"\n3,plain\n')
    with pytest.warns(UserWarning, match="1 record spans several lines"):
        ds = read_path(path, text_column="text")
    assert ds.X.tolist() == ["two\nlines", "a, b", "plain"]
    path.write_text('a,b\n"1","2"\n3,4\n\n')  # quotes that merge nothing: plain CSV, no warning
    np.testing.assert_array_equal(read_path(path).X, [[1, 2], [3, 4]])
