"""Property-based tests (hypothesis) of the file readers and of ``load_model``.

* Valid generated inputs (CSV/TSV, .npy/.npz, image folders, text files, JSON Lines) read back
  with the same values and the same number of rows.
* Corrupt inputs (random bytes, truncated or mutated files) give a ``DeepclustError`` or a
  dataset, never another exception.
* A saved model folder whose config.json is mutated or whose safetensors file is truncated
  gives a ``DeepclustError`` or a model with identical predictions.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from deepclust.base import load_model
from deepclust.data.readers import NPZ_DATA_KEYS, NPZ_LABEL_KEYS, read_path
from deepclust.errors import DeepclustError

FEW = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

names = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(lambda s: s != "text")
float32s = st.floats(width=32, allow_nan=False, allow_infinity=False)
label_values = st.one_of(st.integers(-5, 5), st.sampled_from(["cat", "dog", "b i r d", "émeu"]))
#: text without line breaks (a reader splits lines on \n and \r)
# (a NUL byte marks a binary file, which the text reader refuses: see test_cli_errors)
one_line = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\x00"), max_size=20)


def _same_grouping(y: np.ndarray, raw: list) -> bool:
    """Labels were encoded consistently: two rows share a code exactly when they share a label."""
    raw = [str(v) for v in raw]
    return all((y[i] == y[j]) == (raw[i] == raw[j]) for i in range(len(raw)) for j in range(len(raw)))


def _read(path: Path, **kwargs):
    """read_path, allowed to fail only with a DeepclustError."""
    try:
        return read_path(path, **kwargs)
    except DeepclustError:
        return None


# ------------------------------------------------------------------------------------ tables
@st.composite
def tables(draw):
    columns = draw(st.lists(names, min_size=1, max_size=5, unique=True))
    n = draw(st.integers(1, 20))
    values = draw(hnp.arrays(np.float32, (n, len(columns)), elements=float32s))
    labels = draw(st.none() | st.lists(label_values, min_size=n, max_size=n))
    return columns, values, labels


@FEW
@given(table=tables(), suffix=st.sampled_from([".csv", ".tsv"]))
def test_table_round_trip(table, suffix):
    columns, values, labels = table
    frame = pd.DataFrame(values.astype(np.float64), columns=columns)
    if labels is not None:
        frame["label_col"] = labels
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"t{suffix}"
        frame.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
        ds = read_path(path, label_column="label_col" if labels is not None else None)
    assert ds.X.shape == values.shape and ds.meta.feature_names == columns
    np.testing.assert_array_equal(ds.X, values)
    if labels is not None:
        assert _same_grouping(ds.y, labels)


@FEW
@given(data=st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
       suffix=st.sampled_from([".csv", ".tsv"]), label=st.none() | st.just("a"))
def test_table_garbage_gives_deepclust_error_or_data(data, suffix, label):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"t{suffix}"
        path.write_bytes(data)
        ds = _read(path, label_column=label)
    assert ds is None or len(ds.X) == (len(ds.y) if ds.y is not None else len(ds.X))


@FEW
@given(table=tables(), holes=st.lists(st.integers(0, 19), min_size=1, max_size=3))
def test_table_with_missing_labels_gives_deepclust_error_or_data(table, holes):
    columns, values, labels = table
    labels = labels or [1] * len(values)
    frame = pd.DataFrame(values, columns=columns)
    frame["label_col"] = [None if i in holes else lab for i, lab in enumerate(labels)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.csv"
        frame.to_csv(path, index=False)
        ds = _read(path, label_column="label_col")
    assert ds is None or len(ds.y) == len(values)


# ------------------------------------------------------------------------------------ arrays
arrays = hnp.arrays(
    st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.bool_]),
    hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=5),
    elements={"allow_nan": False, "allow_infinity": False},
)


@FEW
@given(X=arrays, npz=st.booleans(), key=st.sampled_from(NPZ_DATA_KEYS), with_labels=st.booleans(),
       label_key=st.sampled_from(NPZ_LABEL_KEYS))
def test_array_round_trip(X, npz, key, with_labels, label_key):
    labels = np.arange(len(X)) % 3
    with tempfile.TemporaryDirectory() as tmp:
        if npz:
            path = Path(tmp) / "a.npz"
            np.savez(path, **{key: X, **({label_key: labels} if with_labels else {})})
        else:
            path = Path(tmp) / "a.npy"
            np.save(path, X)
        ds = read_path(path)
        assert ds.X.shape == X.shape and ds.X.dtype == X.dtype
        np.testing.assert_array_equal(np.asarray(ds.X), X)
        if npz and with_labels:
            np.testing.assert_array_equal(ds.y, labels)
        del ds  # a memory-mapped .npy must be closed before its folder is removed


@st.composite
def damaged_array_files(draw):
    X = draw(arrays)
    npz = draw(st.booleans())
    buf = io.BytesIO()
    if npz:
        np.savez(buf, X=X)
    else:
        np.save(buf, X)
    data = bytearray(buf.getvalue())
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data) - 1))]
    else:
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data), ".npz" if npz else ".npy"


@FEW
@given(damaged=damaged_array_files() | st.tuples(st.binary(max_size=300), st.sampled_from([".npy", ".npz"])))
def test_damaged_array_gives_deepclust_error_or_data(damaged):
    data, suffix = damaged
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"a{suffix}"
        path.write_bytes(data)
        ds = _read(path)
        del ds


# ------------------------------------------------------------------------------------ images
@st.composite
def image_sets(draw):
    mode = draw(st.sampled_from(["L", "RGB"]))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    n = draw(st.integers(1, 6))
    shape = (n, h, w) if mode == "L" else (n, h, w, 3)
    pixels = draw(hnp.arrays(np.uint8, shape))
    classes = draw(st.none() | st.lists(st.sampled_from(["a", "b", "c"]), min_size=n, max_size=n))
    return mode, pixels, classes


@FEW
@given(images=image_sets())
def test_image_folder_round_trip(images):
    mode, pixels, classes = images
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "imgs"
        files = []
        for i, px in enumerate(pixels):
            rel = Path(classes[i] if classes else ".") / f"{i:03d}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(px, mode=mode).save(root / rel)
            files.append((rel.as_posix(), i))
        ds = read_path(root)
    order = [i for _, i in sorted(files)]  # the reader reads files in sorted path order
    expected = pixels[order].astype(np.float32) / 255.0
    expected = expected[:, None] if mode == "L" else expected.transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(ds.X, expected)
    if classes:
        assert _same_grouping(ds.y, [classes[i] for i in order])
    else:
        assert ds.y is None


@FEW
@given(valid=image_sets(), data=st.binary(max_size=200), cut=st.floats(0, 1), which=st.integers(0, 5))
def test_damaged_image_gives_deepclust_error_or_data(valid, data, cut, which):
    mode, pixels, _ = valid
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "imgs"
        root.mkdir()
        for i, px in enumerate(pixels):
            Image.fromarray(px, mode=mode).save(root / f"{i:03d}.png")
        victim = root / f"{which % len(pixels):03d}.png"
        good = victim.read_bytes()
        victim.write_bytes(good[:int(cut * len(good))] + data)  # truncated, with garbage appended
        _read(root)


# ------------------------------------------------------------------------------------ texts
@FEW
@given(docs=st.lists(one_line, max_size=15))
def test_text_lines_round_trip(docs):
    expected = [d.strip() for d in docs if d.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "docs.txt"
        path.write_text("\n".join(docs), encoding="utf-8")
        if not expected:
            with pytest.raises(DeepclustError, match="no documents"):
                read_path(path)
            return
        ds = read_path(path)
    assert list(ds.X) == expected


@FEW
@given(records=st.lists(st.tuples(st.text(max_size=20), label_values), min_size=1, max_size=15),
       ascii_only=st.booleans(), blank=st.booleans())
def test_jsonl_round_trip(records, ascii_only, blank):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "docs.jsonl"
        lines = [json.dumps({"text": t, "label": lab}, ensure_ascii=ascii_only) for t, lab in records]
        path.write_text(("\n\n" if blank else "\n").join(lines) + "\n", encoding="utf-8")
        ds = read_path(path, label_column="label")
    assert list(ds.X) == [t for t, _ in records]
    assert _same_grouping(ds.y, [lab for _, lab in records])


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                        max_size=3), max_leaves=6)


@FEW
@given(lines=st.lists(st.one_of(
    st.dictionaries(st.sampled_from(["text", "label", "x"]), json_values, max_size=3).map(json.dumps),
    json_values.map(json.dumps), st.text(max_size=20)), min_size=1, max_size=8),
    raw=st.none() | st.binary(max_size=100), label=st.none() | st.just("label"))
def test_jsonl_garbage_gives_deepclust_error_or_data(lines, raw, label):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "docs.jsonl"
        path.write_bytes(raw if raw is not None else "\n".join(lines).encode("utf-8", "surrogatepass"))
        ds = _read(path, label_column=label)
    assert ds is None or len(ds.X) >= 1


@FEW
@given(data=st.binary(max_size=300))
def test_any_bytes_as_text_file_give_deepclust_error_or_data(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "docs.txt"
        path.write_bytes(data)
        _read(path)


# ------------------------------------------------------------------------------------ load_model
@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """A fitted k-means and a tiny DEC (a network), saved once, with their predictions on X."""
    from deepclust.engines import KMeans
    from deepclust.methods.dec import DEC

    X = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
    out = []
    for model in (KMeans(3, device="cpu"),
                  DEC(3, hidden_dims=(8, 8), embedding_dim=2, pretrain_epochs=2, batch_size=16, max_iter=5,
                      update_interval=5, kmeans_n_init=1, device="cpu")):
        model.fit(X)
        path = model.save(tmp_path_factory.mktemp(type(model).__name__) / "model")
        out.append((path, model.predict_proba(X)))
    return X, out


def _config_mutation():
    """Delete or replace one entry (at depth 1 or 2) of config.json, or truncate its text."""
    # strings from an alphabet that spells no importable module: a mutated "class" imports nothing
    safe_text = st.text(alphabet="0123456789:.- ", max_size=8)
    values = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | safe_text,
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(safe_text, inner, max_size=2),
                          max_leaves=5)
    return st.one_of(st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(0, 10**6), st.none()),
                     st.tuples(st.just("replace"), st.integers(0, 10**6), st.integers(0, 10**6), values),
                     st.tuples(st.just("truncate"), st.integers(0, 10**6), st.none(), st.none()))


def _mutate_config(text: str, mutation) -> str:
    kind, a, b, value = mutation
    if kind == "truncate":
        return text[:a % max(1, len(text))]
    config = json.loads(text)
    key = sorted(config)[a % len(config)]
    parent = config
    if isinstance(config[key], dict) and config[key] and b % 2:  # one level deeper
        parent, key = config[key], sorted(config[key])[b % len(config[key])]
    if kind == "delete":
        del parent[key]
    else:
        parent[key] = value
    return json.dumps(config)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 1), mutation=_config_mutation(), cut=st.none() | st.floats(0, 1, exclude_max=True))
def test_mutated_model_folder_gives_deepclust_error_or_identical_predictions(saved_models, which, mutation, cut):
    X, models = saved_models
    path, expected = models[which]
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "model"
        copy.mkdir()
        weights = (path / "model.safetensors").read_bytes()
        if cut is not None:
            weights = weights[:int(cut * len(weights))]
        (copy / "model.safetensors").write_bytes(weights)
        config = _mutate_config((path / "config.json").read_text(), mutation)
        (copy / "config.json").write_text(config)
        try:
            model = load_model(copy)
            proba = model.predict_proba(X)
        except DeepclustError:
            return
    np.testing.assert_array_equal(proba, expected)
