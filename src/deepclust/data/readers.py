"""Reading the user's own data: image folders, NumPy files, tables and texts.

Each reader returns a :class:`~deepclust.data.core.Dataset` and raises
:class:`~deepclust.errors.DeepclustError` naming the file and the problem. Large inputs are not
held twice: ``.npy`` files are memory-mapped, tables and image folders are read into one
pre-allocated float32 array.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from deepclust.data.core import Dataset, DatasetMeta, encode_labels
from deepclust.errors import DeepclustError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
TABLE_SUFFIXES = {".csv", ".tsv", ".parquet", ".pq"}
TEXT_SUFFIXES = {".txt", ".jsonl"}
ARRAY_SUFFIXES = {".npy", ".npz"}
NPZ_DATA_KEYS = ("X", "x", "data", "features", "images", "embeddings")
NPZ_LABEL_KEYS = ("y", "labels", "label", "targets", "target")
CSV_CHUNK_ROWS = 50_000


def read_path(path: str | Path, *, label_column: str | None = None, text_column: str | None = None) -> Dataset:
    """Read a file or folder, choosing the reader from its suffix (a folder is read as images)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DeepclustError(f"input {path} does not exist")
    if path.is_dir():
        return read_image_folder(path)
    suffix = path.suffix.lower()
    if suffix in ARRAY_SUFFIXES:
        return read_array(path)
    if suffix == ".txt":
        return read_text_lines(path)
    if suffix == ".jsonl":
        return read_jsonl(path, text_column=text_column, label_column=label_column)
    if suffix in TABLE_SUFFIXES:
        if text_column is None and "text" in _columns(path):
            text_column = "text"
        if text_column is not None:
            return read_text_table(path, text_column=text_column, label_column=label_column)
        return read_table(path, label_column=label_column)
    if suffix in IMAGE_SUFFIXES:
        raise DeepclustError(f"{path} is a single image; give the folder that holds the images")
    known = sorted(ARRAY_SUFFIXES | TABLE_SUFFIXES | TEXT_SUFFIXES)
    raise DeepclustError(f"cannot read {path}: unknown file type {suffix or '(none)'}; "
                         f"expected a folder of images or one of {', '.join(known)}")


# ---------------------------------------------------------------------------------------------- arrays
def read_array(path: Path) -> Dataset:
    """``.npy`` (memory-mapped) or ``.npz`` (data under X/x/data/features, labels under y/labels)."""
    try:
        if path.suffix.lower() == ".npy":
            X, y = np.load(path, mmap_mode="r", allow_pickle=False), None
        else:
            with np.load(path, allow_pickle=False) as npz:
                keys = list(npz.keys())
                data_key = next((k for k in NPZ_DATA_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
                if data_key is None:
                    raise DeepclustError(f"{path} holds arrays {keys}; name the data array one of {NPZ_DATA_KEYS}")
                X = npz[data_key]
                label_key = next((k for k in NPZ_LABEL_KEYS if k in keys), None)
                y = npz[label_key] if label_key else None
    except DeepclustError:
        raise
    except Exception as exc:  # a damaged header or archive: numpy and zipfile raise many types
        raise DeepclustError(f"cannot read {path} as a NumPy file: {exc}") from exc
    if X.ndim == 0 or (y is not None and y.ndim != 1):
        raise DeepclustError(f"{path} must hold an array of samples (and 1-D labels), got shapes {X.shape}"
                             + (f" and {y.shape}" if y is not None else ""))
    if X.dtype == object or not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise DeepclustError(f"{path} must hold numbers, got values of type {X.dtype}")
    class_names = None
    if y is not None:
        if len(y) != len(X):
            raise DeepclustError(f"{path}: {len(y)} labels for {len(X)} samples")
        y, class_names = encode_labels(y)
    image = X.ndim in (3, 4)
    image_shape = (1, *X.shape[1:]) if X.ndim == 3 else tuple(X.shape[1:]) if X.ndim == 4 else None
    meta = DatasetMeta(name=path.stem, modality="image" if image else "array", image_shape=image_shape,
                       class_names=class_names, source=str(path), n_classes=len(class_names) if class_names else None)
    return Dataset(X, y, meta)


# ---------------------------------------------------------------------------------------------- images
def read_image_folder(folder: Path) -> Dataset:
    """A folder of PNG/JPEG images, optionally one sub-folder per known class (its name is the label).

    All images must have the same size; grayscale stays one channel, anything else becomes RGB.
    """
    from PIL import Image, UnidentifiedImageError

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise DeepclustError(f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); the input is empty")
    by_class = all(len(p.relative_to(folder).parts) == 2 for p in files)
    first = _open_image(files[0])
    size, grayscale = first.size, all(_open_image(p).mode in ("L", "1", "I;16", "I") for p in files[:64])
    channels = 1 if grayscale else 3
    X = np.empty((len(files), channels, size[1], size[0]), dtype=np.float32)
    for i, p in enumerate(files):
        img = _open_image(p)
        if img.size != size:
            raise DeepclustError(f"images in {folder} differ in size: {files[0].name} is {size[0]}×{size[1]} but "
                                 f"{p.relative_to(folder)} is {img.size[0]}×{img.size[1]}; resize them to one size")
        try:
            arr = np.asarray(img.convert("L" if channels == 1 else "RGB"), dtype=np.float32) / 255.0
        except (OSError, UnidentifiedImageError) as exc:
            raise DeepclustError(f"cannot read image {p}: {exc}") from exc
        X[i] = arr[None] if channels == 1 else arr.transpose(2, 0, 1)
    y, class_names = (encode_labels([p.parent.name for p in files]) if by_class else (None, None))
    meta = DatasetMeta(name=folder.name, modality="image", image_shape=tuple(X.shape[1:]), class_names=class_names,
                       source=str(folder), n_classes=len(class_names) if class_names else None)
    return Dataset(X, y, meta, extra={"files": [str(p.relative_to(folder)) for p in files]})


def _open_image(path: Path) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(path)
        img.load()
        return img
    except (OSError, UnidentifiedImageError) as exc:
        raise DeepclustError(f"cannot read image {path}: {exc}") from exc


# ---------------------------------------------------------------------------------------------- tables
def _columns(path: Path) -> list[str]:
    """Column names of a CSV/TSV/Parquet file."""
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return list(pq.ParquetFile(path).schema_arrow.names)
        import pandas as pd

        return [str(c) for c in pd.read_csv(path, sep=_sep(path), nrows=0).columns]
    except Exception as exc:  # pandas/pyarrow raise many types for unreadable files
        raise DeepclustError(f"cannot read {path} as a table: {exc}") from exc


def _sep(path: Path) -> str:
    return "\t" if path.suffix.lower() == ".tsv" else ","


def _iter_table(path: Path, columns: list[str] | None = None):
    """Yield pandas DataFrames of at most CSV_CHUNK_ROWS rows."""
    import pandas as pd

    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(path).iter_batches(batch_size=CSV_CHUNK_ROWS, columns=columns):
                yield batch.to_pandas()
        else:
            yield from pd.read_csv(path, sep=_sep(path), usecols=columns, chunksize=CSV_CHUNK_ROWS)
    except DeepclustError:
        raise
    except Exception as exc:
        raise DeepclustError(f"cannot read {path} as a table: {exc}") from exc


def read_table(path: Path, *, label_column: str | None = None) -> Dataset:
    """Numeric feature columns of a CSV/TSV/Parquet table, plus an optional label column.

    Read in chunks into one pre-allocated float32 array (two passes: count, then fill), so the
    table is never held twice in memory.
    """
    import pandas as pd

    columns = _columns(path)
    if label_column is not None and label_column not in columns:
        raise DeepclustError(f"{path} has no column {label_column!r}; its columns are {', '.join(columns)}")
    features = [c for c in columns if c != label_column]
    if not features:
        raise DeepclustError(f"{path} has no feature columns")
    n = sum(len(chunk) for chunk in _iter_table(path, columns=[columns[0]]))
    X = np.empty((n, len(features)), dtype=np.float32)
    labels: list[Any] = []
    start = 0
    for chunk in _iter_table(path):
        for col in features:
            if not (pd.api.types.is_numeric_dtype(chunk[col]) or pd.api.types.is_bool_dtype(chunk[col])):
                example = chunk[col].dropna().iloc[0] if chunk[col].notna().any() else ""
                raise DeepclustError(f"{path}: column {col!r} is not numeric (e.g. {example!r}); drop it, encode it, "
                                     "or name it with --label-column / --text-column")
        X[start:start + len(chunk)] = chunk[features].to_numpy(dtype=np.float32)
        if label_column is not None:
            labels.extend(chunk[label_column].tolist())
        start += len(chunk)
    y, class_names = encode_labels(labels) if label_column is not None else (None, None)
    meta = DatasetMeta(name=path.stem, modality="table", class_names=class_names, source=str(path),
                       feature_names=features, n_classes=len(class_names) if class_names else None)
    return Dataset(X, y, meta)


# ---------------------------------------------------------------------------------------------- texts
def _text_dataset(path: Path, texts: list[str], raw_labels: list[Any] | None) -> Dataset:
    if not texts:
        raise DeepclustError(f"{path} holds no documents; the input is empty")
    y, class_names = encode_labels(raw_labels) if raw_labels is not None else (None, None)
    meta = DatasetMeta(name=path.stem, modality="text", class_names=class_names, source=str(path),
                       n_classes=len(class_names) if class_names else None)
    return Dataset(np.asarray(texts, dtype=object), y, meta)


def read_text_lines(path: Path) -> Dataset:
    """A ``.txt`` file with one document a line (blank lines are skipped)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            texts = [line.strip() for line in fh if line.strip()]
    except OSError as exc:
        raise DeepclustError(f"cannot read {path}: {exc}") from exc
    return _text_dataset(path, texts, None)


def read_text_table(path: Path, *, text_column: str = "text", label_column: str | None = None) -> Dataset:
    """Documents from the ``text_column`` of a CSV/TSV/Parquet table, labels from ``label_column``."""
    columns = _columns(path)
    for col in (text_column, label_column):
        if col is not None and col not in columns:
            raise DeepclustError(f"{path} has no column {col!r}; its columns are {', '.join(columns)}")
    texts: list[str] = []
    labels: list[Any] | None = [] if label_column else None
    wanted = [text_column] + ([label_column] if label_column else [])
    for chunk in _iter_table(path, columns=wanted):
        texts.extend(chunk[text_column].fillna("").astype(str).tolist())
        if labels is not None:
            labels.extend(chunk[label_column].tolist())
    return _text_dataset(path, texts, labels)


def read_jsonl(path: Path, *, text_column: str | None = None, label_column: str | None = None) -> Dataset:
    """JSON Lines: one object a line with the document under ``text_column`` (default ``text``)."""
    key = text_column or "text"
    texts: list[str] = []
    labels: list[Any] | None = [] if label_column else None
    try:
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                record = json.loads(line)
                if not isinstance(record, dict) or key not in record:
                    raise DeepclustError(f"{path} line {number} has no {key!r} field; name the text field with "
                                         "--text-column")
                texts.append(str(record[key]))
                if labels is not None:
                    if label_column not in record:
                        raise DeepclustError(f"{path} line {number} has no {label_column!r} field")
                    label = record[label_column]
                    if not isinstance(label, (str, int, float)):  # bool is an int
                        raise DeepclustError(f"{path} line {number}: the {label_column!r} field must be a string "
                                             f"or a number, got {json.dumps(label)[:40]}")
                    labels.append(label)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise DeepclustError(f"cannot read {path} as JSON Lines: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DeepclustError(f"cannot read {path}: {exc}") from exc
    return _text_dataset(path, texts, labels)
