"""One entry point for embeddings: ``get_encoder(name)`` and ``encode(data, name, ...)``.

Names: ``raw``, ``tfidf``, ``minilm``, ``efficientnet-lite0`` (``-lite1``, ``-lite2`` with their
packages), ``pretext``, ``autoencoder``, or a local model: a sentence-transformers folder (text), a timm folder
or ``ARCH:PATH`` weights file, or an ``efficientnet_pytorch`` weights file (images).
"""

from __future__ import annotations

import difflib
import inspect
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from deepclust.encoders.base import Encoder, RawEncoder, data_modality
from deepclust.encoders.cache import EmbeddingCache, cache_key, fingerprint_data
from deepclust.errors import DeepclustError
from deepclust.progress import progress

#: samples per cached chunk of a long per-sample encoding (see :mod:`deepclust.encoders.cache`)
EMBED_CHUNK = 2048
#: the encoders known by name (local model paths are accepted too)
ENCODER_NAMES = ("raw", "tfidf", "minilm", "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2",
                 "pretext", "autoencoder")


def get_encoder(name: str, *, random_state: int = 0, **options: Any) -> Encoder:
    """The encoder called ``name`` (see the module docstring); ``options`` go to its constructor."""
    from deepclust.encoders import image, learned, pretext, text

    def build(cls: type, *args: Any, **fixed: Any) -> Encoder:
        """``cls(*args, **fixed, **options)``, refusing options it does not take."""
        try:
            inspect.signature(cls).bind(*args, **fixed, **options)
        except TypeError as exc:
            takes = [p for p in inspect.signature(cls).parameters if p not in fixed][len(args):]
            raise DeepclustError(f"encoder {name!r} does not take --encoder-param {', '.join(options)}; "
                                 + (f"its settings: {', '.join(takes)}" if takes else "it takes none")) from exc
        return cls(*args, **fixed, **options)

    key = str(name).strip()
    low = key.lower()
    if low == "raw":
        return build(RawEncoder)
    if low == "tfidf":
        return build(text.TfidfEncoder, random_state=random_state)
    if low in ("minilm", "all-minilm-l6-v2"):
        return build(text.SentenceTransformerEncoder, name="minilm")
    if low in image.EFFICIENTNET_PACKAGES:
        weights, arch = image.package_weights(low)
        return build(image.TimmImageEncoder, weights, arch, name=low)
    if low in ("pretext", "simclr"):
        return build(pretext.PretextEncoder, random_state=random_state)
    if low in ("autoencoder", "ae"):
        return build(learned.AutoencoderEncoder, random_state=random_state)

    arch, sep, rest = key.partition(":")
    if sep and rest and not os.path.exists(key) and "/" not in arch and "\\" not in arch:  # ARCH:PATH
        return build(image.TimmImageEncoder, rest, arch)
    path = Path(key).expanduser()
    if path.exists():
        if text.is_sentence_transformers_folder(path):
            return build(text.SentenceTransformerEncoder, path)
        found = image.timm_folder(path)
        if found:
            return build(image.TimmImageEncoder, found[0], found[1], name=str(path))
        if path.is_file() and path.suffix.lower() in image.WEIGHT_SUFFIXES:
            return build(image.TimmImageEncoder, path)
        raise DeepclustError(f"{path} is not a model this tool can load: expected a sentence-transformers folder "
                             f"(modules.json), a timm folder (config.json + model.safetensors) or a weights file "
                             f"({', '.join(image.WEIGHT_SUFFIXES)}; give ARCH:PATH for timm weights)")
    if os.sep in key or path.suffix:
        raise DeepclustError(f"encoder path {path} does not exist")
    close = difflib.get_close_matches(low, ENCODER_NAMES, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise DeepclustError(f"unknown encoder {name!r}{hint} Known encoders: {', '.join(ENCODER_NAMES)}, "
                         "or a local model folder / weights file")


def _unpack(data: Any) -> tuple[Any, str]:
    """(X, modality) of a Dataset, a list of texts, an array or a tensor."""
    meta = getattr(data, "meta", None)
    if meta is not None and hasattr(data, "X"):
        modality = {"table": "array"}.get(meta.modality, meta.modality)
        return data.X, modality
    return data, data_modality(data)


def encode_with_info(data: Any, name: str | Encoder = "raw", *, device: Any = "auto", batch_size: int | None = None,
                     cache: bool = True, cache_dir: str | os.PathLike | None = None, random_state: int = 0,
                     **options: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """Like :func:`encode`, and also what was done: ``{"name", "identity", "cached", "seconds", "dim"}``."""
    from deepclust.device import resolve_device
    from deepclust.scale import encode_on_dask, is_dask_collection

    if is_dask_collection(data):  # partition by partition on the workers, to Parquet (deepclust.scale)
        if isinstance(name, Encoder) or not cache:
            raise DeepclustError("a Dask collection is encoded on the workers by an encoder name (its files are the "
                                 "cache); give the name, with cache=True")
        return encode_on_dask(data, name, out_dir=cache_dir, device=str(device), batch_size=batch_size,
                              random_state=random_state, **options)
    X, modality = _unpack(data)
    if modality == "text" and not isinstance(X, list):
        X = [str(t) for t in X]
    if isinstance(name, Encoder):
        enc = name
    else:
        if modality == "text" and str(name).strip().lower() == "raw":
            name = "tfidf"  # texts have no raw vectors
        enc = get_encoder(name, random_state=random_state, **options)
    enc.check_input(X, modality)
    dev = resolve_device(device)
    t0 = time.perf_counter()
    if not enc.cacheable or not cache:
        Z = enc.encode(X, device=dev, batch_size=batch_size)
        identity = enc.identity()
        return Z, {"name": enc.name, "identity": identity, "cached": False, "dim": int(np.prod(Z.shape[1:])),
                   "seconds": round(time.perf_counter() - t0, 4)}
    identity = enc.identity()
    key = cache_key(identity, fingerprint_data(X))
    store = EmbeddingCache(cache_dir)
    Z = store.load(key)
    cached = Z is not None and Z.shape[0] == len(X)
    if not cached:
        if enc.per_sample and len(X) > EMBED_CHUNK:
            Z = _encode_in_chunks(enc, X, dev, batch_size, store, key)
        else:
            Z = enc.encode(X, device=dev, batch_size=batch_size)
        if store.save(key, Z, {"encoder": identity, "n": len(X)}) is not None:
            store.drop_chunks(key, EMBED_CHUNK)
    return Z, {"name": enc.name, "identity": identity, "cached": cached, "dim": int(Z.shape[1]),
               "seconds": round(time.perf_counter() - t0, 4), "cache_key": key}


def _encode_in_chunks(enc: Encoder, X: Any, device: Any, batch_size: int | None, store: EmbeddingCache,
                      key: str) -> np.ndarray:
    """Encode ``X`` in chunks of ``EMBED_CHUNK`` samples, each cached as soon as it is done, so that
    an interrupted run resumes where it stopped (with a progress line per few percent)."""
    parts = []
    for index, start in enumerate(progress(range(0, len(X), EMBED_CHUNK), desc=f"{enc.name} embedding",
                                           unit="chunk")):
        stop = min(len(X), start + EMBED_CHUNK)
        Z = store.load_chunk(key, EMBED_CHUNK, index)
        if Z is None or len(Z) != stop - start:
            Z = enc.encode(X[start:stop], device=device, batch_size=batch_size)
            store.save_chunk(key, EMBED_CHUNK, index, Z)
        parts.append(Z)
    return np.concatenate(parts)


def encode(data: Any, name: str | Encoder = "raw", *, device: Any = "auto", batch_size: int | None = None,
           cache: bool = True, cache_dir: str | os.PathLike | None = None, random_state: int = 0,
           **options: Any) -> np.ndarray:
    """The float32 embedding of ``data`` by encoder ``name`` (an N×D array; ``raw`` keeps images' shape).

    ``data``: a :class:`~deepclust.data.Dataset`, a list of texts, or an array/tensor of images
    (N×H×W, N×C×H×W in [0, 1] or uint8) or vectors. Computed in batches on ``device`` and cached
    on disk (``cache_dir``, else ``$DEEPCLUST_CACHE``, else the user cache) keyed by the
    encoder's identity and a fingerprint of the data; ``cache=False`` always recomputes.
    ``options`` go to the encoder (e.g. ``epochs=20`` for ``pretext``, ``image_size=128``).

    A Dask array (images, vectors) or Series (texts) is encoded partition by partition on the Dask
    workers and written to Parquet (``cache_dir``: that folder), resumably; the result is then a lazy
    Dask array (see :func:`deepclust.scale.encode_on_dask`).
    """
    return encode_with_info(data, name, device=device, batch_size=batch_size, cache=cache, cache_dir=cache_dir,
                            random_state=random_state, **options)[0]
