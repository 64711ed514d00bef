"""The built-in datasets, loaded by name with verified checksums.

Files are looked for in the data folder (:func:`~deepclust.data.core.resolve_data_dir`) and, for
Fashion-MNIST, in Debian's ``/usr/share/datasets/fashion-mnist``; a missing file is downloaded
from its canonical URL when a network is available.
"""

from __future__ import annotations

import difflib
import gzip
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepclust.data.core import Dataset, DatasetMeta, resolve_data_dir
from deepclust.data.download import RemoteFile, locate
from deepclust.errors import DeepclustError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
DIGIT_NAMES = [str(i) for i in range(10)]
FASHION_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"]

_MNIST_URLS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://yann.lecun.com/exdb/mnist/")
_FASHION_URLS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
_USPS_URLS = ("https://hastie.su.domains/ElemStatLearn/datasets/",)

MNIST_FILES = {
    "train-images": RemoteFile("train-images-idx3-ubyte.gz", tuple(u + "train-images-idx3-ubyte.gz" for u in _MNIST_URLS),
                               "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels": RemoteFile("train-labels-idx1-ubyte.gz", tuple(u + "train-labels-idx1-ubyte.gz" for u in _MNIST_URLS),
                               "a25bea736e30d166cdddb491f175f624"),
    "test-images": RemoteFile("t10k-images-idx3-ubyte.gz", tuple(u + "t10k-images-idx3-ubyte.gz" for u in _MNIST_URLS),
                              "2646ac647ad5339dbf082846283269ea"),
    "test-labels": RemoteFile("t10k-labels-idx1-ubyte.gz", tuple(u + "t10k-labels-idx1-ubyte.gz" for u in _MNIST_URLS),
                              "27ae3e4e09519cfbb04c329615203637"),
}
FASHION_FILES = {
    "train-images": RemoteFile("train-images-idx3-ubyte.gz", (_FASHION_URLS[0] + "train-images-idx3-ubyte.gz",),
                               "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
    "train-labels": RemoteFile("train-labels-idx1-ubyte.gz", (_FASHION_URLS[0] + "train-labels-idx1-ubyte.gz",),
                               "9018921c3c673c538a1fc5bad174d6f9"),
    "test-images": RemoteFile("t10k-images-idx3-ubyte.gz", (_FASHION_URLS[0] + "t10k-images-idx3-ubyte.gz",),
                              "8181f5470baa50b63fa0f6fddb340f0a"),
    "test-labels": RemoteFile("t10k-labels-idx1-ubyte.gz", (_FASHION_URLS[0] + "t10k-labels-idx1-ubyte.gz",),
                              "15d484375f8d13e6eb1aabb0c3f46965"),
}
USPS_FILES = {
    "train": RemoteFile("zip.train.gz", (_USPS_URLS[0] + "zip.train.gz",), "a2d376ecc766edab27f0c4621f180f99"),
    "test": RemoteFile("zip.test.gz", (_USPS_URLS[0] + "zip.test.gz",), "ec27c60f11cf4a80de34679dd9108b4d"),
}


@dataclass(frozen=True)
class BuiltinDataset:
    """A named dataset: how to load it and what to list about it."""

    name: str
    description: str
    modality: str
    n_samples: int
    n_classes: int
    folder: str  # sub-folder of the data folder ("" for embedded data)
    files: tuple[RemoteFile, ...]
    load: Callable[[Path | None, bool], Dataset]
    extra_folders: tuple[Path, ...] = ()

    def folders(self, data_dir: Path) -> list[Path]:
        return [data_dir / self.folder, *self.extra_folders]


# ---------------------------------------------------------------------------------------------- readers
def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST's format; gzip or plain) into a uint8 array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    magic = int.from_bytes(raw[:4], "big")
    if magic >> 8 != 0x08:
        raise DeepclustError(f"{path} is not an unsigned-byte IDX file (magic number {magic:#x})")
    ndim = magic & 0xFF
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _idx_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    x = read_idx(images)
    return x, read_idx(labels).astype(np.int64)


def _load_idx_set(name: str, files: dict[str, RemoteFile], folders: list[Path], download_to: Path, download: bool,
                  parts: tuple[str, ...], protocol: str, class_names: list[str]) -> Dataset:
    xs, ys, sources = [], [], []
    for part in parts:
        img = locate(files[f"{part}-images"], folders, download_to, download=download)
        lab = locate(files[f"{part}-labels"], folders, download_to, download=download)
        x, y = _idx_pair(img, lab)
        xs.append(x)
        ys.append(y)
        sources.append(str(img.parent))
    x = np.concatenate(xs) if len(xs) > 1 else xs[0]
    X = (x.astype(np.float32) / 255.0)[:, None]
    meta = DatasetMeta(name=name, modality="image", image_shape=tuple(X.shape[1:]), class_names=class_names,
                       protocol=protocol, source=sorted(set(sources))[0], n_classes=len(class_names))
    return Dataset(X, np.concatenate(ys), meta)


def _mnist(parts: tuple[str, ...], name: str, protocol: str) -> Callable[[Path | None, bool], Dataset]:
    def load(data_dir: Path | None, download: bool) -> Dataset:
        root = resolve_data_dir(data_dir)
        return _load_idx_set(name, MNIST_FILES, [root / "mnist"], root / "mnist", download, parts, protocol,
                             DIGIT_NAMES)
    return load


def _fashion(parts: tuple[str, ...], name: str, protocol: str) -> Callable[[Path | None, bool], Dataset]:
    def load(data_dir: Path | None, download: bool) -> Dataset:
        root = resolve_data_dir(data_dir)
        folders = [root / "fashion-mnist", DEBIAN_FASHION_MNIST]
        return _load_idx_set(name, FASHION_FILES, folders, root / "fashion-mnist", download, parts, protocol,
                             FASHION_NAMES)
    return load


def _usps(data_dir: Path | None, download: bool) -> Dataset:
    root = resolve_data_dir(data_dir)
    xs, ys = [], []
    for part in ("train", "test"):
        path = locate(USPS_FILES[part], [root / "usps"], root / "usps", download=download)
        with gzip.open(path, "rt") as fh:
            table = np.loadtxt(fh, dtype=np.float32)
        ys.append(table[:, 0].astype(np.int64))
        xs.append(table[:, 1:])
    X = ((np.concatenate(xs) + 1.0) / 2.0).clip(0.0, 1.0).reshape(-1, 1, 16, 16)
    meta = DatasetMeta(name="usps", modality="image", image_shape=(1, 16, 16), class_names=DIGIT_NAMES,
                       protocol="USPS 9,298 (zip.train + zip.test, as DEC/IDEC/N2D); DEPICT/JULE used an 11k variant",
                       source=str(root / "usps"), n_classes=10)
    return Dataset(X, np.concatenate(ys), meta)


def _digits(data_dir: Path | None, download: bool) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    X = (bunch.images.astype(np.float32) / 16.0)[:, None]
    meta = DatasetMeta(name="digits", modality="image", image_shape=(1, 8, 8), class_names=DIGIT_NAMES,
                       protocol="scikit-learn load_digits, all 1,797 images", source="scikit-learn (embedded)",
                       n_classes=10)
    return Dataset(X, bunch.target.astype(np.int64), meta)


SHORT_TEXT_ORIGINS = {
    "stackoverflow": "STC² StackOverflow titles (Xu et al. 2017)",
    "biomedical": "STC² Biomedical titles (Xu et al. 2017)",
    "searchsnippets": "SearchSnippets (Phan et al. 2008)",
    "agnews-8k": "AG News 8k subset (as used by SCCL, Zhang et al. NAACL 2021)",
}


def _short_text(name: str) -> Callable[[Path | None, bool], Dataset]:
    def load(data_dir: Path | None, download: bool) -> Dataset:
        from deepclust.data.readers import read_text_table

        root = resolve_data_dir(data_dir)
        path = locate(RemoteFile(f"{name}.tsv", ()), [root / "short-text"], root / "short-text", download=False)
        ds = read_text_table(path, text_column="text", label_column="label")
        ds.meta.name = name
        ds.meta.protocol = f"{SHORT_TEXT_ORIGINS[name]}: all {len(ds):,} texts"
        return ds
    return load


BUILTIN_DATASETS: dict[str, BuiltinDataset] = {d.name: d for d in [
    BuiltinDataset("digits", "scikit-learn's 8×8 handwritten digits (embedded, no file needed)", "image", 1797, 10,
                   "", (), _digits),
    BuiltinDataset("mnist", "MNIST-full: all 70,000 28×28 digits (train+test)", "image", 70000, 10, "mnist",
                   tuple(MNIST_FILES.values()), _mnist(("train", "test"), "mnist", "MNIST-full: train+test, 70,000 images")),
    BuiltinDataset("mnist-test", "MNIST-test: the 10,000 test digits", "image", 10000, 10, "mnist",
                   (MNIST_FILES["test-images"], MNIST_FILES["test-labels"]),
                   _mnist(("test",), "mnist-test", "MNIST-test: the 10,000 test images")),
    BuiltinDataset("usps", "USPS 16×16 digits, 9,298 images (zip.train + zip.test)", "image", 9298, 10, "usps",
                   tuple(USPS_FILES.values()), _usps),
    BuiltinDataset("fashion-mnist", "Fashion-MNIST: 70,000 28×28 clothing images (train+test)", "image", 70000, 10,
                   "fashion-mnist", tuple(FASHION_FILES.values()),
                   _fashion(("train", "test"), "fashion-mnist", "Fashion-MNIST: train+test, 70,000 images"),
                   (DEBIAN_FASHION_MNIST,)),
    BuiltinDataset("fashion-mnist-test", "Fashion-MNIST-test: the 10,000 test images", "image", 10000, 10,
                   "fashion-mnist", (FASHION_FILES["test-images"], FASHION_FILES["test-labels"]),
                   _fashion(("test",), "fashion-mnist-test", "Fashion-MNIST-test: the 10,000 test images"),
                   (DEBIAN_FASHION_MNIST,)),
    BuiltinDataset("stackoverflow", "StackOverflow question titles, 20 tags", "text", 20000, 20, "short-text",
                   (RemoteFile("stackoverflow.tsv", ()),), _short_text("stackoverflow")),
    BuiltinDataset("biomedical", "Biomedical paper titles (PubMed), 20 topics", "text", 20000, 20, "short-text",
                   (RemoteFile("biomedical.tsv", ()),), _short_text("biomedical")),
    BuiltinDataset("searchsnippets", "web search snippets, 8 domains", "text", 12340, 8, "short-text",
                   (RemoteFile("searchsnippets.tsv", ()),), _short_text("searchsnippets")),
    BuiltinDataset("agnews-8k", "AG News subset, 4 topics (lower-cased, stop words removed)", "text", 8000, 4,
                   "short-text", (RemoteFile("agnews-8k.tsv", ()),), _short_text("agnews-8k")),
]}


def get_builtin(name: str) -> BuiltinDataset:
    """Look up a built-in dataset, suggesting the closest name when it is misspelt."""
    key = name.strip().lower()
    if key not in BUILTIN_DATASETS:
        close = difflib.get_close_matches(key, BUILTIN_DATASETS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise DeepclustError(f"unknown dataset {name!r}{hint} Built-in datasets: {', '.join(BUILTIN_DATASETS)} "
                             "(or give a path to a file or folder)")
    return BUILTIN_DATASETS[key]


def load_dataset(name: str, data_dir: str | Path | None = None, *, download: bool = True) -> Dataset:
    """Load a built-in dataset by name (see :data:`BUILTIN_DATASETS`), verifying checksums."""
    spec = get_builtin(name)
    return spec.load(Path(data_dir) if data_dir is not None else None, download)


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    modality: str
    n_samples: int
    n_classes: int
    available: bool
    location: str


def list_datasets(data_dir: str | Path | None = None) -> list[DatasetInfo]:
    """Every built-in dataset and whether its files are present locally (no checksum, no download)."""
    root = resolve_data_dir(data_dir)
    infos = []
    for spec in BUILTIN_DATASETS.values():
        if not spec.files:
            infos.append(DatasetInfo(spec.name, spec.description, spec.modality, spec.n_samples, spec.n_classes,
                                     True, "embedded"))
            continue
        found = next((f for f in spec.folders(root) if all((f / r.filename).is_file() for r in spec.files)), None)
        infos.append(DatasetInfo(spec.name, spec.description, spec.modality, spec.n_samples, spec.n_classes,
                                 found is not None, str(found or spec.folders(root)[0])))
    return infos
