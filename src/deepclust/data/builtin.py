"""The built-in datasets, loaded by name with verified checksums.

Files are looked for in the data folder (:func:`~deepclust.data.core.resolve_data_dir`) and, for
Fashion-MNIST, in Debian's ``/usr/share/datasets/fashion-mnist``; a missing file is downloaded
from its canonical URL when a network is available. The intent sets and the UCI tables are
lossless repacks (one file a set, with a ``split`` column): a missing one is rebuilt from the
checksummed originals (see ``short-text/SOURCES-intent.md`` and ``tabular/SOURCES.md`` in the
project's data folder for their provenance).
"""

from __future__ import annotations

import csv
import difflib
import gzip
import itertools
import json
from collections.abc import Callable, Iterable
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
_UCI = "https://archive.ics.uci.edu/ml/machine-learning-databases/"


def _github(repo: str, commit: str, path: str) -> str:
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


USPS_FILES = {
    "train": RemoteFile("zip.train.gz", (_USPS_URLS[0] + "zip.train.gz",), "a2d376ecc766edab27f0c4621f180f99"),
    "test": RemoteFile("zip.test.gz", (_USPS_URLS[0] + "zip.test.gz",), "ec27c60f11cf4a80de34679dd9108b4d"),
}


# ------------------------------------------------------------ rebuilding the repacked files from the originals
def _intent_tsv(rows: Iterable[tuple[str, str, str]]) -> bytes:
    """``label<TAB>text<TAB>split`` lines; a tab, CR or LF inside a text becomes one space."""
    spaces = str.maketrans("\t\r\n", "   ")
    lines = ["label\ttext\tsplit", *(f"{label}\t{text.translate(spaces)}\t{split}" for label, text, split in rows)]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _build_banking77(paths: list[Path]) -> bytes:
    """PolyAI's ``train.csv`` and ``test.csv`` (columns ``text,category``) → one TSV, train first."""
    rows: list[tuple[str, str, str]] = []
    for path, split in zip(paths, ("train", "test")):
        with open(path, encoding="utf-8", newline="") as fh:
            rows += [(r["category"], r["text"], split) for r in csv.DictReader(fh)]
    return _intent_tsv(rows)


def _build_clinc150(paths: list[Path]) -> bytes:
    """``data_full.json``'s in-scope ``train``, ``val`` and ``test`` pairs (the out-of-scope ones are left out)."""
    data = json.loads(paths[0].read_text(encoding="utf-8"))
    return _intent_tsv((intent, text, split) for split in ("train", "val", "test") for text, intent in data[split])


def _csv_gz(n_features: int, rows: Iterable[list[str]], split: bool) -> bytes:
    header = [f"f{i}" for i in range(n_features)] + ["label"] + (["split"] if split else [])
    text = "\n".join(",".join(row) for row in itertools.chain([header], rows)) + "\n"
    return gzip.compress(text.encode("ascii"), mtime=0)


def _uci_table(n_features: int, sep: str | None = ",", label_first: bool = False) -> Callable[[list[Path]], bytes]:
    """A UCI table (one file, or train then test) → ``f0..,label[,split]`` CSV.gz, values trimmed."""
    def build(paths: list[Path]) -> bytes:
        def rows():
            for path, split in zip(paths, ("train", "test")):
                for line in path.read_text(encoding="ascii").splitlines():
                    if line.strip():
                        values = [v.strip() for v in line.split(sep)]
                        values = values[1:] + values[:1] if label_first else values
                        yield values + ([split] if len(paths) > 1 else [])
        return _csv_gz(n_features, rows(), split=len(paths) > 1)
    return build


def _build_mfeat(paths: list[Path]) -> bytes:
    """The six views (``;``-separated, one header line each) side by side; 200 rows a digit, in order."""
    views = [[[v.strip() for v in line.split(";")] for line in path.read_text(encoding="ascii").splitlines()[1:]
              if line.strip()] for path in paths]
    rows = ([*itertools.chain.from_iterable(view[i] for view in views), str(i // 200)] for i in range(len(views[0])))
    return _csv_gz(sum(len(view[0]) for view in views), rows, split=False)


def _original(name: str, sha256: str, *urls: str) -> RemoteFile:
    return RemoteFile(name, urls, sha256=sha256)


_POLYAI = ("PolyAI-LDN/task-specific-datasets", "57ec275d8078af65b7731c2a98be812d844a6d6b")
_MOW = ("kgolofit/MOW-14Z", "f2596d1bdc2eec1bdd546cf9da0bd3f47d438f6a")
_SAT = ("dirichletcal/experiments_neurips", "634337e6690e3508e2f57214a931ac4a96ea70f6")
_OPT = ("vishalburri/BACKPROPAGATION-NN", "17696d7874895e421d2b7c6d606b1b473c6accb6")
_MFEAT = ("bupe1800/bupe", "f4f2e8472b7de71b4c59fe7e678384e5607bf03e")
INTENT_FILES = {
    "banking77": RemoteFile(
        "banking77.tsv", (), sha256="308511bfc5f2ac5169f9dde953e10e934825f569b00a72914f35e232faa5fffe",
        sources=(_original("train.csv", "b06e26ac675513959a63135f11b94ea7786ed02da65db93a5650d8838cbc664b",
                           _github(*_POLYAI, "banking_data/train.csv")),
                 _original("test.csv", "d12d6e3bc4c3103966ae786dc435913c0c563dfa328f5a3646d0e62cfeeb474d",
                           _github(*_POLYAI, "banking_data/test.csv"))),
        build=_build_banking77),
    "clinc150": RemoteFile(
        "clinc150.tsv", (), sha256="06d62dc5f47c77b457d88e589b36a58488aad2932543a406fa5bc0f599594a0a",
        sources=(_original("data_full.json", "36923c3705a59e08fe9c3883d8bc2dd966ef93e22cb78ac41171782a698d56e0",
                           _github("clinc/oos-eval", "828f8093932c8fe6ca7936c3d2e52903b1c523de",
                                   "data/data_full.json")),),
        build=_build_clinc150),
}


def _uci_originals(uci_folder: str, copy: tuple[str, str], copy_folder: str,
                   sha256: dict[str, str]) -> tuple[RemoteFile, ...]:
    """UCI's files, from UCI's own address or else the pinned copy whose bytes the checksums are of."""
    return tuple(_original(name, sha, _UCI + uci_folder + name, _github(*copy, copy_folder + name))
                 for name, sha in sha256.items())


# md5 of the decompressed CSV (a rebuilt file is compressed anew, so its bytes may differ), sha256 of the .csv.gz
TABULAR_FILES = {
    "pendigits": RemoteFile(
        "pendigits.csv.gz", (), "f1d985e70f9748c039244c44d233c218",
        "4b5c98b5a94beeeb0d56ab314a705e77ec23c0b7a8c4672fd16d5fc87f7c2659",
        _uci_originals("pendigits/", _MOW, "", {
            "pendigits.tra": "e2b9eb9f0d0467e2b64a4816a3420edf2b8043447576f4b84337aba44a9f97d3",
            "pendigits.tes": "8bd03229c5c5291fefe43e45465dd948d2645bf23328b9d993e0b777666b2015"}),
        _uci_table(16)),
    "letter": RemoteFile(
        "letter.csv.gz", (), "7783f26beb1debedc2d46d9de0fdab90",
        "162bc748e29969c67590b29a3cf58d1628235ad4695b37b2ce6c1b28f40468c3",
        _uci_originals("letter-recognition/", _MOW, "", {
            "letter-recognition.data": "2b89f3602cf768d3c8355267d2f13f2417809e101fc2b5ceee10db19a60de6e2"}),
        _uci_table(16, label_first=True)),
    "satimage": RemoteFile(
        "satimage.csv.gz", (), "8d289afe48a047df9a7b7a10b70293c9",
        "92cf2186473c2bc7491d5fa083997a4fb3c328d09e28b83e9facab7067f067db",
        _uci_originals("statlog/satimage/", _SAT, "datasets/", {
            "sat.trn": "6da888aa398f4dd56a85bb7114f7206896a360b7af1d790450f64dbdb8493fc5",
            "sat.tst": "0045be0391420a35a69e8d2b0a4ff4b032a4aa03feebba0d89b9aa3e2d42c212"}),
        _uci_table(36, sep=None)),
    "optdigits": RemoteFile(
        "optdigits.csv.gz", (), "8a6358a0294c2e949d2ecabfa811e76d",
        "81105d2dc14e461d8622fc6b71703e00e968565481b47dcec18fb739c0bb57fd",
        _uci_originals("optdigits/", _OPT, "", {
            "optdigits.tra": "e1b683cc211604fe8fd8c4417e6a69f31380e0c61d4af22e93cc21e9257ffedd",
            "optdigits.tes": "85f89a0333cbbcf5b1a42f3d4d74013ee35f5e44dbeb5f9b54f78ce5b4f94910"}),
        _uci_table(64)),
    "mfeat": RemoteFile(  # UCI's fixed-width mfeat-* files are not byte-for-byte these: the pinned copy only
        "mfeat.csv.gz", (), "2eaba82164e036379037f2b320b96f7d",
        "f8e33f4aec77043c93207812387971b73aeabe14ff7c6cb5880bb2573889340c",
        tuple(_original(f"mfeat-{view}.csv", sha, _github(*_MFEAT, f"mfeat-{view}.csv" if view != "zer"
                                                                   else "mfeat-zer%20%281%29.csv"))
              for view, sha in [("fou", "b4c5465b99e8704b14a671e51415e084a902d35c693c0654c206a384de252701"),
                                ("fac", "f3862cb1c92a2350599875913e4ab2385b74570ed9cfefff9cc5bf3e508d58e7"),
                                ("kar", "67166f0812f7d05c82db4ac2018cf5dc558e2506f358e6bed437ea3751ac8308"),
                                ("pix", "ff7e5aa59e9be9111f01b63203dd6d00e52dc09b65bcb6580ebbcb423f581d2d"),
                                ("zer", "26f61f5313df077aeb7d71a5a8d89681acc008f184537ecbf37688de9777d227"),
                                ("mor", "3661d5513b235c58173c713dcbb598ff895dc5bc48ebdad90e1064560572ce54")]),
        _build_mfeat),
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
    "banking77": "BANKING77 (Casanueva et al. 2020)",
    "clinc150": "CLINC150 in-scope intents (Larson et al. 2019)",
}
TABULAR_ORIGINS = {
    "pendigits": "UCI Pen-Based Recognition of Handwritten Digits (Alpaydin & Alimoglu 1996)",
    "letter": "UCI Letter Recognition (Slate 1991)",
    "satimage": "UCI Statlog Landsat Satellite (Srinivasan 1993)",
    "optdigits": "UCI Optical Recognition of Handwritten Digits (Alpaydin & Kaynak 1998)",
    "mfeat": "UCI Multiple Features, six views concatenated (Duin 1998)",
}
TABULAR_SPLIT = {"pendigits", "satimage", "optdigits"}  # UCI ships a train and a test file
LETTER_TRAIN_ROWS = 16_000  # UCI: "the first 16000 items" for training, the last 4000 for testing


def _only_split(ds: Dataset, split: str) -> Dataset:
    """The rows of ``ds`` whose ``split`` is ``split``; class indices and names are kept."""
    keep = ds.extra["split"] == split
    return Dataset(ds.X[keep], None if ds.y is None else ds.y[keep], ds.meta,
                   {key: value[keep] for key, value in ds.extra.items()})


def _splits(ds: Dataset) -> str:
    names, counts = np.unique(ds.extra["split"], return_counts=True)
    order = sorted(zip(names, counts), key=lambda nc: ["train", "val", "test"].index(nc[0]))
    return " + ".join(f"{c:,} {n}" for n, c in order)


def _short_text(name: str, split: str | None = None) -> Callable[[Path | None, bool], Dataset]:
    """A short-text set; the intent sets keep their ``split`` column, ``split`` selects one part."""
    base = name.removesuffix(f"-{split}") if split else name

    def load(data_dir: Path | None, download: bool) -> Dataset:
        from deepclust.data.readers import read_text_table

        root = resolve_data_dir(data_dir)
        remote = INTENT_FILES.get(base, RemoteFile(f"{base}.tsv", ()))
        path = locate(remote, [root / "short-text"], root / "short-text", download=download)
        ds = read_text_table(path, text_column="text", label_column="label",
                             keep_columns=("split",) if base in INTENT_FILES else ())
        protocol = f"{SHORT_TEXT_ORIGINS[base]}: all {len(ds):,} texts" + (f" ({_splits(ds)})" if ds.extra else "")
        if split:
            ds = _only_split(ds, split)
            protocol = f"{SHORT_TEXT_ORIGINS[base]}: the {len(ds):,} {split} texts"
        ds.meta.name, ds.meta.protocol = name, protocol
        return ds
    return load


def _tabular(name: str) -> Callable[[Path | None, bool], Dataset]:
    """A UCI table; ``extra["split"]`` holds UCI's train/test split where there is one."""
    def load(data_dir: Path | None, download: bool) -> Dataset:
        from deepclust.data.readers import read_table

        root = resolve_data_dir(data_dir)
        path = locate(TABULAR_FILES[name], [root / "tabular"], root / "tabular", download=download)
        ds = read_table(path, label_column="label", keep_columns=("split",) if name in TABULAR_SPLIT else ())
        if name == "letter":
            ds.extra["split"] = np.where(np.arange(len(ds)) < LETTER_TRAIN_ROWS, "train", "test")
        ds.meta.name = name
        ds.meta.protocol = (f"{TABULAR_ORIGINS[name]}: all {len(ds):,} rows"
                            + (f" ({_splits(ds)}; extra['split'])" if "split" in ds.extra else ""))
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
    BuiltinDataset("banking77", "BANKING77 banking queries, 77 intents (train+test)", "text", 13083, 77,
                   "short-text", (INTENT_FILES["banking77"],), _short_text("banking77")),
    BuiltinDataset("banking77-test", "BANKING77-test: the 3,080 test queries", "text", 3080, 77,
                   "short-text", (INTENT_FILES["banking77"],), _short_text("banking77-test", "test")),
    BuiltinDataset("clinc150", "CLINC150 assistant queries, 150 in-scope intents (train+val+test)", "text", 22500, 150,
                   "short-text", (INTENT_FILES["clinc150"],), _short_text("clinc150")),
    BuiltinDataset("clinc150-test", "CLINC150-test: the 4,500 in-scope test queries", "text", 4500, 150,
                   "short-text", (INTENT_FILES["clinc150"],), _short_text("clinc150-test", "test")),
    BuiltinDataset("pendigits", "UCI pen-based digits, 16 features (train+test)", "table", 10992, 10, "tabular",
                   (TABULAR_FILES["pendigits"],), _tabular("pendigits")),
    BuiltinDataset("letter", "UCI letter recognition, 16 features, 26 letters", "table", 20000, 26, "tabular",
                   (TABULAR_FILES["letter"],), _tabular("letter")),
    BuiltinDataset("satimage", "UCI Landsat satellite, 36 features, 6 soil types (train+test)", "table", 6435, 6,
                   "tabular", (TABULAR_FILES["satimage"],), _tabular("satimage")),
    BuiltinDataset("optdigits", "UCI optical digits, 8×8 counts as 64 features (train+test)", "table", 5620, 10,
                   "tabular", (TABULAR_FILES["optdigits"],), _tabular("optdigits")),
    BuiltinDataset("mfeat", "UCI multiple features: 6 views of digits, 649 features", "table", 2000, 10, "tabular",
                   (TABULAR_FILES["mfeat"],), _tabular("mfeat")),
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
