"""The HTML report of a clustering run: one self-contained file (inline CSS and SVG, images as
base64 PNG), readable offline.

Two steps, so that ``deepclust report DIR`` can rebuild the page without re-clustering:
:func:`collect_report_data` gathers everything the page shows into one JSON-ready dict (written
as ``report_data.json`` beside the run's other files) and :func:`render_html` turns that dict into
the page. :func:`rebuild_report` does the second step for a finished run folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from deepclust.errors import DeepclustError
from deepclust.runtime import json_safe

REPORT_DATA = "report_data.json"
REPORT_HTML = "report.html"
MAP_MAX_POINTS = 3000
REPORT_KEYS = ("summary", "notes", "map", "clusters")  # what every report page shows

__all__ = ["REPORT_DATA", "REPORT_HTML", "collect_report_data", "map_2d", "rebuild_report", "render_html"]


def map_2d(Z: np.ndarray, *, max_points: int = MAP_MAX_POINTS, random_state: int = 0) -> dict[str, Any]:
    """2-D UMAP map of (a random subsample of) the embedding; PCA when UMAP cannot run (tiny data)."""
    Z = np.asarray(Z, dtype=np.float32).reshape(len(Z), -1)
    idx = np.arange(len(Z))
    if len(Z) > max_points:
        idx = np.sort(np.random.default_rng(random_state).choice(len(Z), max_points, replace=False))
    sub = Z[idx]
    method = "UMAP"
    try:
        if len(sub) < 20:
            raise ValueError("too few points for UMAP")
        from deepclust.select_k import umap_reduce

        xy = umap_reduce(sub, n_components=2, random_state=random_state)
    except (ImportError, ValueError):
        from sklearn.decomposition import PCA

        method = "PCA"
        xy = PCA(n_components=min(2, sub.shape[1]), random_state=random_state).fit_transform(sub)
        if xy.shape[1] == 1:
            xy = np.column_stack([xy[:, 0], np.zeros(len(xy))])
    return {"index": idx.tolist(), "x": np.round(xy[:, 0], 3).tolist(), "y": np.round(xy[:, 1], 3).tolist(),
            "method": method, "n_total": int(len(Z))}


def collect_report_data(result: Any, features: np.ndarray, *, selection: Any = None, notes: dict[str, str] | None = None,
                        timings: dict[str, float] | None = None, random_state: int = 0,
                        pipeline: Any = None) -> dict[str, Any]:
    """Everything the report shows, from a :class:`~deepclust.pipeline.ClusteringResult` and the
    features it was clustered on (the model's embedding is used for deep methods)."""
    from deepclust import metrics
    from deepclust.explain import explain_clusters
    from deepclust.methods import get_method_info

    t0 = time.perf_counter()
    ds, labels = result.dataset, np.asarray(result.labels)
    Z = result.model.transform(features) if get_method_info(result.method).deep else features
    Z = np.asarray(Z, dtype=np.float32).reshape(len(Z), -1)
    m = map_2d(Z, random_state=random_state)
    m["cluster"] = labels[m["index"]].tolist()
    y = None if ds.y is None else np.asarray(ds.y)
    m["label"] = None if y is None else y[m["index"]].tolist()
    clusters = explain_clusters(ds, Z, labels, result.confidence, random_state=random_state)
    if callable(getattr(result.model, "explain", None)):  # models that explain themselves (TELL)
        _add_model_explanations(clusters, result.model, features, ds.meta.feature_names)
    data: dict[str, Any] = {
        "summary": result.summary(),
        "notes": notes or {},
        "class_names": ds.meta.class_names,
        "map": m,
        "clusters": clusters,
        "select_k": selection.to_dict() if selection is not None else None,
        "pipeline": pipeline.to_dict() if pipeline is not None else None,
        "merge_tree": result.extra.get("merge_tree"),
        "history": getattr(result.model, "history_", None),
        "timings": {**(timings or {})},
    }
    if y is not None:
        mat, cls, clu = metrics.confusion_matrix(y, labels, return_labels=True)
        names = ds.meta.class_names
        data["confusion"] = {"matrix": mat.tolist(),
                             "classes": [names[int(c)] if names and 0 <= int(c) < len(names) else str(c) for c in cls],
                             "clusters": [int(c) for c in clu]}
    data["timings"]["report"] = round(time.perf_counter() - t0, 3)
    return json_safe(data)


def _add_model_explanations(clusters: list[dict[str, Any]], model: Any, features: np.ndarray,
                            feature_names: list[str] | None, n_samples: int = 3) -> None:
    """Add the model's own explanations to each cluster: ``centre`` (its most distinctive features)
    and ``reasons`` (why its most typical members were assigned to it)."""
    rows = sorted({i for c in clusters for i in c["typical"][:n_samples]})
    X = np.asarray(features).reshape(len(features), -1)
    names = feature_names if feature_names is not None and len(feature_names) == X.shape[1] else None
    expl = model.explain(X[rows], names)
    reasons = dict(zip(rows, expl["samples"]))
    for c in clusters:
        if 0 <= c["cluster"] < len(expl["clusters"]):
            c["centre"] = expl["clusters"][c["cluster"]]
        c["reasons"] = [{"index": i, **reasons[i]} for i in c["typical"][:n_samples]]


def rebuild_report(run_dir: str | Path) -> Path:
    """Re-render ``report.html`` of a finished run from its ``report_data.json`` (no re-clustering)."""
    run_dir = Path(run_dir)
    src = run_dir / REPORT_DATA
    if not run_dir.is_dir():
        raise DeepclustError(f"{run_dir} is not a folder; give the --out folder of a finished `deepclust run`")
    if not src.is_file():
        raise DeepclustError(f"{run_dir} has no {REPORT_DATA}: it is not the output of `deepclust run` "
                             "(runs of `deepclust cluster` have no report data)")
    try:
        data = json.loads(src.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DeepclustError(f"{src} is not valid JSON ({exc}); re-run `deepclust run`") from exc
    missing = [key for key in REPORT_KEYS if key not in data] if isinstance(data, dict) else list(REPORT_KEYS)
    if missing:
        raise DeepclustError(f"{src} is not the report data of a `deepclust run` (it lacks "
                             f"{', '.join(missing)}); re-run `deepclust run`")
    try:
        html = render_html(data)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise DeepclustError(f"{src} is damaged ({type(exc).__name__}: {exc}); re-run `deepclust run`") from exc
    out = run_dir / REPORT_HTML
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out


from deepclust.report.html import render_html  # noqa: E402  (after the helpers it uses)
