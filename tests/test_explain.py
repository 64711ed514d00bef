"""Cluster explanations: c-TF-IDF keywords, decision-tree rules, medoids, per-cluster summaries."""

from __future__ import annotations

import numpy as np

from deepclust.data import Dataset, DatasetMeta
from deepclust.explain import c_tf_idf, cluster_rules, explain_clusters, medoid_index

DOCS = ["cats purr and meow", "the cat sleeps while cats purr", "kittens meow at night", "a cat and kittens purr",
        "dogs bark loudly", "the dog barks at other dogs", "puppies bark and play", "dogs fetch and bark"]
LABELS = [0, 0, 0, 0, 1, 1, 1, 1]


def test_c_tf_idf_keywords_name_each_topic() -> None:
    kw = c_tf_idf(DOCS, LABELS, top_n=3)
    cats, dogs = [w for w, _ in kw[0]], [w for w, _ in kw[1]]
    assert "purr" in cats and "bark" in dogs
    assert not set(cats) & set(dogs)
    assert "the" not in cats + dogs  # stop words dropped
    assert all(s > 0 for _, s in kw[0] + kw[1])
    assert kw[0][0][1] >= kw[0][-1][1]  # sorted by weight


def test_rules_separate_an_obvious_cluster() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    labels = (X[:, 1] > 0.8).astype(int)
    rules = cluster_rules(X, labels, 1, feature_names=["a", "b", "c"])
    assert rules
    for r in rules:
        assert 0 <= r.precision <= 1 and 0 <= r.coverage <= 1
    best = rules[0]
    assert best.text().startswith("b >") and best.precision > 0.95 and best.coverage > 0.95
    assert cluster_rules(X, np.zeros(400, int), 1) == []  # cluster absent: no rule


def test_medoid_is_central_member() -> None:
    X = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
    assert medoid_index(X, np.array([0, 1, 2])) == 1


def test_explain_table_clusters() -> None:
    rng = np.random.default_rng(1)
    X = np.vstack([rng.normal(0, 1, (60, 2)), rng.normal(6, 1, (40, 2))]).astype(np.float32)
    labels = np.array([0] * 60 + [1] * 40)
    ds = Dataset(X, labels.copy(), DatasetMeta("t", "table", feature_names=["height", "weight"], class_names=["a", "b"]))
    out = explain_clusters(ds, X, labels, np.full(100, 0.9, np.float32), n_examples=5)
    assert [c["size"] for c in out] == [60, 40]
    c0 = out[0]
    assert len(c0["typical"]) == 5 and set(c0["typical"]) <= set(range(60))
    assert c0["rules"] and c0["rules"][0]["precision"] > 0.9
    assert 0 <= c0["medoid"]["index"] < 60 and set(c0["medoid"]["values"]) == {"height", "weight"}
    assert c0["classes"][0] == {"label": "a", "share": 1.0}
    assert c0["silhouette"] > 0.5


def test_text_clusters_are_named_by_their_top_keywords() -> None:
    ds = Dataset(DOCS, None, DatasetMeta("t", "text"))
    Z = np.eye(2, dtype=np.float32)[LABELS]
    out = explain_clusters(ds, Z, np.array(LABELS))
    by_cluster = {c["cluster"]: c for c in out}
    assert by_cluster[0]["name"] == " · ".join(w for w, _ in by_cluster[0]["keywords"][:3])
    assert "purr" in by_cluster[0]["name"] and "bark" in by_cluster[1]["name"]
