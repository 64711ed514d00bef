"""Reading the user's own data: image folders, NumPy files, tables and texts.

Each reader returns a :class:`~deepclust.data.core.Dataset` and raises
:class:`~deepclust.errors.DeepclustError` naming the file and the problem. Large inputs are not
held twice: ``.npy`` files are memory-mapped, tables and image folders are read into one
pre-allocated float32 array.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

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


def read_path(path: str | Path, *, label_column: str | None = None, text_column: str | None = None,
              keep_columns: Sequence[str] = ()) -> Dataset:
    """Read a file or folder, choosing the reader from its suffix (a folder is read as images).
    ``keep_columns`` (tables only) are not features: their cells are kept in ``extra``."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DeepclustError(f"input {path} does not exist")
    suffix = path.suffix.lower()
    if keep_columns and (path.is_dir() or _table_suffix(path) not in TABLE_SUFFIXES):
        raise DeepclustError(f"--labels-column names a column of a table (.csv, .tsv, .parquet); {path} is not one")
    if path.is_dir() or suffix in ARRAY_SUFFIXES or suffix == ".txt":
        refuse_columns(label_column, text_column, _WITHOUT_COLUMNS["folder" if path.is_dir() else suffix], path)
    if path.is_dir():
        return read_image_folder(path)
    suffix = _table_suffix(path)
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
            return read_text_table(path, text_column=text_column, label_column=label_column,
                                   keep_columns=keep_columns)
        return read_table(path, label_column=label_column, keep_columns=keep_columns)
    if suffix in IMAGE_SUFFIXES:
        raise DeepclustError(f"{path} is a single image; give the folder that holds the images")
    known = sorted(ARRAY_SUFFIXES | TABLE_SUFFIXES | TEXT_SUFFIXES)
    raise DeepclustError(f"cannot read {path}: unknown file type {suffix or '(none)'}; "
                         f"expected a folder of images or one of {', '.join(known)}")


#: inputs without named columns, and where their labels come from instead
_WITHOUT_COLUMNS = {
    "folder": "an image folder (labels come from its sub-folders, one per class)",
    ".npy": "a .npy array (labels: save X and y together in a .npz)",
    ".npz": "a .npz archive (labels come from its y/labels array)",
    ".txt": "a .txt file of one document a line (for labels, use a .tsv/.csv with a header, e.g. text<TAB>label, "
            "or .jsonl)",
}


def refuse_columns(label_column: str | None, text_column: str | None, what: str, source: Any) -> None:
    """Column options name columns of tables and .jsonl; anywhere else they would be silently
    ignored, so refuse them in one line that says where labels come from instead."""
    given = [opt for opt, value in (("--label-column", label_column), ("--text-column", text_column)) if value]
    if given:
        raise DeepclustError(f"{' and '.join(given)} only apply to tables (.csv, .tsv, .parquet) and .jsonl files; "
                             f"{source} is {what}")


# ---------------------------------------------------------------------------------------------- arrays
NPY_MAGIC, NPZ_MAGIC = b"\x93NUMPY", b"PK"


def read_array(path: Path) -> Dataset:
    """``.npy`` (memory-mapped) or ``.npz`` (data under X/x/data/features, labels under y/labels).

    Pickled data are never loaded (they can run code)."""
    npy = path.suffix.lower() == ".npy"
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(NPY_MAGIC))
    except OSError as exc:
        raise DeepclustError(f"cannot read {path}: {exc}") from exc
    if not head.startswith(NPY_MAGIC if npy else NPZ_MAGIC):
        raise DeepclustError(f"{path} is not a valid {'.npy' if npy else '.npz'} file (no NumPy "
                             f"{'header' if npy else 'zip archive'} at its start); save it with "
                             f"{'numpy.save' if npy else 'numpy.savez'}")
    try:
        if npy:
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
        if "allow_pickle" in str(exc) or "pickled" in str(exc):
            raise DeepclustError(f"{path} holds Python objects (pickled data), which deepclust does not load: "
                                 "loading them can run code; save a numeric array instead") from exc
        raise DeepclustError(f"{path} is not a valid NumPy file: {exc}") from exc
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
    from PIL import UnidentifiedImageError

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
def _table_suffix(path: Path) -> str:
    """The file type, looking through gzip: ``.csv`` for both ``x.csv`` and ``x.csv.gz``."""
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if suffixes[-2:-1] in ([".csv"], [".tsv"]) and suffixes[-1] == ".gz":
        return suffixes[0]
    return path.suffix.lower()


def _is_parquet(path: Path) -> bool:
    return _table_suffix(path) in (".parquet", ".pq")


def _sep(path: Path) -> str:
    return "\t" if _table_suffix(path) == ".tsv" else ","


def _open_text(path: Path) -> IO[str]:
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace", newline="")
    return open(path, encoding="utf-8", errors="replace", newline="")


@dataclass(frozen=True)
class _Layout:
    """How a delimited file is read: pandas options, and the number of records its lines hold
    (None where that cannot be known from the lines: Parquet, quoted line breaks)."""

    options: dict[str, Any]
    n_records: int | None


def _layout(path: Path) -> _Layout:
    """Decide how to read a CSV/TSV file so that no line is silently merged into another.

    ``.tsv`` is read one record a line without quote handling (a text may begin with ``"``, as 16
    CLINC150 texts do). ``.csv`` is read with CSV quoting, unless a quote that does not close on its
    line would merge lines: then, if every line has the header's number of fields, one record a
    line without quote handling (with a warning), else the file is refused naming the line.
    Quoted line breaks in a well-formed CSV are kept, with a warning saying how many records span
    several lines.
    """
    if _is_parquet(path):
        return _Layout({}, None)
    sep = _sep(path)
    blank = b" \r\n" if sep == "\t" else b" \t\r\n"  # the lines pandas skips as empty
    n_lines, quoted, n_fields = 0, False, 0
    try:
        with (gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb")) as fh:
            for line in fh:
                if line.strip(blank):
                    n_lines += 1
                    if n_lines == 1:
                        n_fields = line.count(sep.encode()) + 1
                    else:
                        quoted = quoted or b'"' in line
    except (OSError, EOFError) as exc:
        raise DeepclustError(f"cannot read {path}: {exc}") from exc
    lines_only = _Layout({"sep": sep, "quoting": csv.QUOTE_NONE}, max(n_lines - 1, 0))
    if sep == "\t" or not quoted:
        return lines_only
    spanning, first, malformed = _quoted_records(path)
    if not spanning and not malformed:
        return _Layout({"sep": sep}, n_lines - 1)
    if _fields_per_line(path) == {n_fields}:
        warnings.warn(f"{path}: CSV quote handling would merge lines into one record (the quote opened on line "
                      f"{first} does not close there); reading one record a line without quote handling",
                      stacklevel=4)
        return lines_only
    if malformed:
        raise DeepclustError(f"{path}: the quote opened on line {first} does not close properly, so CSV quote "
                             f"handling would merge lines, and the lines do not all have {n_fields} fields without "
                             "it; fix the quoting, or save the file as .tsv (read one record a line)")
    warnings.warn(f"{path}: {spanning} record{' spans' if spanning == 1 else 's span'} several lines (quoted line "
                  f"breaks, the first on line {first})", stacklevel=4)
    return _Layout({"sep": sep}, None)


def _quoted_records(path: Path) -> tuple[int, int | None, bool]:
    """Under strict CSV quoting: how many records span several lines, the line where the first (or
    the first malformed quote) begins, and whether a quote is malformed."""
    spanning, first, line = 0, None, 0
    with _open_text(path) as fh:
        reader = csv.reader(fh, strict=True)
        try:
            for row in reader:
                if row and reader.line_num > line + 1:
                    spanning += 1
                    first = first or line + 1
                line = reader.line_num
        except csv.Error:
            return spanning, first or line + 1, True
    return spanning, first, False


def _fields_per_line(path: Path) -> set[int]:
    """The numbers of comma-separated fields on the non-blank lines, quotes ignored."""
    with _open_text(path) as fh:
        return {line.count(",") + 1 for line in fh if line.strip(" \t\r\n")}


def _columns(path: Path, layout: _Layout | None = None) -> list[str]:
    """Column names of a CSV/TSV/Parquet file (by default read as the header of a .tsv or .csv is)."""
    try:
        if _is_parquet(path):
            import pyarrow.parquet as pq

            return list(pq.ParquetFile(path).schema_arrow.names)
        import pandas as pd

        options = layout.options if layout else {"sep": _sep(path)} | (
            {"quoting": csv.QUOTE_NONE} if _sep(path) == "\t" else {})
        with _open_text(path) as fh:  # the header line alone: a quote further down must not matter here
            header = next((line for line in fh if line.strip()), "")
        return [str(c) for c in pd.read_csv(io.StringIO(header), nrows=0, **options).columns]
    except Exception as exc:  # pandas/pyarrow raise many types for unreadable files
        raise DeepclustError(f"cannot read {path} as a table: {exc}") from exc


def _iter_table(path: Path, layout: _Layout, columns: list[str] | None = None, *, as_text: bool = False):
    """Yield pandas DataFrames of at most CSV_CHUNK_ROWS rows; ``as_text`` keeps every cell verbatim
    (no "NA"/"null" turned into missing values)."""
    import pandas as pd

    text_options = {"dtype": str, "keep_default_na": False} if as_text else {}
    try:
        if _is_parquet(path):
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(path).iter_batches(batch_size=CSV_CHUNK_ROWS, columns=columns):
                yield batch.to_pandas()
        else:
            yield from pd.read_csv(path, usecols=columns, chunksize=CSV_CHUNK_ROWS, **layout.options, **text_options)
    except DeepclustError:
        raise
    except Exception as exc:
        raise DeepclustError(f"cannot read {path} as a table: {exc}") from exc


def _check_count(path: Path, layout: _Layout, n_read: int) -> None:
    """Refuse a table whose reading did not give one record per data line."""
    if layout.n_records is not None and n_read != layout.n_records:
        raise DeepclustError(f"{path}: {n_read:,} records were read from {layout.n_records:,} data lines; "
                             "check the file's quoting and delimiters (.tsv is read one record a line)")


def read_table(path: Path, *, label_column: str | None = None, keep_columns: Sequence[str] = ()) -> Dataset:
    """Numeric feature columns of a CSV/TSV/Parquet table, plus an optional label column.

    Read in chunks into one pre-allocated float32 array (two passes: count, then fill), so the
    table is never held twice in memory. ``keep_columns`` (e.g. a train/test ``split`` column) are
    not features: their values are kept in ``extra``.
    """
    import pandas as pd

    layout = _layout(path)
    columns = _columns(path, layout)
    _require_columns(path, columns, [label_column, *keep_columns])
    features = [c for c in columns if c != label_column and c not in keep_columns]
    if not features:
        raise DeepclustError(f"{path} has no feature columns")
    n = sum(len(chunk) for chunk in _iter_table(path, layout, columns=[columns[0]]))
    if n == 0:
        raise DeepclustError(f"{path} has no rows (only a header); the input is empty")
    _check_count(path, layout, n)
    X = np.empty((n, len(features)), dtype=np.float32)
    labels: list[Any] = []
    kept: dict[str, list[Any]] = {c: [] for c in keep_columns}
    start = 0
    for chunk in _iter_table(path, layout):
        for col in features:
            if not (pd.api.types.is_numeric_dtype(chunk[col]) or pd.api.types.is_bool_dtype(chunk[col])):
                example = chunk[col].dropna().iloc[0] if chunk[col].notna().any() else ""
                raise DeepclustError(f"{path}: column {col!r} is not numeric (e.g. {example!r}); drop it, encode it, "
                                     "or name it with --label-column / --text-column")
        block = chunk[features].to_numpy(dtype=np.float64)
        with np.errstate(over="ignore"):  # values beyond float32's range: reported just below
            X[start:start + len(chunk)] = block
        overflow = (np.isfinite(block) & ~np.isfinite(X[start:start + len(chunk)])).any(axis=1)
        if overflow.any():
            raise DeepclustError(f"{path}: data row {start + int(np.argmax(overflow)) + 1} holds values too large "
                                 f"for float32 (the largest is {np.finfo(np.float32).max:.3g}); rescale them")
        if label_column is not None:
            labels.extend(chunk[label_column].tolist())
        for col in keep_columns:
            kept[col].extend(chunk[col].tolist())
        start += len(chunk)
    y, class_names = encode_labels(labels) if label_column is not None else (None, None)
    meta = DatasetMeta(name=path.stem, modality="table", class_names=class_names, source=str(path),
                       feature_names=features, n_classes=len(class_names) if class_names else None)
    return Dataset(X, y, meta, extra={c: np.asarray(v) for c, v in kept.items()})


def _require_columns(path: Path, columns: list[str], wanted: Sequence[str | None]) -> None:
    for col in wanted:
        if col is not None and col not in columns:
            raise DeepclustError(f"{path} has no column {col!r}; its columns are {', '.join(columns)}")


# ---------------------------------------------------------------------------------------------- texts
def _text_dataset(path: Path, texts: list[str], raw_labels: list[Any] | None) -> Dataset:
    if not texts:
        raise DeepclustError(f"{path} holds no documents; the input is empty")
    y, class_names = encode_labels(raw_labels) if raw_labels is not None else (None, None)
    meta = DatasetMeta(name=path.stem, modality="text", class_names=class_names, source=str(path),
                       n_classes=len(class_names) if class_names else None)
    return Dataset(np.asarray(texts, dtype=object), y, meta)


def read_text_lines(path: Path) -> Dataset:
    """A UTF-8 ``.txt`` file with one document a line (blank lines are skipped)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DeepclustError(f"cannot read {path}: {exc}") from exc
    if b"\0" in data:
        raise DeepclustError(f"{path} is a binary file (it holds NUL bytes), not text with one document a line")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise DeepclustError(f"{path} is not UTF-8 text (line {line}, byte {exc.start}); if it is text, save it "
                             "as UTF-8") from exc
    # lines end at \n (or \r\n) only: str.splitlines() would also cut at \x1c-\x1e, \x85, \u2028 inside a text
    return _text_dataset(path, [t.strip() for t in text.split("\n") if t.strip()], None)


def read_text_table(path: Path, *, text_column: str = "text", label_column: str | None = None,
                    keep_columns: Sequence[str] = ()) -> Dataset:
    """Documents from the ``text_column`` of a CSV/TSV/Parquet table, labels from ``label_column``.

    Cells are read verbatim (a text "NA" stays "NA"); ``keep_columns`` are kept in ``extra``.
    """
    import pandas as pd

    layout = _layout(path)
    columns = _columns(path, layout)
    _require_columns(path, columns, [text_column, label_column, *keep_columns])
    texts: list[str] = []
    labels: list[Any] | None = [] if label_column else None
    kept: dict[str, list[Any]] = {c: [] for c in keep_columns}
    wanted = list(dict.fromkeys([text_column, *([label_column] if label_column else []), *keep_columns]))
    for chunk in _iter_table(path, layout, columns=wanted, as_text=True):
        cells = chunk[text_column].fillna("").astype(str).str.strip()
        if cells.ne("").any() and pd.to_numeric(cells, errors="coerce").notna().all():
            raise DeepclustError(f"{path}: --text-column {text_column!r} holds numbers, not documents; "
                                 "leave --text-column out to cluster the numeric columns")
        texts.extend(chunk[text_column].fillna("").astype(str).tolist())
        if labels is not None:
            labels.extend(chunk[label_column].tolist())
        for col in keep_columns:
            kept[col].extend(chunk[col].tolist())
    _check_count(path, layout, len(texts))
    ds = _text_dataset(path, texts, labels)
    ds.extra.update({c: np.asarray(v) for c, v in kept.items()})
    return ds


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
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DeepclustError(f"{path} line {number} is not valid JSON: {exc.msg} (column {exc.colno})"
                                         ) from exc
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
