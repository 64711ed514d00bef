"""Naming clusters: from their keywords (texts), or by a vote among candidate names embedded in the
same space as the clustered features (CPP's labelling with CLIP, Chu et al., ICLR 2024, §3.3).

Nothing is downloaded: for images, the candidate names' embeddings come from a text tower the user
supplies that shares the image features' space (CLIP's text encoder for CLIP image features, e.g.
``open_clip`` or ``transformers``' ``CLIPModel.get_text_features``, prompted as "a photo of a {name}").
For texts clustered on sentence embeddings, the same encoder embeds the candidates
(``deepclust.encoders.encode(names, "minilm")``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deepclust.errors import DeepclustError


def keyword_name(keywords: Sequence[tuple[str, float]] | Sequence[Sequence], n_words: int = 3) -> str:
    """A short name from a cluster's top c-TF-IDF keywords: the first ``n_words`` joined by " · "."""
    return " · ".join(str(k[0]) for k in list(keywords)[:n_words])


def name_clusters(features: np.ndarray, labels: np.ndarray, candidates: Sequence[str],
                  candidate_embeddings: np.ndarray, *, top: int = 5, scale: float = 100.0) -> dict[int, tuple[str, float]]:
    """CPP's vote (authors' ``labeling.py``): every member gives its ``top`` most similar candidates
    the softmax of ``scale`` × cosine similarity over all candidates; each cluster takes the candidate
    with the largest total vote. Returns ``{cluster: (name, vote share)}`` (noise label -1 skipped)."""
    X = np.asarray(features, dtype=np.float64)
    T = np.asarray(candidate_embeddings, dtype=np.float64)
    labels = np.asarray(labels)
    if T.ndim != 2 or len(T) != len(candidates) or X.ndim != 2 or T.shape[1] != X.shape[1] or len(X) != len(labels):
        raise DeepclustError(f"name_clusters needs features (n × d) with n labels and one embedding of width d per "
                             f"candidate; got features {X.shape}, {len(labels)} labels, {len(candidates)} candidates "
                             f"and embeddings {T.shape}")
    X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    T = T / np.maximum(np.linalg.norm(T, axis=1, keepdims=True), 1e-12)
    logits = float(scale) * X @ T.T
    prob = np.exp(logits - logits.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    keep = np.argsort(-prob, axis=1)[:, : max(1, int(top))]
    votes = np.zeros_like(prob)
    np.put_along_axis(votes, keep, np.take_along_axis(prob, keep, 1), 1)
    names = {}
    for c in (int(c) for c in np.unique(labels) if c >= 0):
        total = votes[labels == c].sum(0)
        best = int(total.argmax())
        names[c] = (str(candidates[best]), float(total[best] / max(total.sum(), 1e-12)))
    return names
