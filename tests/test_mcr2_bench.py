"""benchmarks/mcr2_bench.py: the table's rows (SCAN beside k-means, the encoder in the set's name) and
the settings each method gets."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import mcr2_bench as mb  # noqa: E402


def _rec(method: str, seed: int, acc: float, encoder: str = "autoencoder", **extra) -> dict:
    params = mb.CPU if method in mb.MCR2 else {}
    return {"kind": "clustering", "dataset": "usps", "encoder": encoder, "method": method,
            "label": mb.label(method, params), "params": params, "seed": seed, "k": 10, "acc": acc,
            "nmi": acc, "ari": acc, "seconds": {"fit": 1.0}, **extra}


def test_table_shows_scan_and_names_the_encoder_and_puts_select_k_on_the_kmeans_row_only() -> None:
    recs = [{"kind": "select_k", "dataset": "usps", "encoder": "autoencoder", "k": 7, "seed": 0},
            *(_rec("kmeans", s, 0.6 + s / 100) for s in range(3)),
            *(_rec("scan", s, 0.7) for s in range(3)),
            *(_rec("cpp", s, 0.5, k_estimate={"k": 10 + s}) for s in range(3))]
    rows = {line.split(" | ")[2]: line for line in mb.table_of(recs).splitlines()[2:]}
    assert set(rows) == {"kmeans", "scan", "cpp"}
    assert all(line.startswith("| usps (autoencoder) |") for line in rows.values())
    assert "7 (select_k" in rows["kmeans"] and "select_k" not in rows["scan"] and rows["scan"].endswith("| – |")
    assert "**10**, 11, 12 (trained model" in rows["cpp"]
    assert "0.610 ± 0.010" in rows["kmeans"]


def test_minilm_sets_keep_their_bare_names() -> None:
    table = mb.table_of([_rec("kmeans", 0, 0.5, encoder="minilm")])
    assert "| usps | 10 | kmeans |" in table


def test_only_cpp_and_mlc_take_the_cpu_settings() -> None:
    assert mb.METHODS["scan"] == {} and mb.METHODS["kmeans"] == {}
    assert all(mb.METHODS[m] is mb.CPU for m in mb.MCR2)


def test_encoder_settings_are_part_of_the_sets_name() -> None:
    rec = _rec("kmeans", 0, 0.5, encoder="efficientnet-lite0", encoder_params={"image_size": 112})
    assert "| usps (efficientnet-lite0[image_size=112]) | 10 | kmeans |" in mb.table_of([rec])
