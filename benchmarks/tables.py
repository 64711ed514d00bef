"""BENCHMARKS.md's tables, generated from the raw records in benchmarks/results/.

Every generated table sits between two markers that name how it is made::

    <!-- table: bench kmeans-raw.jsonl -->
    ...
    <!-- /table -->

and everything outside the markers (the protocol, the reading, the published figures with their
source) is text written by hand and left alone. Kinds: ``bench`` (the mean ± std table of
``deepclust table``; option ``merge-devices`` pools runs that differ only in thread count),
``kmeans`` (benchmarks/kmeans_bench.py; options ``dataset=`` and ``init=``), ``clustpy``
(benchmarks/clustpy_side_by_side.py), ``select-k`` (benchmarks/select_k_bench.py), ``k-anchors``
(its ``--anchors`` records beside select_k's v2 records of seed 0), ``semisup``
(benchmarks/semisup_bench.py), ``semisup-pairs`` (benchmarks/semisup_pairs_bench.py), ``discovery``
(benchmarks/discovery_bench.py), ``mcr2`` (benchmarks/mcr2_bench.py), ``depict-init``
(benchmarks/depict_init_bench.py), ``ddp`` (benchmarks/ddp_bench.py), ``dask``
(benchmarks/dask_bench.py), ``imbalanced`` (benchmarks/imbalanced_bench.py), ``large-k-generated``
(benchmarks/large_k_generated.py) and the GPU
call's ``gpu-depict``, ``gpu-kmeans``, ``gpu-clustpy``, ``gpu-other`` and ``gpu-status``, which read
every ``gpu-*.jsonl`` (benchmarks/gpu/collect.py writes them) and say what still awaits the call.
Below each table a line says whether the machine was idle, from the load average in the records.

    python benchmarks/tables.py            # rewrite the tables of BENCHMARKS.md
    python benchmarks/tables.py --check    # exit 1 when BENCHMARKS.md is not what the records give
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from deepclust.bench import format_table, mean_std, summarize  # noqa: E402

BLOCK = re.compile(r"(<!-- table: (?P<spec>[^>]*?) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)
GPU_GLOB = "gpu-*.jsonl"
AWAITING = "**Awaiting the GPU call** ([benchmarks/gpu/README.md](benchmarks/gpu/README.md)): no record yet."
Records = list[dict[str, Any]]


# ---------------------------------------------------------------------------------------------- helpers
def read_jsonl(paths: list[Path]) -> Records:
    """Every record of these JSONL files, in order (of any benchmark script, not only ``deepclust bench``)."""
    records = []
    for path in paths:
        if not path.is_file():
            raise SystemExit(f"error: {path} does not exist (named in a table marker of BENCHMARKS.md)")
        for no, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise SystemExit(f"error: {path}:{no} is not a JSON record ({exc})") from exc
    return records


def _ms(pair: tuple[float, float], digits: int) -> str:
    m, s = pair
    return "–" if math.isnan(m) else f"{m:.{digits}f} ± {s:.{digits}f}"


def _f(value: Any, digits: int = 3) -> str:
    return "–" if not isinstance(value, (int, float)) or math.isnan(value) else f"{value:.{digits}f}"


def _threads(r: dict[str, Any]) -> int:
    """The run's own CPU threads: what its load average may hold without any other job."""
    if isinstance(r.get("threads"), int):
        return r["threads"]
    m = re.search(r"(\d+) torch threads", r.get("device_name") or r.get("cpu") or r.get("device") or "")
    return int(m.group(1)) if m else 1


def machine_line(records: Records) -> str:
    """Whether the machine was idle: the 1-minute load average in each record against the run's own
    threads (a run alone keeps the load at about its thread count)."""
    loads = [(r["load_avg"][0] - _threads(r), r.get("cpu_count")) for r in records if r.get("load_avg")]
    missing = len(records) - len(loads)
    if not loads:
        return "Machine: load not recorded (older records); the text says whether other jobs shared it."
    worst, cores = max(loads, key=lambda x: x[0])
    state = ("idle: no other job ran (1-minute load average at most 0.5 above the run's own threads)"
             if worst <= 0.5 else
             f"**shared** with other jobs: 1-minute load average up to {worst:.1f} above the run's own "
             f"threads, on {cores} cores; seconds are upper bounds")
    return f"Machine: {state}" + (f"; {missing} older records carry no load" if missing else "") + "."


def latest(records: Records, key: Callable[[dict[str, Any]], Any]) -> Records:
    """The newest record of each key (a rerun with `make bench` replaces the run it repeats)."""
    newest: dict[Any, dict[str, Any]] = {}
    for r in records:  # files are appended in time order
        newest[key(r)] = r
    return list(newest.values())


def _bench_key(r: dict[str, Any]) -> tuple:
    return (r["dataset"], r.get("label", r["method"]), r.get("encoder", "raw"), r.get("device_name"), r["seed"],
            r.get("protocol"))


# ---------------------------------------------------------------------------------------------- kinds
def select(kind: str, records: Records, dataset: str | None = None, init: str | None = None,
           **options: Any) -> Records:
    """The records a CPU table shows: those its options name, the newest of each run."""
    if kind == "kmeans":
        records = [r for r in records if (dataset is None or r["dataset"] == dataset)
                   and (init is None or r["init_mode"] == init)]
        return latest(records, lambda r: (r["dataset"], r["n"], r["k"], r["iters"], r["init_mode"], r["library"],
                                          r["seed"], r.get("device")))
    if kind == "clustpy":
        return latest(records, lambda r: (r["library"], r["method"], r["dataset"], r["seed"], r["pretrain_epochs"],
                                          r["clustering_epochs"], r.get("device_name")))
    if kind in ("select-k", "select-k-v2"):
        return latest(records, lambda r: (r["dataset"], r["seed"]))
    if kind == "depict-init":
        return latest(records, lambda r: (r["dataset"], r["seed"], r["init"]))
    if kind == "k-anchors":
        return latest([r for r in records if r["seed"] == 0],
                      lambda r: (r["dataset"], r.get("space"), tuple(sorted(r["choices"])) if "space" in r else None))
    if kind == "run-choice":
        return latest(records, lambda r: (r["set"], r["seed"]))
    if kind == "semisup":
        return latest(records, lambda r: (r["dataset"], r["encoder"], r["seed"], r["label_fraction"], r["method"]))
    if kind == "semisup-ceiling":
        return latest(records, lambda r: (r.get("benchmark"), r["dataset"], r["encoder"], r.get("seed"),
                                          r.get("label_fraction"), r.get("method")))
    if kind == "ddp":
        return latest(records, lambda r: (r["method"], r["dataset"], r["processes"], r["threads_per_process"], r["seed"]))
    if kind == "dask":
        return latest(records, lambda r: (r["n"], r["k"], r["max_iter"], r["library"], r.get("init"),
                                          bool(r.get("side_by_side"))))
    if kind == "semisup-pairs":
        return latest(records, lambda r: (r["dataset"], r["encoder"], r["seed"], r["pair_fraction"], r["method"]))
    if kind == "mcr2":
        return latest(records, lambda r: (r["dataset"], r.get("label", r["method"]), r["seed"]))
    if kind == "large-k-generated":
        return latest(records, lambda r: (r["k"], r["label"], r["seed"]))
    if kind == "discovery":
        return latest(records, lambda r: (r["benchmark"], r["dataset"], r["method"], r.get("setting"), r["seed"]))
    return latest(records, _bench_key)


def table_bench(records: Records, merge_devices: bool = False) -> str:
    if merge_devices:
        names = "; ".join(sorted({r.get("device_name", "") for r in records}))
        records = [{**r, "device_name": names} for r in records]
    return format_table(summarize(records))


def table_manyclass(records: Records) -> str:
    """Many-class runs (issue 20): the bench table's scores with the smallest number of non-empty
    clusters, the fit time as a multiple of k-means' on the same set, and the 1-minute load average
    (range) the runs started at, so that seconds from a shared machine are read as such."""
    groups: dict[tuple, Records] = defaultdict(list)
    for r in records:
        groups[(r["dataset"], r.get("label", r["method"]))].append(r)
    kmeans = {d: mean_std([r["seconds"]["fit"] for r in rs])[0] for (d, m), rs in groups.items() if m == "kmeans"}
    lines = ["| dataset | k | method | seeds | ACC | NMI | ARI | non-empty clusters (min) | fit s | × k-means | "
             "peak MiB | load at start |", "|" + "---|" * 12]
    for (dataset, label), rs in sorted(groups.items()):
        fit = mean_std([r["seconds"]["fit"] for r in rs])
        loads = [r["load_avg"][0] for r in rs if r.get("load_avg")]
        found = [r.get("n_clusters_found") for r in rs if r.get("n_clusters_found") is not None]
        lines.append("| " + " | ".join([
            dataset, str(rs[0]["k"]), label, str(len(rs)),
            *(_ms(mean_std([r.get(key) for r in rs]), 3) for key in ("acc", "nmi", "ari")),
            str(min(found)) if found else "–", _ms(fit, 1),
            f"{fit[0] / kmeans[dataset]:.0f}" if kmeans.get(dataset) else "–",
            f"{max(r.get('peak_memory_mb') or 0 for r in rs):.0f}" if any(r.get("peak_memory_mb") for r in rs) else "–",
            f"{min(loads):.1f}–{max(loads):.1f}" if loads else "–",
        ]) + " |")
    return "\n".join(lines)


def table_kmeans(records: Records, **selection: Any) -> str:
    groups: dict[tuple, Records] = defaultdict(list)
    for r in records:
        groups[(r["dataset"], r["n"], r["d"], r["k"], r["iters"], r["init_mode"], r["library"],
                r.get("library_version"), r.get("device", "cpu"), r["threads"])].append(r)
    best: dict[tuple, float] = {}
    for g, rs in groups.items():
        inertia = mean_std([r["inertia"] for r in rs])[0]
        best[g[:6]] = min(best.get(g[:6], math.inf), inertia)
    lines = ["| data | start | library | device | threads | runs | init s | s / iteration | total s | inertia "
             "(mean) | vs best |", "|" + "---|" * 11]
    for g, rs in groups.items():
        dataset, n, d, k, iters, init_mode, lib, version, device, threads = g
        inertia = mean_std([r["inertia"] for r in rs])[0]
        lines.append(f"| {dataset} {n:,} × {d}, k = {k}, {iters} it. | {init_mode} | {lib} {version} | {device} | "
                     f"{threads} | {len(rs)} | {_ms(mean_std([r['seconds']['init'] for r in rs]), 2)} | "
                     f"{_ms(mean_std([r['seconds_per_iteration'] for r in rs]), 3)} | "
                     f"{_ms(mean_std([r['seconds']['total'] for r in rs]), 2)} | {inertia:.6g} | "
                     f"{inertia / best[g[:6]]:.4f} |")
    return "\n".join(lines)


def table_clustpy(records: Records) -> str:
    pairs: dict[tuple, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in records:
        pairs[(r["method"], r["dataset"], r.get("n"), r["seed"], r["pretrain_epochs"], r["clustering_epochs"],
               r.get("device_name"))][r["library"]] = r
    lines = ["| method | data | epochs (pretrain + clustering) | seed | ClustPy ACC / NMI | ours ACC / NMI | ClustPy s "
             "| ours s | ClustPy s ÷ ours s | device |", "|" + "---|" * 10]
    for (method, dataset, n, seed, pre, clu, device), libs in sorted(pairs.items(), key=lambda x: tuple(map(str, x[0]))):
        c, o = libs.get("clustpy", {}), libs.get("deepclust", {})
        ratio = c["seconds"] / o["seconds"] if c and o else float("nan")
        lines.append(f"| {method} | {dataset} ({n:,}) | {pre} + {clu} | {seed} | {_f(c.get('acc'))} / {_f(c.get('nmi'))} | "
                     f"{_f(o.get('acc'))} / {_f(o.get('nmi'))} | {_f(c.get('seconds'), 1)} | {_f(o.get('seconds'), 1)} | "
                     f"{_f(ratio, 2)} | {device} |")
    return "\n".join(lines)


V1_CRITERIA = ("ppp", "umap_silhouette", "bic", "gap", "eigengap")  # the v1 vote's (select-k.jsonl)


def table_select_k(records: Records) -> str:
    """The v1 k-selection records (the five-criterion vote): per set the chosen k, each criterion's k
    (bold where it is the true k), ACC/NMI and seconds, and how often each found the true k."""
    head = ("| dataset | n | true k | chosen k | " + " | ".join(V1_CRITERIA) + " | ACC | NMI | choosing k (s) | "
            "run total (s) |\n|---|---:|---:|---:|" + "---:|" * len(V1_CRITERIA) + "---:|---:|---:|---:|")
    rows = []
    for r in records:
        ch = " | ".join(("**%d**" if r["choices"][c] == r["true_k"] else "%d") % r["choices"][c] for c in V1_CRITERIA)
        rows.append(f"| {r['dataset']} | {r['n_samples']:,} | {r['true_k']} | "
                    f"{'**%d**' % r['chosen_k'] if r['found_true_k'] else r['chosen_k']} | {ch} | "
                    f"{r['acc']:.3f} | {r['nmi']:.3f} | {r['seconds']['select_k']:.0f} | {r['wall_seconds']:.0f} |")
    hits = " | ".join(f"{sum(r['choices'][c] == r['true_k'] for r in records)}/{len(records)}" for c in V1_CRITERIA)
    rows.append(f"| **true k found** | | | {sum(r['found_true_k'] for r in records)}/{len(records)} | {hits} | | | | |")
    return "\n".join([head, *rows])


def table_select_k_v2(records: Records) -> str:
    from select_k_bench import table_of

    return table_of(records)


def table_mcr2(records: Records) -> str:
    from mcr2_bench import table_of

    return table_of(records)


def table_k_anchors(records: Records) -> str:
    """The anchors' k (records with a ``space``) beside select_k's (the v2 records of the same sets)."""
    from select_k_bench import anchors_table_of

    return anchors_table_of([r for r in records if "space" in r], {r["dataset"]: r for r in records if "space" not in r})


def table_run_choice(records: Records) -> str:
    from run_bench import table_of

    return table_of(records)


def table_depict_init(records: Records) -> str:
    """benchmarks/depict_init_bench.py: one row per start, the same pretrained autoencoder."""
    lines = ["| dataset | seed | start | ACC | NMI | fit s | pretraining s (0: cached) | start s | clustering s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        s = r["seconds"]
        lines.append(f"| {r['dataset']} | {r['seed']} | {r['init']} | {_f(r['acc'])} | {_f(r['nmi'])} | "
                     f"{_f(s['fit'], 0)} | {_f(s.get('fit.pretrain'), 0)} | {_f(s.get('fit.init'), 1)} | "
                     f"{_f(s.get('fit.cluster'), 0)} |")
    return "\n".join(lines)


def table_semisup(records: Records) -> str:
    from semisup_bench import table_of

    return table_of(records)


def table_semisup_ceiling(records: Records) -> str:
    from semisup_bench import ceiling_table

    return ceiling_table(records)


def table_ddp(records: Records) -> str:
    from ddp_bench import table_of

    return table_of(records)


def table_discovery(records: Records) -> str:
    from discovery_bench import table_of

    return table_of(records)


def table_semisup_pairs(records: Records) -> str:
    from semisup_pairs_bench import table_of

    return table_of(records)


def _gpu(records: Records, steps: Callable[[str], bool]) -> Records:
    return [r for r in records if steps(r.get("step", "")) and "status" not in r]


def table_gpu_depict(records: Records) -> str:
    rows = _gpu(records, lambda s: s.startswith("depict-"))
    batches = [f"batch {r['batch_size']:,}: {r['samples_per_s']:,.0f} images/s, {r['ms_per_step']:.2f} ms a step"
               for r in _gpu(records, lambda s: s == "pretrain-batch")]
    if not rows:
        return AWAITING + " Goal: DEPICT on MNIST-full (target=dec, seed 0) in ≤ 60 s on one H100 at ACC ≥ 0.965."
    lines = ["| dataset | method | seed | ACC | NMI | fit s | pretrain s | init s | warm-up s | clustering s | "
             "pretraining samples/s | matrix TFLOP/s (share of the measured bf16 rate) | peak MiB | device |",
             "|" + "---|" * 14]
    for r in rows:
        s, p = r["seconds"], r.get("pretrain") or {}
        rate = (f"{p['tflops']:.1f} ({100 * p['share_of_measured_matmul_peak']:.1f} %)"
                if "share_of_measured_matmul_peak" in p else _f(p.get("tflops"), 1) if p else "cached autoencoder")
        lines.append(f"| {r['dataset']} | {r['label']} | {r['seed']} | {_f(r['acc'])} | {_f(r['nmi'])} | "
                     f"{_f(s['fit'], 1)} | {_f(s.get('fit.pretrain'), 1)} | {_f(s.get('fit.init'), 1)} | "
                     f"{_f(s.get('fit.warmup'), 1)} | {_f(s.get('fit.cluster'), 1)} | {_f(p.get('samples_per_s'), 0)} | "
                     f"{rate} | {_f(r.get('peak_memory_mb'), 0)} | {r['device_name']} |")
    return "\n".join(lines) + ("\n\nPretraining alone, 2 epochs of MNIST-full: " + "; ".join(batches) + "."
                               if batches else "")


def table_gpu_kmeans(records: Records) -> str:
    rows = [r for r in _gpu(records, lambda s: s.startswith("kmeans-")) if "library" in r]
    if not rows:
        return AWAITING + " Goal: ours on the GPU ≥ 10× faster than faiss-cpu on all cores at the same inertia."
    runs: dict[tuple, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        runs[(r["dataset"], r["n"], r["k"], r["init_mode"], r.get("timestamp", ""))][r["library"]] = r
    per_data: dict[tuple, list[tuple[float, float, float]]] = defaultdict(list)  # one entry per call
    for (d, n, k, init, _), libs in runs.items():
        if {"deepclust", "faiss"} <= set(libs):
            o, f = libs["deepclust"], libs["faiss"]
            per_data[(d, n, k, init)].append((f["seconds_per_iteration"] / o["seconds_per_iteration"],
                                              f["seconds"]["total"] / o["seconds"]["total"], o["inertia"] / f["inertia"]))
    ratios = [f"{d} {n:,}, k = {k}, {init} start ({len(rs)} call{'s' * (len(rs) > 1)}): faiss ÷ ours "
              f"{' / '.join(f'{r[0]:.1f}' for r in rs)}× per iteration, {' / '.join(f'{r[1]:.1f}' for r in rs)}× "
              f"whole fit, inertia ratio {rs[-1][2]:.5f}" for (d, n, k, init), rs in per_data.items()]
    return table_kmeans(rows) + ("\n\nSpeed-up over faiss-cpu: " + "; ".join(ratios) + "." if ratios else "")


def table_gpu_clustpy(records: Records) -> str:
    rows = _gpu(records, lambda s: s.endswith("-clustpy"))
    if not rows:
        return AWAITING + " Goal: DEC and IDEC ≥ 5× faster than ClustPy 0.0.3 at ≥ its ACC, same epochs."
    return table_clustpy(rows)


def table_gpu_other(records: Records) -> str:
    rows = [r for r in _gpu(records, lambda s: s in ("kmeans-mnist", "ae-kmeans", "n2d", "efficientnet"))
            if "library" not in r]
    if not rows:
        return AWAITING + " k-means (ACC), AE + k-means and N2D on MNIST-full; EfficientNet-Lite0 images/s."
    # MNIST-full (70,000) and its test split (10,000, the EfficientNet step) are different data
    rows = [{**r, "dataset": f"{r['dataset']} ({r['n']:,})"} if r.get("n") else r for r in rows]
    table = format_table(summarize(rows))
    speed = [f"{r['encoder']}: {r['images_per_s']:,.0f} images/s on {r['n']:,} images ({r['device_name']})"
             for r in rows if r.get("images_per_s")]
    return table + ("\n\nEmbedding throughput: " + "; ".join(speed) + "." if speed else "")


def table_gpu_status(records: Records) -> str:
    if not records:
        return AWAITING
    lines = ["| call | device | step | status | step s |", "|---|---|---|---|---|"]
    done: dict[tuple, str] = {}
    seconds: dict[tuple, Any] = {}
    for r in records:  # "call": the records file, one per call (``render`` adds it)
        key = (r.get("call") or r.get("timestamp", "")[:10], r.get("device_name", ""), r["step"])
        if "status" in r:
            done[key] = r["status"] + (f" ({r['reason']})" if r.get("reason") else "")
        else:
            done.setdefault(key, "done")
        seconds[key] = r.get("step_seconds")
    for (call, device, step), status in done.items():
        lines.append(f"| {call} | {device} | {step} | {status} | {_f(seconds.get((call, device, step)), 1)} |")
    return "\n".join(lines)


KINDS: dict[str, Callable[..., str]] = {
    "bench": table_bench, "kmeans": table_kmeans, "clustpy": table_clustpy, "select-k": table_select_k, "select-k-v2": table_select_k_v2,
    "run-choice": table_run_choice, "semisup": table_semisup, "mcr2": table_mcr2,
    "depict-init": table_depict_init, "k-anchors": table_k_anchors, "ddp": table_ddp,
    "gpu-depict": table_gpu_depict, "gpu-kmeans": table_gpu_kmeans, "gpu-clustpy": table_gpu_clustpy,
    "gpu-other": table_gpu_other, "gpu-status": table_gpu_status,
}
KINDS["semisup-pairs"] = table_semisup_pairs  # pairwise constraints: COP/PCK-k-means, ClusterNet, DCC (issue 18)
KINDS["manyclass"] = table_manyclass  # bench records with non-empty clusters, × k-means and load (issue 20)
KINDS["discovery"] = table_discovery  # novel-class and generalized category discovery (issue 18, methods 5-6)
KINDS["semisup-ceiling"] = table_semisup_ceiling  # what every label reaches, beside the 1 % results (issue 18)


def table_dask(records: Records) -> str:
    from dask_bench import table_of  # k-means on Dask vs MiniBatchKMeans streaming, dask-ml side by side (issue 19)

    return table_of(records)


KINDS["dask"] = table_dask


def table_imbalanced(records: Records) -> str:
    from imbalanced_bench import table_of  # long-tailed sets: k-means, GMM, SeLa, SCAN, P²OT, SP²OT (issue 17)

    return table_of(records)


KINDS["imbalanced"] = table_imbalanced


def table_large_k_generated(records: Records) -> str:
    from large_k_generated import table_of  # SCAN and SeLa at k = 250 … 1,000 on generated data (issue 20)

    return table_of(records)


KINDS["large-k-generated"] = table_large_k_generated


# ---------------------------------------------------------------------------------------------- driver
def render(spec: str, results: Path) -> str:
    """The generated text of one block: its table and the machine line."""
    kind, *args = spec.split()
    if kind not in KINDS:
        raise SystemExit(f"error: unknown table kind {kind!r} in <!-- table: {spec} -->; known: {', '.join(KINDS)}")
    files = [a for a in args if a.endswith(".jsonl")]
    options: dict[str, Any] = {}
    for a in args:
        if a.endswith(".jsonl"):
            continue
        key, _, value = a.partition("=")
        options[key.replace("-", "_")] = value or True
    if kind.startswith("gpu-"):
        paths = sorted(results.glob(GPU_GLOB))
    else:
        paths = [results / f for f in files]
    records = read_jsonl(paths)
    if kind.startswith("gpu-"):
        records = [{**r, "call": p.stem.removeprefix("gpu-")} for p in paths for r in read_jsonl([p])]
        table = KINDS[kind](records)
        if table.startswith(AWAITING):
            return table + "\n"
        return f"{table}\n\n{_gpu_machine([r for r in records if 'status' not in r])}\n"
    used = select(kind, records, **options)
    return f"{KINDS[kind](used, **options)}\n\n{machine_line(used)}\n"


def _gpu_machine(records: Records) -> str:
    devices = sorted({r["device_name"] for r in records if r.get("device_name")})
    return f"Device: {', '.join(devices)}; host load at each run's start is in the records."


def regenerate(markdown: Path, results: Path) -> tuple[str, str]:
    """(old text, new text) of ``markdown`` with every table block rebuilt from ``results``."""
    old = markdown.read_text()
    new = BLOCK.sub(lambda m: m.group(1) + render(m.group("spec"), results) + m.group(4), old)
    return old, new


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--markdown", type=Path, default=ROOT / "BENCHMARKS.md")
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--check", action="store_true", help="only check that the tables are up to date")
    args = p.parse_args(argv)
    old, new = regenerate(args.markdown, args.results)
    if args.check:
        if old != new:
            print(f"{args.markdown} is out of date with {args.results}: run python benchmarks/tables.py",
                  file=sys.stderr)
            return 1
        return 0
    if old != new:
        args.markdown.write_text(new)
    print(f"{args.markdown}: {len(BLOCK.findall(new))} tables {'rewritten' if old != new else 'up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
