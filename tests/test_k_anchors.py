"""The anchors of the k benchmark (benchmarks/select_k_bench.py --anchors): the hit rule, the wall-clock
cap, the anchors' wiring on clear blobs, and the ``k-anchors`` table of BENCHMARKS.md."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import select_k_bench as skb  # noqa: E402
import tables  # noqa: E402


def test_hit_is_exact_up_to_ten_and_within_the_tolerance_above():
    assert skb.hit(10, 10, 0.10) and not skb.hit(11, 10, 0.10) and not skb.hit(9, 10, 0.10)
    assert skb.hit(28, 26, 0.10) and skb.hit(24, 26, 0.10) and not skb.hit(29, 26, 0.10)


def _sleep_then(value: int) -> int:
    time.sleep(value)
    return value


def test_capped_returns_the_result_or_timeout_or_the_error():
    assert skb.capped(_sleep_then, (0,), 30)[0] == 0
    out, seconds = skb.capped(_sleep_then, (60,), 0.5)
    assert out == "timeout" and seconds < 30
    assert skb.capped(_sleep_then, ("x",), 30)[0].startswith("error: TypeError")


@pytest.mark.parametrize("anchor", ["xmeans", "gmeans", "hdbscan"])
def test_anchors_find_three_clear_blobs(anchor):
    pytest.importorskip("clustpy")
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(300, 5, centers=3, cluster_std=0.3, center_box=(-20, 20), random_state=0)
    assert skb.anchor_k(anchor, X.astype(np.float32), 0) == 3


def records() -> tuple[list[dict], list[dict]]:
    base = {"encoder": "raw", "seed": 0}
    anchors = [{**base, "dataset": "a", "space": "layout", "true_k": 10,
                "choices": {"xmeans": 10, "gmeans": 12, "dipmeans": "timeout", "gap": 9, "hdbscan": 10}},
               {**base, "dataset": "b", "space": "features", "true_k": 26,
                "choices": {"xmeans": 28, "gmeans": 40, "dipmeans": 1, "gap": "error: x", "hdbscan": 24}}]
    ours = [{**base, "dataset": "a", "true_k": 10, "choices": {"silhouette": 10, "median": 11}},
            {**base, "dataset": "b", "true_k": 26, "choices": {"silhouette": 30, "median": 27}}]
    return anchors, ours


def test_k_anchors_table_renders_from_the_records(tmp_path):
    anchors, ours = records()
    for name, recs in (("k-anchors.jsonl", anchors), ("select-k-v2.jsonl", ours)):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in recs))
    text = tables.render("k-anchors k-anchors.jsonl select-k-v2.jsonl", tmp_path)
    lines = text.splitlines()
    assert lines[0].startswith("| set | true k | select_k (silhouette) | select_k (median) | xmeans (features)")
    # a: select_k right, median wrong; no features record; layout: xmeans and hdbscan right, dipmeans timed out
    assert lines[2] == "| a | 10 | **10** | 11 | – | – | – | – | – | **10** | 12 | timeout | 9 | **10** |"
    assert lines[3] == "| b | 26 | 30 | **27** | **28** | 40 | 1 | error | **24** | – | – | – | – | – |"
    assert lines[4] == ("| **right on N of 2** (±10 %, exact for k ≤ 10) | | 1/2 | 1/2 | 1/2 | 0/2 | 0/2 | 0/2 | "
                        "1/2 | 1/2 | 0/2 | 0/2 | 0/2 | 1/2 |")


def test_later_anchors_of_the_same_set_and_space_add_columns(tmp_path):
    anchors, ours = records()
    later = [{"encoder": "raw", "seed": 0, "dataset": "a", "space": "layout", "true_k": 10, "choices": {"deepdpm": 10}},
             {"encoder": "raw", "seed": 0, "dataset": "b", "space": "features", "true_k": 26,
              "choices": {"deepdpm": "timeout", "coding_length": 27}}]
    for name, recs in (("k-anchors.jsonl", anchors), ("k-anchors-deepdpm.jsonl", later), ("select-k-v2.jsonl", ours)):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in recs))
    lines = tables.render("k-anchors k-anchors.jsonl k-anchors-deepdpm.jsonl select-k-v2.jsonl", tmp_path).splitlines()
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    assert head[8:12] == ["hdbscan (features)", "deepdpm (features)", "coding_length (features)", "xmeans (layout)"]
    assert head[-1] == "deepdpm (layout)" and "coding_length (layout)" not in head
    # the older anchors of the same set and space are kept beside the new ones
    assert lines[2].endswith("| **10** | 12 | timeout | 9 | **10** | **10** |")
    assert "| **24** | timeout | **27** |" in lines[3]


def test_ppp_anchor_searches_the_space_it_is_given():
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(300, 5, centers=3, cluster_std=0.3, center_box=(-20, 20), random_state=0)
    assert skb.anchor_k("ppp", X.astype(np.float32), 0) == 3


def test_ppp_is_a_layout_column_only(tmp_path):
    anchors, ours = records()
    later = [{"encoder": "raw", "seed": 0, "dataset": "a", "space": "layout", "true_k": 10, "choices": {"ppp": 12}},
             {"encoder": "raw", "seed": 0, "dataset": "b", "space": "layout", "true_k": 26, "choices": {"ppp": 25}}]
    for name, recs in (("k-anchors.jsonl", anchors), ("k-anchors-ppp.jsonl", later), ("select-k-v2.jsonl", ours)):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in recs))
    lines = tables.render("k-anchors k-anchors.jsonl k-anchors-ppp.jsonl select-k-v2.jsonl", tmp_path).splitlines()
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    assert head[-1] == "ppp (layout)" and "ppp (features)" not in head
    assert lines[2].endswith("| **10** | 12 |") and lines[3].endswith("| – | **25** |")
    assert lines[4].endswith("| 1/2 | 1/2 |")  # hdbscan (layout) right on a, ppp right on b
