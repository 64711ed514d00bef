"""Benchmark harness: datasets × methods × seeds → one JSON record per run, and a table.

Each run happens in a fresh worker process so that its peak memory is its own. Records are
appended to a JSONL file as soon as a run ends, so an interrupted benchmark keeps what it did;
on Ctrl-C the worker is stopped at once and its unfinished run is not recorded.
The number of clusters is the dataset's number of classes (the standard protocol); labels are
used only to score.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import signal
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from deepclust.data import BUILTIN_DATASETS, load_input
from deepclust.errors import DeepclustError
from deepclust.methods import get_method_info
from deepclust.runtime import machine_load

SCORE_KEYS = ("acc", "nmi", "ari")
RECORD_KEYS = ("method", "dataset", "seed", "seconds")  # what the table needs of every record
#: keys every record `deepclust bench` writes has (checked before appending to an existing file)
BENCH_RECORD_KEYS = frozenset({*RECORD_KEYS, "versions"})
WORKER_GRACE_S = 5.0  # after Ctrl-C, how long a worker may take to stop before it is killed


def run_one(method: str, dataset: str, seed: int, *, device: str = "auto", encoder: str = "raw",
            params: dict[str, Any] | None = None, n_clusters: int | None = None,
            data_dir: str | None = None, encoder_params: dict[str, Any] | None = None,
            cache: bool = True, threads: int | None = None) -> dict[str, Any]:
    """Fit one (method, dataset, seed) and return its benchmark record; ``threads``: see
    :func:`deepclust.runtime.choose_threads`."""
    from deepclust.pipeline import run_clustering
    from deepclust.runtime import set_threads

    set_threads(threads)

    load = machine_load()  # before the run: the load of whatever else shares the machine
    result = run_clustering(dataset, method, n_clusters, seed=seed, device=device, encoder=encoder,
                            params=params, data_dir=data_dir, encoder_params=encoder_params, cache=cache)
    s = result.summary()
    return {
        "method": method,
        "label": method_label(method, params),
        "params": params or {},
        "dataset": s["dataset"],
        "protocol": s["protocol"],
        "encoder": s["encoder"],
        "encoder_info": s["encoder_info"],
        "seed": seed,
        "n": s["n_samples"],
        "k": s["n_clusters"],
        **{key: s["scores"].get(key) for key in ("acc", "nmi", "ari", "ami")},
        "scores": s["scores"],
        "n_clusters_found": s["n_clusters_found"],
        "converged": s["converged"],
        "schedule": getattr(result.model, "schedule_", None),  # the lengths the fit used
        "seconds": s["seconds"],
        "peak_memory_mb": s["peak_memory_mb"],
        "device": s["device"],
        "device_name": s["device_name"],
        "threads": s["threads"],
        "threads_rule": s["threads_rule"],
        "warnings": s["warnings"],
        "versions": s["versions"],
        **load,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def method_label(method: str, params: dict[str, Any] | None) -> str:
    """``depict`` or ``depict[target=dec]``: the name a table row carries."""
    if not params:
        return method
    return f"{method}[{','.join(f'{k}={v}' for k, v in sorted(params.items()))}]"


def run_benchmark(methods: Sequence[str], datasets: Sequence[str], seeds: Sequence[int], out: str | Path, *,
                  device: str = "auto", encoder: str = "raw", params: dict[str, Any] | None = None,
                  data_dir: str | None = None, isolate: bool = True, echo=print,
                  encoder_params: dict[str, Any] | None = None, cache: bool = True,
                  threads: int | None = None) -> list[dict[str, Any]]:
    """Run every combination, appending each record to ``out`` (JSONL) as it finishes."""
    from deepclust.runtime import choose_threads
    from deepclust.validation import check_seed

    for what, values in (("--methods", methods), ("--datasets", datasets), ("--seeds", seeds)):
        if not values:
            raise DeepclustError(f"{what} names nothing: give at least one, separated by commas")
    for s in seeds:
        check_seed(s)
    choose_threads(threads)  # a bad value fails here, not in every worker
    for m in methods:
        get_method_info(m)
    from deepclust.encoders import get_encoder

    get_encoder(encoder, **(encoder_params or {}))  # unknown encoder or missing package: fail before any run
    for d in datasets:
        if d not in BUILTIN_DATASETS and not Path(d).exists():
            load_input(d, data_dir=data_dir)  # raises the data layer's own clear error
    out = Path(out)
    check_records_file(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    records = []
    jobs = [(m, d, s) for d in datasets for m in methods for s in seeds]
    ctx = mp.get_context("spawn")
    for i, (m, d, s) in enumerate(jobs, 1):
        kwargs = dict(device=device, encoder=encoder, params=params, data_dir=data_dir,
                      encoder_params=encoder_params, cache=cache, threads=threads)
        rec = _run_isolated(ctx, m, d, s, kwargs) if isolate else run_one(m, d, s, **kwargs)
        with open(out, "ab+") as fh:  # one record a line, even after a last line that lacks its newline
            end = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, end - 1))
            newline = b"" if end == 0 or fh.read(1) == b"\n" else b"\n"
            fh.write(newline + (json.dumps(rec, allow_nan=False) + "\n").encode("utf-8"))
        records.append(rec)
        echo(f"[{i}/{len(jobs)}] {rec['label']} on {d} seed {s}: "
             + " ".join(f"{k}={rec[k]:.4f}" for k in SCORE_KEYS if rec.get(k) is not None)
             + f" in {rec['seconds']['fit']:.1f}s")
    return records


def _run_isolated(ctx: Any, method: str, dataset: str, seed: int, kwargs: dict[str, Any]) -> dict[str, Any]:
    """:func:`run_one` in a fresh worker process. On Ctrl-C (or any error here) the worker is
    stopped at once instead of being waited for (that took ~19 s after a Ctrl-C, and for ever when
    the signal reached only this process): it gets Ctrl-C too, which ends its training at once and
    lets it exit cleanly; one still alive after a few seconds is killed."""
    pool = ProcessPoolExecutor(max_workers=1, mp_context=ctx)
    try:
        return pool.submit(run_one, method, dataset, seed, **kwargs).result()
    except BaseException:
        workers = list((getattr(pool, "_processes", None) or {}).values())  # no public handle before 3.14
        for proc in workers:
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGINT)
        pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + WORKER_GRACE_S
        for proc in workers:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def check_records_file(out: Path) -> None:
    """Refuse to append to ``out`` unless it is new, empty, or a deepclust benchmark JSONL (every
    line a record with :data:`RECORD_KEYS`), so that no other file of the user's is ever changed."""
    from deepclust.output import check_writable

    if out.is_dir():
        raise DeepclustError(f"--out {out} is a folder; give a .jsonl file to append records to")
    if not out.exists():
        check_writable(out)
        return
    problem = None
    try:
        with open(out, encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, 1):
                if line.strip():
                    record = json.loads(line)
                    if not isinstance(record, dict) or not BENCH_RECORD_KEYS <= record.keys():
                        problem = f"line {line_no} is not a deepclust benchmark record"
                        break
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        problem = f"line {line_no} is not JSON" if isinstance(exc, json.JSONDecodeError) else "it is not a text file"
    if problem:
        raise DeepclustError(f"--out {out} is not a deepclust benchmark file ({problem}), so records will not be "
                             "appended to it; choose a new .jsonl file")
    if not os.access(out, os.W_OK):
        raise DeepclustError(f"--out {out} cannot be written: no permission")


def read_records(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Read benchmark records from JSONL files."""
    records = []
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise DeepclustError(f"benchmark file {p} does not exist")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise DeepclustError(f"{p} is not a JSONL file of benchmark records (it is not text)") from exc
        for line_no, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DeepclustError(f"{p}:{line_no} is not a JSON record: {exc}") from exc
                missing = [k for k in RECORD_KEYS if k not in record] if isinstance(record, dict) else RECORD_KEYS
                if missing:
                    raise DeepclustError(f"{p}:{line_no} is not a deepclust benchmark record (no "
                                         f"{', '.join(missing)})")
                records.append(record)
    return records


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return float("nan"), float("nan")
    arr = np.asarray(vals, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def summarize(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Group records by (dataset, method label, encoder, device) and give mean ± std of each score."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(r["dataset"], r.get("label", r["method"]), r.get("encoder", "raw"), r.get("device_name", ""))].append(r)
    rows = []
    for (dataset, label, encoder, device_name), rs in groups.items():
        row = {"dataset": dataset, "method": label, "encoder": encoder, "device": device_name,
               "protocol": rs[0].get("protocol", ""), "n": rs[0].get("n"), "seeds": sorted(r["seed"] for r in rs)}
        for key in (*SCORE_KEYS, "ami"):
            row[key] = mean_std([r.get(key) for r in rs])
        row["fit_seconds"] = mean_std([r["seconds"]["fit"] for r in rs])
        phases = sorted({p for r in rs for p in r["seconds"] if p.startswith("fit.")})
        row["phases"] = {p[4:]: mean_std([r["seconds"].get(p) for r in rs])[0] for p in phases}
        row["peak_memory_mb"] = max(r.get("peak_memory_mb") or 0 for r in rs)
        rows.append(row)
    return rows


def format_table(rows: Sequence[dict[str, Any]], markdown: bool = True) -> str:
    """A Markdown table of mean ± std over seeds."""
    def ms(pair: tuple[float, float], digits: int = 3) -> str:
        m, s = pair
        return "–" if math.isnan(m) else f"{m:.{digits}f} ± {s:.{digits}f}"

    header = ["dataset", "method", "encoder", "seeds", "ACC", "NMI", "ARI", "fit s", "peak MiB", "device"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in sorted(rows, key=lambda r: (r["dataset"], r["method"])):
        lines.append("| " + " | ".join([
            r["dataset"], r["method"], r["encoder"], str(len(r["seeds"])), ms(r["acc"]), ms(r["nmi"]), ms(r["ari"]),
            ms(r["fit_seconds"], 1), f"{r['peak_memory_mb']:.0f}" if r["peak_memory_mb"] else "–", r["device"],
        ]) + " |")
    return "\n".join(lines)
