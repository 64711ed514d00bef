"""Datasets: the built-in ones by name (checksummed, downloaded when missing) and the user's own files.

>>> from deepclust.data import load_dataset
>>> ds = load_dataset("digits")
>>> ds.X.shape, ds.meta.modality
((1797, 1, 8, 8), 'image')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from deepclust.data.builtin import BUILTIN_DATASETS, DatasetInfo, get_builtin, list_datasets, load_dataset, read_idx
from deepclust.data.core import DATA_ENV, Dataset, DatasetMeta, resolve_data_dir
from deepclust.data.readers import read_path, refuse_columns
from deepclust.errors import DeepclustError


def load_input(spec: str | os.PathLike, data_dir: str | Path | None = None, **read_kwargs: Any) -> Dataset:
    """A built-in dataset name or a path to the user's data.

    Built-in names win over a same-named folder in the working directory (write ``./mnist`` for the
    folder); anything with a path separator or a file suffix is read as a path.
    """
    text = str(spec)
    if text.strip().lower() in BUILTIN_DATASETS and not os.sep in text:
        refuse_columns(read_kwargs.get("label_column"), read_kwargs.get("text_column"),
                       "a built-in dataset (it comes with its labels)", text)
        if read_kwargs.get("keep_columns"):
            raise DeepclustError(f"--labels-column names a column of a table (.csv, .tsv, .parquet); {text} is a "
                                 "built-in dataset (give partial labels with --labels FILE)")
        return load_dataset(text, data_dir=data_dir)
    path = Path(text).expanduser()
    if path.exists() or os.sep in text or path.suffix:
        return read_path(path, **read_kwargs)
    get_builtin(text)  # raises "unknown dataset ..." with a suggestion
    raise AssertionError("unreachable")


__all__ = ["BUILTIN_DATASETS", "DATA_ENV", "Dataset", "DatasetInfo", "DatasetMeta", "list_datasets", "load_dataset",
           "load_input", "read_idx", "read_path", "resolve_data_dir"]
