"""What every embedding encoder is: a name, the modality it reads, an identity, and ``encode``."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from deepclust.errors import DeepclustError
from deepclust.validation import as_float_array

MODALITIES = ("text", "image", "array")


def missing_extra(encoder: str, package: str, extra: str) -> DeepclustError:
    """The error for an optional package that is not installed, naming the extra that brings it."""
    return DeepclustError(f"the {encoder} encoder needs the {package} package, which is not installed: "
                          f"pip install 'deepclust[{extra}]'")


def data_modality(X: Any) -> str:
    """``text`` for a list of strings, ``image`` for N×H×W / N×C×H×W arrays, else ``array``."""
    if isinstance(X, np.ndarray) and X.dtype.kind in "OUS":
        return "text"
    if isinstance(X, (list, tuple)):
        return "text" if len(X) == 0 or isinstance(X[0], str) else "array"
    ndim = getattr(X, "ndim", None)
    if ndim is None:
        raise DeepclustError(f"cannot encode a {type(X).__name__}: give a list of texts, an array or a Dataset")
    return "image" if ndim in (3, 4) else "array"


class Encoder:
    """Base class: subclasses set ``name`` and ``modality`` and implement ``_encode`` and ``identity``.

    ``modality`` is what the encoder reads: ``text`` (a list of str), ``image`` (N×C×H×W or
    N×H×W, values in [0, 1] or uint8) or ``any``. ``identity()`` returns what decides its output
    (name, weight-file hash or version, settings): the embedding cache is keyed by it, and
    metrics.json records it.
    """

    name: str = ""
    modality: ClassVar[str] = "any"
    #: False where caching costs more than encoding (``raw``)
    cacheable: ClassVar[bool] = True
    #: True where each sample's embedding depends on that sample alone (pretrained networks), so a
    #: long encoding can be done, cached and resumed in chunks
    per_sample: ClassVar[bool] = False
    default_batch_size: ClassVar[int] = 256

    def identity(self) -> dict[str, Any]:
        raise NotImplementedError

    def check_input(self, X: Any, modality: str | None = None) -> str:
        """Refuse data of the wrong kind with a message that names the encoders that fit."""
        got = modality or data_modality(X)
        if self.modality == "any" or got == self.modality:
            return got
        fits = {"text": "tfidf, minilm or a sentence-transformers folder",
                "image": "raw, autoencoder, efficientnet-lite0, pretext or a timm weights file",
                "array": "raw or autoencoder"}[got] if got in ("text", "image", "array") else "raw"
        raise DeepclustError(f"the {self.name} encoder is for {self.modality} input, but this input is "
                             f"{got} data; encoders for {got} data: {fits}")

    def encode(self, X: Any, *, device: torch.device, batch_size: int | None = None) -> np.ndarray:
        """The float32 N×D embedding of ``X`` (validated with :meth:`check_input` first)."""
        n = len(X)
        if n == 0:
            raise DeepclustError("nothing to encode: the input has no samples")
        Z = self._encode(X, device, int(batch_size or self.default_batch_size))
        Z = np.asarray(Z, dtype=np.float32).reshape(n, -1)
        if not np.isfinite(Z).all():
            raise DeepclustError(f"the {self.name} encoder produced NaN or infinite values")
        return Z

    def _encode(self, X: Any, device: torch.device, batch_size: int) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class RawEncoder(Encoder):
    """The data as they are, flattened to N×D float32 (images, tables, given features)."""

    name = "raw"
    cacheable = False

    def identity(self) -> dict[str, Any]:
        return {"name": self.name}

    def check_input(self, X: Any, modality: str | None = None) -> str:
        got = modality or data_modality(X)
        if got == "text":
            raise DeepclustError("texts need an encoder that turns them into vectors: --encoder tfidf or minilm")
        return got

    def encode(self, X: Any, *, device: torch.device, batch_size: int | None = None) -> np.ndarray:
        return as_float_array(X)  # shape kept: image methods take N×C×H×W
