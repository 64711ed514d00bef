"""Embedding cache on disk: a second run with the same model and data loads instead of recomputing.

An entry is keyed by the encoder's identity (name, weight-file hash or package version, the
settings that change its output) and a fingerprint of the data (a hash of the array's dtype,
shape and bytes, or of the texts). Entries are ``<key>.npy`` plus ``<key>.json`` (what the key
was made of, for people), written to a temporary file and renamed into place, so a crash or
Ctrl-C never leaves a half-written entry that a later run would read. A long encoding by a
per-sample encoder (a pretrained network) is also kept in chunks while it runs
(``<key>.chunks-<size>/<i>.npy``, each written the same way): an interrupted or timed-out run
resumes from the chunks already done, and they are removed once the whole entry is written.

The folder is ``embeddings/`` in the cache root: ``$DEEPCLUST_CACHE`` when set, else the user
cache (``$XDG_CACHE_HOME/deepclust`` or ``~/.cache/deepclust``); pretrained autoencoders go to
``autoencoders/`` beside it (see :func:`cache_root`). It is never the data folder, which
may be shared or read-only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

#: environment variable naming the embedding cache folder
CACHE_ENV = "DEEPCLUST_CACHE"
_HASH_CHUNK = 1 << 24  # 16 MiB


def cache_root() -> Path:
    """``$DEEPCLUST_CACHE``, else ``<user cache>/deepclust``: the root of every deepclust cache."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "deepclust"


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir`` if given, else ``embeddings/`` in :func:`cache_root`."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return cache_root() / "embeddings"


def fingerprint_data(X: Any) -> str:
    """A hash of the data: texts by their UTF-8 bytes, arrays by dtype, shape and bytes."""
    h = hashlib.blake2b(digest_size=16)
    if isinstance(X, np.ndarray) and X.dtype.kind in "OUS":
        X = X.tolist()
    if isinstance(X, (list, tuple)) and (len(X) == 0 or isinstance(X[0], str)):
        h.update(f"texts:{len(X)}\0".encode())
        for doc in X:
            h.update(str(doc).encode("utf-8", "surrogatepass"))
            h.update(b"\0")
        return h.hexdigest()
    if hasattr(X, "detach"):  # torch tensor
        X = X.detach().cpu().numpy()
    arr = np.asarray(X)
    h.update(f"array:{arr.dtype.str}:{arr.shape}\0".encode())
    flat = np.ascontiguousarray(arr).reshape(-1).view(np.uint8) if arr.size else np.zeros(0, np.uint8)
    for start in range(0, flat.size, _HASH_CHUNK):  # chunks: memory-mapped inputs are not read twice
        h.update(flat[start:start + _HASH_CHUNK].data)
    return h.hexdigest()


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def hash_file(path: str | os.PathLike) -> str:
    """Content hash of a weights file (remembered per path, size and modification time)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES:
        h = hashlib.blake2b(digest_size=16)
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(_HASH_CHUNK), b""):
                h.update(block)
        _FILE_HASHES[key] = h.hexdigest()
    return _FILE_HASHES[key]


def cache_key(identity: dict[str, Any], data_fingerprint: str) -> str:
    blob = json.dumps({"encoder": identity, "data": data_fingerprint}, sort_keys=True, default=str)
    return hashlib.blake2b(blob.encode(), digest_size=20).hexdigest()


def weights_path(cache_dir: str | os.PathLike | None, identity: dict[str, Any], X: Any) -> Path | None:
    """Where pretrained weights for ``identity`` trained on ``X`` are kept: ``autoencoders/<key>.safetensors``
    under ``cache_dir`` or ``$DEEPCLUST_CACHE``; None (no caching) when neither is set."""
    root = cache_dir or os.environ.get(CACHE_ENV)
    if not root:
        return None
    return Path(root).expanduser() / "autoencoders" / f"{cache_key(identity, fingerprint_data(X))}.safetensors"


def load_weights(module: Any, path: Path, device: Any) -> None:
    """Load a state dict saved by :func:`save_weights` into ``module``."""
    from safetensors.torch import load_file

    module.load_state_dict(load_file(str(path), device=str(device)))


def save_weights(module: Any, path: Path) -> None:
    """Save ``module``'s state dict to ``path``, written to a temporary file and renamed into place."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file({k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}, str(tmp))
    os.replace(tmp, path)


class EmbeddingCache:
    """A folder of cached embeddings (see the module docstring)."""

    def __init__(self, cache_dir: str | os.PathLike | None = None) -> None:
        self.root = resolve_cache_dir(cache_dir)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.npy"

    def load(self, key: str) -> np.ndarray | None:
        """The cached embedding, or None when absent or unreadable (a corrupt entry is recomputed)."""
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            return np.load(p, allow_pickle=False)
        except (OSError, ValueError):
            return None

    def _chunk_path(self, key: str, chunk_size: int, index: int) -> Path:
        return self.root / f"{key}.chunks-{chunk_size}" / f"{index:06d}.npy"

    def load_chunk(self, key: str, chunk_size: int, index: int) -> np.ndarray | None:
        """Chunk ``index`` of an unfinished entry, or None when not done (or unreadable)."""
        p = self._chunk_path(key, chunk_size, index)
        try:
            return np.load(p, allow_pickle=False) if p.is_file() else None
        except (OSError, ValueError):
            return None

    def save_chunk(self, key: str, chunk_size: int, index: int, Z: np.ndarray) -> None:
        """Keep one finished chunk (atomically; skipped when the cache cannot be written)."""
        p = self._chunk_path(key, chunk_size, index)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            _write_npy(p, Z)
        except OSError:
            pass

    def drop_chunks(self, key: str, chunk_size: int) -> None:
        """Remove the chunks of an entry once it is complete."""
        shutil.rmtree(self.root / f"{key}.chunks-{chunk_size}", ignore_errors=True)

    def save(self, key: str, Z: np.ndarray, info: dict[str, Any]) -> Path | None:
        """Write atomically; a cache that cannot be written (read-only, full disk) is skipped."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            _write_npy(self.path(key), Z)
            meta = {**info, "shape": list(Z.shape), "dtype": str(Z.dtype), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
            fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".json.tmp", dir=self.root)
            with os.fdopen(fd, "w") as fh:
                json.dump(meta, fh, indent=2, default=str)
            os.replace(tmp, self.root / f"{key}.json")
        except OSError:
            return None
        return self.path(key)


def _write_npy(path: Path, Z: np.ndarray) -> None:
    """``np.save`` to a temporary file beside ``path``, renamed into place (never half-written)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".npy.tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, np.ascontiguousarray(Z), allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
