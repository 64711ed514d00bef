"""``deepclust merge RUN --k K``: coarsen a finished run along a merge tree of its clusters, no refit.

Like BERTopic's ``reduce_topics``, a run with k clusters becomes one with K < k by joining whole
clusters; nothing is fitted again, the features are not re-read.

**The tree** (:func:`merge_tree`) is built once, when the run is written, from the clusters
themselves: Ward's criterion (Ward, JASA 1963) continued from the run's partition. Each step joins
the two clusters whose union raises the within-cluster sum of squares the least,
``ΔSSE = n_a n_b / (n_a + n_b) · ‖μ_a − μ_b‖²`` (centroids μ and sizes n in the space the run's
scores use: the features, or a deep method's embedding). Why Ward with sizes and not a plain
linkage of the centroids: it is the objective that k-means, Ward and (for equal spherical
components) a Gaussian mixture minimise, so cutting the tree at K gives the K-partition that the
cheapest merges of the run's own clusters reach, and a 5-point cluster does not weigh like a
5,000-point one. Heights are scipy's Ward distances ``sqrt(2 ΔSSE)`` (monotone, as Ward is
reducible), so ``linkage`` is a valid :mod:`scipy.cluster.hierarchy` linkage matrix over the
clusters in the order of ``clusters``. With known labels, the tree file also holds the
classes × clusters counts, so that the merged run's ACC/NMI/ARI are exact without the labels.

**The merged run** (:func:`merge_run`) is a new run folder (never the source, never an existing
path): ``assignments.csv`` with the merged clusters (the ``confidence`` column is the source's
confidence in the fine cluster, a lower bound on the merged cluster's), ``metrics.json`` (label
scores recomputed exactly; silhouette, Davies-Bouldin and Calinski-Harabasz need the features and
are ``null``), ``merge.json`` (the mapping from the model's clusters to the merged ones),
``merge_tree.json`` (the tree that is left, so a merged run can be merged again), the source's
``model/`` unchanged, and, for runs of ``deepclust run``, the report. :func:`load_merged_model`
loads the model through the safe :func:`deepclust.base.load_model` and maps its predictions.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepclust.errors import DeepclustError

TREE_FILE = "merge_tree.json"
MERGE_FILE = "merge.json"
CRITERION = ("Ward: each merge joins the two clusters whose union raises the within-cluster sum of squares least "
             "(sizes and centroids in the space the scores use); height = sqrt(2 ΔSSE)")


# ---------------------------------------------------------------------------------- the tree
def ward_linkage(centroids: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Ward agglomeration of clusters given by their ``centroids`` (k×d) and ``sizes``: a scipy
    linkage matrix (k-1 rows of ``[node_a, node_b, height, number of clusters joined]``; node i < k
    is cluster i, node k + s the group made by merge s)."""
    C = np.asarray(centroids, dtype=np.float64).reshape(len(centroids), -1)
    n = np.asarray(sizes, dtype=np.float64)
    k = len(C)
    cost = np.full((2 * k - 1, 2 * k - 1), np.inf)
    mu = np.zeros((2 * k - 1, C.shape[1]))
    mu[:k], size = C, np.concatenate([n, np.zeros(k - 1)])
    leaves = np.concatenate([np.ones(k), np.zeros(k - 1)])
    active = list(range(k))

    def ward(a: int, others: list[int]) -> np.ndarray:
        d2 = ((mu[others] - mu[a]) ** 2).sum(1)
        return size[a] * size[others] / (size[a] + size[others]) * d2

    for a in range(k):
        cost[a, :a] = cost[:a, a] = ward(a, list(range(a)))
    Z = np.zeros((k - 1, 4))
    for step in range(k - 1):
        sub = cost[np.ix_(active, active)]
        i, j = np.unravel_index(np.argmin(sub), sub.shape)
        a, b = sorted((active[i], active[j]))
        new = k + step
        size[new] = size[a] + size[b]
        mu[new] = (size[a] * mu[a] + size[b] * mu[b]) / size[new]
        leaves[new] = leaves[a] + leaves[b]
        Z[step] = [a, b, np.sqrt(2 * max(cost[a, b], 0.0)), leaves[new]]
        active = [c for c in active if c not in (a, b)]
        if active:
            cost[new, active] = cost[active, new] = ward(new, active)
        active.append(new)
    return Z


def merge_tree(space: np.ndarray, labels: np.ndarray, y: Any = None) -> dict[str, Any]:
    """The JSON-ready merge tree of the clusters of ``labels`` (noise, -1, left out) in ``space``;
    with labels ``y``, also the classes × clusters counts (noise as the column -1)."""
    Z = np.asarray(space).reshape(len(space), -1)
    labels = np.asarray(labels)
    ids, sizes = np.unique(labels[labels >= 0], return_counts=True)
    cents = np.stack([Z[labels == c].mean(0, dtype=np.float64) for c in ids]) if len(ids) else None
    tree: dict[str, Any] = {"criterion": CRITERION, "clusters": ids.tolist(), "sizes": sizes.tolist(),
                            "linkage": ward_linkage(cents, sizes).round(6).tolist() if len(ids) > 1 else []}
    if y is not None:
        classes, row = np.unique(np.asarray(y), return_inverse=True)
        cols = ids.tolist() + ([-1] if (labels < 0).any() else [])
        counts = np.zeros((len(classes), len(cols)), dtype=np.int64)
        col = np.where(labels < 0, len(ids), np.searchsorted(ids, labels))  # noise: the last column
        np.add.at(counts, (row.ravel(), col), 1)
        tree["contingency"] = {"classes": classes.tolist(), "clusters": cols, "counts": counts.tolist()}
    return tree


#: a coarser level is "supported by the tree" when merging below it costs this many times the merge before
#: (ratio of Ward heights; 1.0–1.3 on digits and on one Gaussian cut into 8, 8–13 on two groups of three blobs)
TREE_GAP = 2.0


def tree_levels(tree: dict[str, Any], min_gap: float = TREE_GAP) -> list[dict[str, Any]]:
    """The coarser numbers of clusters K the tree supports: those where the merge that would leave
    K-1 clusters is at least ``min_gap`` times higher than the one that left K (a jump in the
    dendrogram; cf. Mojena 1977's rule of cutting at a jump in merge heights), largest jump first."""
    heights = [float(row[2]) for row in tree.get("linkage", [])]
    n = len(heights) + 1
    out = []
    for K in range(2, n):
        below, before = heights[n - K], heights[n - K - 1]
        if before > 0 and below / before >= min_gap:
            out.append({"k": K, "gap": round(below / before, 2)})
    return sorted(out, key=lambda d: -d["gap"])


def cut(tree: dict[str, Any], k: int) -> dict[int, int]:
    """Cluster id → merged id after the first ``len(clusters) - k`` merges of ``tree``. Merged ids
    are 0 … k-1 in the order of each group's smallest cluster id."""
    ids = tree["clusters"]
    n = len(ids)
    group = {i: {i} for i in range(n)}  # node -> leaf positions
    for step, row in enumerate(tree["linkage"][: n - k]):
        group[n + step] = group.pop(int(row[0])) | group.pop(int(row[1]))
    groups = sorted((sorted(ids[i] for i in g) for g in group.values()), key=lambda g: g[0])
    return {c: new for new, g in enumerate(groups) for c in g}


def remaining_tree(tree: dict[str, Any], k: int) -> dict[str, Any]:
    """The tree over the ``k`` merged clusters of :func:`cut` (its last k-1 merges, renumbered)."""
    ids, n = tree["clusters"], len(tree["clusters"])
    mapping = cut(tree, k)
    node_of: dict[int, int] = {}  # node of the full tree -> leaf position (merged id) or new node
    group = {i: {i} for i in range(n)}
    rows = tree["linkage"]
    for step, row in enumerate(rows[: n - k]):
        group[n + step] = group.pop(int(row[0])) | group.pop(int(row[1]))
    for node, leaves in group.items():
        node_of[node] = mapping[ids[next(iter(leaves))]]
    sizes = [0] * k
    for c, s in zip(ids, tree["sizes"]):
        sizes[mapping[c]] += s
    linkage: list[list[float]] = []
    for step, row in enumerate(rows[n - k:]):
        node_of[n + (n - k) + step] = k + step
        a, b = node_of[int(row[0])], node_of[int(row[1])]
        count = sum(1 if m < k else linkage[m - k][3] for m in (a, b))
        linkage.append([a, b, row[2], count])
    out = {"criterion": tree["criterion"], "clusters": list(range(k)), "sizes": sizes, "linkage": linkage}
    if "contingency" in tree:
        con = tree["contingency"]
        cols = list(range(k)) + ([-1] if -1 in con["clusters"] else [])
        counts = np.zeros((len(con["classes"]), len(cols)), dtype=np.int64)
        for j, c in enumerate(con["clusters"]):
            counts[:, cols.index(mapping.get(c, -1))] += np.asarray(con["counts"], dtype=np.int64)[:, j]
        out["contingency"] = {"classes": con["classes"], "clusters": cols, "counts": counts.tolist()}
    return out


# ---------------------------------------------------------------------------------- reading a run
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DeepclustError(f"{path} is not readable JSON ({exc}); re-run deepclust") from None


def _read_tree(run: Path) -> dict[str, Any]:
    tree = _read_json(run / TREE_FILE)
    try:
        ids, sizes, rows = tree["clusters"], tree["sizes"], tree["linkage"]
        ok = (len(ids) == len(sizes) and len(rows) == max(0, len(ids) - 1)
              and all(isinstance(c, int) for c in ids) and len(set(ids)) == len(ids)
              and all(len(r) == 4 and 0 <= int(r[0]) < len(ids) + i and 0 <= int(r[1]) < len(ids) + i
                      for i, r in enumerate(rows)))
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise DeepclustError(f"{run / TREE_FILE} is damaged (its clusters and merges do not agree); re-run deepclust")
    return tree


def _read_assignments(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        if not rows or rows[0][:2] != ["index", "cluster"]:
            raise ValueError("no 'index,cluster' header")
        labels = np.array([int(r[1]) for r in rows[1:]], dtype=np.int64)
        conf = np.array([float(r[2]) if len(r) > 2 else 1.0 for r in rows[1:]], dtype=np.float64)
    except (OSError, UnicodeDecodeError, ValueError, IndexError) as exc:
        raise DeepclustError(f"{path} is not a deepclust assignments file ({exc})") from None
    return labels, conf


def check_run(run: str | Path) -> Path:
    """``run`` as a Path if it is a finished run folder with the files merge needs, else a DeepclustError."""
    from deepclust.output import is_run_dir

    run = Path(run)
    if not run.is_dir():
        raise DeepclustError(f"{run} is not a folder; give the --out folder of `deepclust run` or `deepclust cluster`"
                             if run.exists() else f"{run} does not exist")
    if not is_run_dir(run):
        raise DeepclustError(f"{run} is not a deepclust run folder (it has no .deepclust-run marker)")
    for name in ("assignments.csv", "metrics.json", TREE_FILE):
        if not (run / name).is_file():
            extra = " (runs written before deepclust had `merge` lack it; re-run)" if name == TREE_FILE else ""
            raise DeepclustError(f"{run} has no {name}{extra}")
    return run


# ---------------------------------------------------------------------------------- the merged run
@dataclass
class MergeOutput:
    out: Path
    k_from: int
    k: int
    mapping: dict[int, int]
    summary: dict[str, Any]


def default_out(run: Path, k: int) -> Path:
    """``RUN-merged-kK`` beside the run (``-2``, ``-3`` … appended while that path exists)."""
    base = run.parent / f"{run.name}-merged-k{k}"
    out, i = base, 1
    while out.exists() or out.is_symlink():
        i += 1
        out = base.with_name(f"{base.name}-{i}")
    return out


def _pairs(contingency: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(class index, cluster) of every point counted in a classes × clusters table: every score that
    depends on the counts only (ACC, NMI, ARI, AMI, purity) is exact on them."""
    counts = np.asarray(contingency["counts"], dtype=np.int64)
    n_classes = len(contingency["classes"])
    y = np.repeat(np.repeat(np.arange(n_classes), counts.shape[1]), counts.ravel())
    pred = np.repeat(np.tile(np.asarray(contingency["clusters"]), n_classes), counts.ravel())
    return y, pred


def _merged_scores(tree: dict[str, Any], labels: np.ndarray, noise: bool) -> dict[str, Any]:
    """Scores of the merged labels that need no features: size balance, and the label scores from
    the stored counts (exact: every score here depends on the counts only)."""
    from deepclust import metrics
    from deepclust.noise import scores_with_noise

    assigned = labels[labels >= 0]
    out: dict[str, Any] = {"silhouette": None, "davies_bouldin": None, "calinski_harabasz": None,
                           "size_entropy": metrics.size_entropy(assigned) if len(assigned) else 0.0,
                           "n_clusters": int(len(np.unique(assigned))),
                           "noise_fraction": float((labels < 0).mean())}
    con = tree.get("contingency")
    assigned_scores = None
    if con:
        y, pred = _pairs(con)
        if noise:
            on_all, assigned_scores = scores_with_noise(y, pred)
            out.update(on_all)
        else:
            out.update(metrics.external_scores(y, pred))
    return {"scores": out, "scores_assigned": assigned_scores}


def merge_run(run: str | Path, k: int, out: str | Path | None = None) -> MergeOutput:
    """Write the run ``run`` coarsened to ``k`` clusters into ``out`` (default :func:`default_out`);
    see the module notes. Refuses (:class:`DeepclustError`) a bad run, k, or an existing ``out``."""
    from deepclust.output import write_run_dir

    run = check_run(run)
    tree = _read_tree(run)
    k_from = len(tree["clusters"])
    if k_from <= 2:
        raise DeepclustError(f"{run} has {k_from} cluster{'s' if k_from != 1 else ''}: there is nothing to merge")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 2 <= k < k_from:
        raise DeepclustError(f"--k must be a whole number from 2 to {k_from - 1} (the run has {k_from} clusters), "
                             f"got {k}")
    k = int(k)
    labels, conf = _read_assignments(run / "assignments.csv")
    known = set(tree["clusters"])
    strays = sorted(set(labels[labels >= 0].tolist()) - known)
    if strays or len(labels) != sum(tree["sizes"]) + int((labels < 0).sum()):
        raise DeepclustError(f"{run / 'assignments.csv'} does not match {run / TREE_FILE}; re-run deepclust")
    mapping = cut(tree, k)
    new_labels = np.array([mapping[c] if c >= 0 else -1 for c in labels.tolist()], dtype=np.int64)
    summary = _read_json(run / "metrics.json")
    if not isinstance(summary, dict):
        raise DeepclustError(f"{run / 'metrics.json'} is not a deepclust metrics file")
    previous = _read_json(run / MERGE_FILE) if (run / MERGE_FILE).is_file() else None
    model_map = mapping if previous is None else {
        int(m): (mapping[v] if v >= 0 else -1) for m, v in previous["mapping"].items()}
    heights = [row[2] for row in tree["linkage"]]
    merge_info = {"source": str(run.resolve()), "k_from": k_from, "k": k,
                  "cut_height": heights[k_from - k - 1], "criterion": tree["criterion"],
                  "mapping": {str(m): int(v) for m, v in sorted(model_map.items())},
                  "note": "mapping: the model's cluster -> the merged cluster (deepclust.merge.load_merged_model "
                          "applies it to predictions)"}
    noise = "noise" in summary
    new_tree = remaining_tree(tree, k)
    scored = _merged_scores(new_tree, new_labels, noise)
    summary = {**summary, "n_clusters": k, "n_clusters_found": int(len(np.unique(new_labels[new_labels >= 0]))),
               "scores": scored["scores"], "merged": {k_: v for k_, v in merge_info.items() if k_ != "mapping"}}
    if noise:
        summary["scores_assigned"] = scored["scores_assigned"]
    summary["merged"]["scores_note"] = ("silhouette, Davies-Bouldin and Calinski-Harabasz are not recomputed: merge "
                                        "does not re-read the features (`deepclust run --k K` refits)")
    report = _merged_report(run, tree, mapping, summary, k) if (run / "report_data.json").is_file() else None

    def fill(folder: Path) -> None:
        with open(folder / "assignments.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["index", "cluster", "confidence"])
            writer.writerows(zip(range(len(new_labels)), new_labels.tolist(), np.round(conf, 6).tolist()))
        (folder / "metrics.json").write_text(json.dumps(summary, indent=2, allow_nan=False))
        (folder / MERGE_FILE).write_text(json.dumps(merge_info, indent=2))
        (folder / TREE_FILE).write_text(json.dumps(new_tree))
        if (run / "model").is_dir():
            shutil.copytree(run / "model", folder / "model", symlinks=True)
        if report is not None:
            from deepclust.report import render_html

            (folder / "report_data.json").write_text(json.dumps(report), encoding="utf-8")
            (folder / "report.html").write_text(render_html(report), encoding="utf-8")

    target = default_out(run, k) if out is None else Path(out)
    if out is not None and (target.exists() or target.is_symlink()):
        raise DeepclustError(f"--out {str(out)!r} exists; merge writes only a new folder")
    if run.resolve() in Path(os.path.abspath(target)).resolve().parents:
        raise DeepclustError(f"--out {str(out)!r} lies inside the run {run}; merge never writes into the source run")
    written = write_run_dir(target, fill, overwrite=False, inputs=(run,))
    return MergeOutput(written, k_from, k, mapping, summary)


def _merged_report(run: Path, tree: dict[str, Any], mapping: dict[int, int], summary: dict[str, Any],
                   k: int) -> dict[str, Any]:
    """The source run's report data with the merged clusters (their fine clusters' explanations
    pooled), the map recoloured, the label counts merged, and the tree with its cut."""
    from deepclust.runtime import json_safe

    data = _read_json(run / "report_data.json")
    if not isinstance(data, dict) or "clusters" not in data or "map" not in data:
        raise DeepclustError(f"{run / 'report_data.json'} is not the report data of a `deepclust run`")
    data["summary"] = summary
    notes = dict(data.get("notes") or {})
    notes["k"] = (f"{k}, merged from the {len(mapping)} clusters of {run.name} along their Ward merge tree "
                  f"(no refit; was: {notes.get('k', len(mapping))})")
    data["notes"] = notes
    data["map"]["cluster"] = [mapping.get(int(c), -1) for c in data["map"]["cluster"]]
    data["clusters"] = pool_clusters(data["clusters"], mapping)
    con = remaining_tree(tree, k).get("contingency")
    if con and data.get("confusion"):
        from deepclust import metrics

        mat, _, clu = metrics.confusion_matrix(*_pairs(con), return_labels=True)
        data["confusion"] = {**data["confusion"], "matrix": mat.tolist(), "clusters": [int(c) for c in clu]}
    data["merge_tree"] = {**{key: tree[key] for key in ("criterion", "clusters", "sizes", "linkage")}, "cut_k": k}
    return json_safe(data)


#: per-member lists of a cluster's explanation that are pooled (round-robin) into the merged cluster
_POOLED = ("typical", "least_confident", "typical_confidence", "least_confidence", "typical_images", "least_images",
           "documents", "least_documents")


def pool_clusters(clusters: list[dict[str, Any]], mapping: dict[int, int]) -> list[dict[str, Any]]:
    """Explanations of merged clusters from those of their fine clusters: sizes and shares add up,
    confidences average by size, member lists are taken in turn from each fine cluster, keywords
    are re-ranked by their size-weighted score, known-label shares are size-weighted from each fine
    cluster's top three; rules and medoids (which describe one fine cluster) are dropped."""
    groups: dict[int, list[dict[str, Any]]] = {}
    for c in clusters:
        groups.setdefault(mapping.get(int(c["cluster"]), -1), []).append(c)
    out = []
    for new, members in groups.items():
        if new < 0:
            continue
        size = sum(c["size"] for c in members)
        info: dict[str, Any] = {"cluster": new, "size": size, "share": sum(c["share"] for c in members),
                                "silhouette": None, "spread": None,
                                "mean_confidence": sum(c["mean_confidence"] * c["size"] for c in members) / size,
                                "merged_from": sorted(int(c["cluster"]) for c in members)}
        for key in _POOLED:
            lists = [c[key] for c in members if key in c]
            if lists:
                n = max(len(lst) for lst in lists)
                info[key] = [lst[i] for i in range(n) for lst in lists if i < len(lst)][:n]
        if any("keywords" in c for c in members):
            weight: dict[str, float] = {}
            for c in members:
                for word, score in c.get("keywords", []):
                    weight[word] = weight.get(word, 0.0) + score * c["size"] / size
            info["keywords"] = [[w, round(s, 5)] for w, s in sorted(weight.items(), key=lambda t: -t[1])[:10]]
        if any("classes" in c for c in members):
            share: dict[str, float] = {}
            for c in members:
                for x in c.get("classes", []):
                    share[x["label"]] = share.get(x["label"], 0.0) + x["share"] * c["size"] / size
            info["classes"] = [{"label": lab, "share": s} for lab, s in sorted(share.items(), key=lambda t: -t[1])[:3]]
        out.append(info)
    out.sort(key=lambda d: -d["size"])
    return out


# ---------------------------------------------------------------------------------- prediction
class MergedModel:
    """A run's fitted model whose predictions are mapped to the merged clusters (``merge.json``)."""

    def __init__(self, model: Any, mapping: dict[int, int]):
        self.model = model
        self.mapping = dict(mapping)
        self.n_clusters_ = len(set(self.mapping.values()))

    def predict(self, X: Any) -> np.ndarray:
        fine = np.asarray(self.model.predict(X))
        return np.array([self.mapping.get(int(c), -1) for c in fine.tolist()], dtype=np.int64)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Each merged cluster's probability: the sum of its fine clusters' probabilities."""
        fine = np.asarray(self.model.predict_proba(X))
        out = np.zeros((len(fine), self.n_clusters_), dtype=np.float32)
        for c, new in self.mapping.items():
            if 0 <= c < fine.shape[1] and new >= 0:
                out[:, new] += fine[:, c]
        return out


def load_merged_model(run: str | Path) -> Any:
    """The model of a run folder: a :class:`MergedModel` for a merged run, else the model itself
    (both loaded by the safe :func:`deepclust.base.load_model`; ``merge.json`` is plain JSON, checked)."""
    from deepclust.base import load_model

    run = Path(run)
    model = load_model(run / "model")
    if not (run / MERGE_FILE).is_file():
        return model
    raw = _read_json(run / MERGE_FILE)
    try:
        mapping = {int(m): int(v) for m, v in raw["mapping"].items()}
    except (KeyError, TypeError, ValueError, AttributeError):
        raise DeepclustError(f"{run / MERGE_FILE} has no valid \"mapping\" of cluster numbers") from None
    return MergedModel(model, mapping)


__all__ = ["TREE_GAP", "MergeOutput", "MergedModel", "check_run", "cut", "tree_levels", "load_merged_model", "merge_run", "merge_tree",
           "pool_clusters", "remaining_tree", "ward_linkage"]
