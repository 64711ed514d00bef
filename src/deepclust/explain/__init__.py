"""Explaining a clustering, cluster by cluster, in terms a person can check.

For every cluster: its size and cohesion (mean silhouette of its members in the embedding, mean
confidence, spread relative to the whole data set); its most typical members (highest confidence,
ties broken by closeness to the centroid) and its least confident ones; then by modality:

* images: those members as small PNG thumbnails (base64, ready for an HTML report);
* texts: top keywords by class-based TF-IDF (:func:`~deepclust.explain.keywords.c_tf_idf`, as in
  BERTopic), a name made of the first three (:func:`~deepclust.explain.naming.keyword_name`) and
  representative documents (the most typical members); naming by a vote among candidate names
  embedded by a user-supplied text tower (CPP with CLIP) is :func:`~deepclust.explain.naming.name_clusters`;
* tables and arrays: readable rules from a shallow one-vs-rest decision tree with their precision
  and coverage (:func:`~deepclust.explain.rules.cluster_rules`) and the medoid row.

When true labels are known, the classes found in each cluster are listed too (scoring only).
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np

from deepclust.explain.keywords import c_tf_idf
from deepclust.explain.naming import keyword_name, name_clusters
from deepclust.explain.rules import Rule, cluster_rules, medoid_index

__all__ = ["Rule", "c_tf_idf", "cluster_rules", "explain_clusters", "image_to_data_uri", "keyword_name", "medoid_index",
           "name_clusters"]


def image_to_data_uri(img: np.ndarray, size: int = 56) -> str:
    """A C×H×W (or H×W) float image in [0, 1] as a ``data:image/png;base64,...`` URI, upscaled to ``size``."""
    from PIL import Image

    a = np.asarray(img, dtype=np.float32)
    if a.ndim == 3:
        a = a[0] if a.shape[0] == 1 else np.transpose(a[:3], (1, 2, 0))
    lo, hi = float(a.min()), float(a.max())
    if lo < 0 or hi > 1:
        a = (a - lo) / max(hi - lo, 1e-12)
    pil = Image.fromarray(np.clip(a * 255 + 0.5, 0, 255).astype(np.uint8))
    scale = max(1, size // max(pil.size))
    if scale > 1:
        pil = pil.resize((pil.size[0] * scale, pil.size[1] * scale), Image.NEAREST)
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _per_cluster_silhouette(Z: np.ndarray, labels: np.ndarray, max_points: int, seed: int) -> dict[int, float]:
    from sklearn.metrics import silhouette_samples

    idx = np.arange(len(Z))
    if len(Z) > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(len(Z), max_points, replace=False))
    lab = labels[idx]
    if len(np.unique(lab)) < 2 or len(np.unique(lab)) >= len(lab):
        return {}
    s = silhouette_samples(Z[idx], lab)
    return {int(c): float(s[lab == c].mean()) for c in np.unique(lab)}


def explain_clusters(dataset: Any, Z: np.ndarray, labels: np.ndarray, confidence: np.ndarray | None = None, *,
                     n_examples: int = 8, n_keywords: int = 10, random_state: int = 0,
                     max_points: int = 5000) -> list[dict[str, Any]]:
    """One JSON-ready dict per cluster (sorted by size, largest first); see the module notes.

    ``dataset`` is a :class:`~deepclust.data.Dataset` (its ``X``, ``y``, ``meta``), ``Z`` the
    embedding the clustering was made in (N×d), ``labels`` the clusters (-1 = noise, skipped).
    """
    labels = np.asarray(labels)
    n = len(labels)
    Z = np.asarray(Z, dtype=np.float32).reshape(n, -1)
    conf = np.ones(n, dtype=np.float32) if confidence is None else np.asarray(confidence, dtype=np.float32)
    modality = dataset.meta.modality
    clusters = [int(c) for c in np.unique(labels) if c >= 0]
    sil = _per_cluster_silhouette(Z, labels, min(max_points, 2000), random_state)
    overall_spread = float(np.linalg.norm(Z - Z.mean(0), axis=1).mean()) or 1.0
    keywords = c_tf_idf(dataset.X, labels, top_n=n_keywords) if modality == "text" else {}
    table_X = None
    if modality in ("table", "array"):
        table_X = np.asarray(dataset.X, dtype=np.float64).reshape(n, -1)
        names = dataset.meta.feature_names or [f"x{j}" for j in range(table_X.shape[1])]
        std = table_X.std(0)
        table_std = (table_X - table_X.mean(0)) / np.where(std > 0, std, 1.0)
    class_names = dataset.meta.class_names
    out = []
    for c in clusters:
        members = np.flatnonzero(labels == c)
        centroid = Z[members].mean(0)
        dist = np.linalg.norm(Z[members] - centroid, axis=1)
        typical = members[np.lexsort((dist, -conf[members]))][:n_examples]
        least = members[np.lexsort((-dist, conf[members]))][:n_examples]
        info: dict[str, Any] = {
            "cluster": c,
            "size": int(len(members)),
            "share": float(len(members) / n),
            "silhouette": sil.get(c),
            "mean_confidence": float(conf[members].mean()),
            "spread": float(dist.mean() / overall_spread),
            "typical": typical.tolist(),
            "least_confident": least.tolist(),
            "typical_confidence": conf[typical].round(4).tolist(),
            "least_confidence": conf[least].round(4).tolist(),
        }
        if dataset.y is not None:
            cls, cnt = np.unique(np.asarray(dataset.y)[members], return_counts=True)
            order = np.argsort(-cnt)[:3]
            info["classes"] = [{"label": class_names[int(cls[i])] if class_names and 0 <= int(cls[i]) < len(class_names)
                                else str(cls[i]), "share": float(cnt[i] / len(members))} for i in order]
        if modality == "image":
            info["typical_images"] = [image_to_data_uri(dataset.X[i]) for i in typical]
            info["least_images"] = [image_to_data_uri(dataset.X[i]) for i in least]
        elif modality == "text":
            info["keywords"] = [[w, round(s, 5)] for w, s in keywords.get(c, [])]
            info["name"] = keyword_name(info["keywords"])
            info["documents"] = [_clip(dataset.X[i]) for i in typical[:5]]
            info["least_documents"] = [_clip(dataset.X[i]) for i in least[:3]]
        elif table_X is not None:
            rules = cluster_rules(table_X, labels, c, feature_names=names, random_state=random_state)
            info["rules"] = [{"text": r.text(), "precision": r.precision, "coverage": r.coverage, "rows": r.n_rows}
                             for r in rules]
            m = medoid_index(table_std, members, random_state=random_state)
            info["medoid"] = {"index": m, "values": {names[j]: float(table_X[m, j]) for j in range(min(len(names), 20))}}
        out.append(info)
    out.sort(key=lambda d: -d["size"])
    return out


def _clip(text: Any, limit: int = 300) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"
