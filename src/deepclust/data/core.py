"""What every loader returns (:class:`Dataset`) and where data lives (:func:`resolve_data_dir`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepclust.errors import DeepclustError

#: environment variable naming the data folder
DATA_ENV = "DEEPCLUST_DATA"


@dataclass
class DatasetMeta:
    """Facts about a dataset that methods, reports and benchmarks need."""

    name: str
    modality: str  # "image" | "text" | "table" | "array"
    image_shape: tuple[int, int, int] | None = None  # (C, H, W) for images
    class_names: list[str] | None = None
    protocol: str = ""  # e.g. "MNIST-full: train+test, 70,000 images"
    source: str = ""  # where the data was read from
    feature_names: list[str] | None = None
    n_classes: int | None = None


@dataclass
class Dataset:
    """Data ``X`` (float32 N×C×H×W in [0, 1] for images, N×D for tables, a list of str for texts),
    labels ``y`` (int64, or None when unknown) and :class:`DatasetMeta`."""

    X: Any
    y: np.ndarray | None
    meta: DatasetMeta
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.X)

    def __repr__(self) -> str:
        shape = getattr(self.X, "shape", (len(self.X),))
        return f"Dataset({self.meta.name!r}, {self.meta.modality}, X{tuple(shape)}, labels={self.y is not None})"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data folder: ``data_dir`` if given, else ``$DEEPCLUST_DATA``, else the user cache
    (``$XDG_CACHE_HOME/deepclust`` or ``~/.cache/deepclust``)."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "deepclust"


def encode_labels(raw: Any) -> tuple[np.ndarray, list[str]]:
    """Map arbitrary label values to 0..C-1 (sorted, numerically when all are numbers)."""
    values = np.asarray(raw)
    if values.dtype.kind == "f" and np.isnan(values).any():
        missing = np.flatnonzero(np.isnan(values))
        raise DeepclustError(f"{missing.size} labels are missing (the first at sample {missing[0]}); "
                             "fill them in or drop those samples")
    uniques = np.unique(values)
    try:
        uniques = np.array(sorted(uniques, key=lambda v: float(v)))
    except (TypeError, ValueError):
        pass
    index = {v: i for i, v in enumerate(uniques.tolist())}
    return np.fromiter((index[v] for v in values.tolist()), dtype=np.int64, count=len(values)), [str(u) for u in uniques]
