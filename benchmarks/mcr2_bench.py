"""MCR² clustering (CPP, MLC) against k-means and SCAN on the same frozen embeddings (issue 17, part 2).

For every set: an embedding through the project's encode path and its cache (``--encoder``: MiniLM for
the text sets, the default; ``autoencoder``, DEC's autoencoder trained once on the image set with
``random_state=0`` as ``deepclust run`` and the semi-supervised benchmark use it), k = the number of
classes; per seed, k-means, CPP and MLC with the same settings, SCAN with its defaults, and CPP's / MLC's own
estimate of k by coding length (``estimate_k``, k = 2…40); per set, once (seed 0), ``select_k``'s
``coding_length`` criterion on the embedding itself. Labels are read only to score and to write
``true_k``. One thread; the load average is recorded before every run. One JSON record per run.

    OMP_NUM_THREADS=1 PYTHONPATH=src DEEPCLUST_DATA=../shared/data python benchmarks/mcr2_bench.py \\
        --out benchmarks/results/mcr2.jsonl
    OMP_NUM_THREADS=1 PYTHONPATH=src DEEPCLUST_DATA=../shared/data python benchmarks/mcr2_bench.py \\
        --encoder autoencoder --datasets usps,mnist-test --out benchmarks/results/mcr2-ae.jsonl
    python benchmarks/mcr2_bench.py --table benchmarks/results/mcr2.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SETS = ("searchsnippets", "stackoverflow", "biomedical", "agnews-8k")
#: the CPU settings (the defaults are the authors' GPU-sized ones: trunk 1024-1024, z 128, batch 1000, 30 epochs)
CPU = {"hidden_dims": [512, 512], "out_dim": 32, "batch_size": 500, "epochs": 10}
#: k-means and SCAN (its defaults: the reference the issue's goal names) beside CPP and MLC
METHODS: dict[str, dict[str, Any]] = {"kmeans": {}, "cpp": CPU, "mlc": CPU, "scan": {}}
#: the methods that take the ``CPU`` settings (and ``--set``)
MCR2 = ("cpp", "mlc")


def label(method: str, params: dict[str, Any]) -> str:
    return method + (f"[{','.join(f'{k}={v}' for k, v in sorted(params.items()))}]" if params else "")


def common(name: str, seed: int, encoder: str = "minilm", encoder_params: dict[str, Any] | None = None
           ) -> dict[str, Any]:
    from deepclust.runtime import machine_load, versions

    return {"dataset": name, "seed": seed, "encoder": encoder,
            **({"encoder_params": encoder_params} if encoder_params else {}), "device": "cpu", "threads": 1,
            "device_name": "AMD EPYC (2 cores, 1 torch threads)", **machine_load(), "versions": versions(),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S")}


def run(names: list[str], seeds: list[int], out: Path, methods: dict[str, dict[str, Any]] = METHODS,
        with_select_k: bool = True, encoder: str = "minilm", encoder_params: dict[str, Any] | None = None) -> None:
    import torch

    from deepclust.data import load_dataset
    from deepclust.encoders import encode_with_info
    from deepclust.methods import make_method
    from deepclust.metrics import accuracy, ari, nmi
    from deepclust.select_k import select_k

    torch.set_num_threads(1)

    def write(rec: dict[str, Any]) -> None:
        with open(out, "a") as fh:
            fh.write(json.dumps(rec) + "\n")

    data = {}
    for name in names:
        ds = load_dataset(name)
        X, info = encode_with_info(ds, encoder, device="cpu", cache=True, random_state=0,
                                    **(encoder_params or {}))
        print(f"{name}: {X.shape}, embeddings cached: {info['cached']} ({info['seconds']:.1f} s)", flush=True)
        data[name] = (np.asarray(X, np.float32), np.asarray(ds.y), int(ds.meta.n_classes))
    for seed in seeds:
        for name in names:
            X, y, k = data[name]
            if with_select_k and seed == seeds[0]:
                base = common(name, seed, encoder, encoder_params)
                t0 = time.perf_counter()
                sel = select_k(X, criteria=["coding_length"], rule="coding_length", random_state=seed)
                write({**base, "kind": "select_k", "method": "select_k[coding_length]", "true_k": k, "k": sel.k,
                       "k_values": sel.k_values, "curve": sel.to_dict()["curves"]["coding_length"],
                       "reduction": sel.extra["reduction"], "seconds": {"select_k": round(time.perf_counter() - t0, 2)}})
                print(f"{name}: select_k coding_length k = {sel.k} (true {k})", flush=True)
            for method, params in methods.items():
                base = common(name, seed, encoder, encoder_params)
                t0 = time.perf_counter()
                model = make_method(method, n_clusters=k, random_state=seed, device="cpu", **params).fit(X)
                fit_s = time.perf_counter() - t0
                rec = {**base, "kind": "clustering", "method": method, "label": label(method, params), "params": params,
                       "n": len(X), "k": k, "acc": accuracy(y, model.labels_), "nmi": nmi(y, model.labels_),
                       "ari": ari(y, model.labels_), "n_clusters_found": int(len(np.unique(model.labels_))),
                       "seconds": {"fit": round(fit_s, 2), **{f"fit.{p}": round(v, 2)
                                                               for p, v in getattr(model, "timings_", {}).items()}}}
                if hasattr(model, "estimate_k"):
                    t0 = time.perf_counter()
                    rec["k_estimate"] = {**model.estimate_k(), "true_k": k}
                    rec["seconds"]["estimate_k"] = round(time.perf_counter() - t0, 2)
                    joint = [r for r in model.history_["train"] if r.get("phase") == "joint"]
                    rec["rate_reduction"] = [round(r["rate_reduction"], 4) for r in joint]
                write(rec)
                print(f"{name} seed {seed} {method}: ACC {rec['acc']:.4f} NMI {rec['nmi']:.4f} "
                      f"k estimate {rec.get('k_estimate', {}).get('k', '-')} ({fit_s:.0f} s, load {base['load_avg'][0]})",
                      flush=True)


def _ms(values: list[float]) -> str:
    a = np.asarray(values, float)
    return f"{a.mean():.3f} ± {a.std(ddof=1) if len(a) > 1 else 0.0:.3f}"


def _set(r: dict[str, Any]) -> str:
    """The set's name, with its encoder (and the encoder's settings) where that is not MiniLM."""
    enc = label(r.get("encoder", "minilm"), r.get("encoder_params", {}))
    return r["dataset"] if enc == "minilm" else f"{r['dataset']} ({enc})"


def table_of(records: list[dict[str, Any]]) -> str:
    """Per set and method (named with the settings that differ from ``CPU``): ACC, NMI, ARI (mean ± std
    over seeds), fit seconds, and the k each coding-length estimate chose (CPP/MLC: one per seed;
    select_k's criterion, on the k-means row: seed 0) against the true k (bold when equal); then each
    method's mean over the sets it ran on."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    chosen: dict[str, int] = {}
    for r in records:
        if r.get("kind") == "select_k":
            chosen[_set(r)] = r["k"]
        else:
            groups[(_set(r), r["label"])].append(r)
    lines = ["| dataset | true k | method | seeds | ACC | NMI | ARI | fit s | k by coding length |",
             "|---|---:|---|---:|---|---|---|---:|---|"]
    for (dataset, lab), rs in sorted(groups.items()):
        if "k_estimate" in rs[0]:
            ks = [r["k_estimate"]["k"] for r in rs]
            est = ", ".join(f"**{k}**" if k == rs[0]["k"] else str(k) for k in ks) + " (trained model, per seed)"
        elif dataset in chosen and rs[0]["method"] == "kmeans":
            k = chosen[dataset]
            est = (f"**{k}**" if k == rs[0]["k"] else str(k)) + " (select_k on the embedding, seed 0)"
        else:
            est = "–"
        changed = {k: v for k, v in rs[0].get("params", {}).items() if CPU.get(k) != v}
        lines.append(f"| {dataset} | {rs[0]['k']} | {label(rs[0]['method'], changed)} | {len(rs)} | {_ms([r['acc'] for r in rs])} | "
                     f"{_ms([r['nmi'] for r in rs])} | {_ms([r['ari'] for r in rs])} | "
                     f"{np.mean([r['seconds']['fit'] for r in rs]):.0f} | {est} |")
    per_method: dict[str, list[list[dict[str, Any]]]] = defaultdict(list)
    for (_, lab), rs in groups.items():
        per_method[lab].append(rs)
    for lab, sets in sorted(per_method.items()):
        if len(sets) > 1:
            mean = {key: np.mean([np.mean([r[key] for r in rs]) for rs in sets]) for key in ("acc", "nmi", "ari")}
            changed = {k: v for k, v in sets[0][0].get("params", {}).items() if CPU.get(k) != v}
            lines.append(f"| **mean of {len(sets)} sets** | | {label(sets[0][0]['method'], changed)} | | "
                         f"{mean['acc']:.3f} | {mean['nmi']:.3f} | {mean['ari']:.3f} | | |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--table", metavar="JSONL", help="print the markdown table of a results file and exit")
    p.add_argument("--datasets", default=",".join(SETS))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--out", default="benchmarks/results/mcr2.jsonl")
    p.add_argument("--methods", default=",".join(METHODS), help="a subset of " + ", ".join(METHODS))
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="change one CPU setting of cpp and mlc (e.g. out_dim=64); repeatable")
    p.add_argument("--encoder", default="minilm", help="the embedding (an encoder name: minilm, autoencoder, …)")
    p.add_argument("--encoder-param", action="append", default=[], metavar="KEY=JSON",
                   help="a setting of the encoder (e.g. image_size=112); repeatable")
    p.add_argument("--no-select-k", action="store_true", help="skip select_k's coding-length criterion")
    args = p.parse_args()
    if args.table:
        print(table_of([json.loads(line) for line in open(args.table) if line.strip()]))
        return
    changes = {k: json.loads(v) for k, _, v in (a.partition("=") for a in args.set)}
    methods = {m: ({**METHODS[m], **changes} if m in MCR2 else METHODS[m]) for m in args.methods.split(",") if m}
    run([d for d in args.datasets.split(",") if d], [int(s) for s in args.seeds.split(",")], Path(args.out),
        methods, not args.no_select_k, args.encoder,
        {k: json.loads(v) for k, _, v in (a.partition("=") for a in args.encoder_param)})


if __name__ == "__main__":
    main()
