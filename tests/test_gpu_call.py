"""The prepared GPU benchmark call (benchmarks/gpu/) runs end to end on the CPU, so it cannot rot
before a GPU is there to run it; and its tables regenerate from the records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "gpu"))

import suite  # noqa: E402


def run_call(out: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GPU_CALL_SKIP_INSTALL": "1", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu" / "run.sh"), str(out), "--smoke", *args],
                          env=env, capture_output=True, text=True, timeout=900)


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]


def test_smoke_call_runs_every_step_and_records_it(tmp_path, data_dir):
    proc = run_call(tmp_path, "--budget-s", "600")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    recs = records(tmp_path)
    by_step: dict[str, list[dict]] = {}
    for r in recs:
        by_step.setdefault(r["step"], []).append(r)
    assert list(by_step) == [s.name for s in suite.STEPS]  # every step, in priority order
    for name, rs in by_step.items():
        for r in rs:
            assert r["suite"] == "gpu-smoke" and r["torch"] and "load_avg" in r and "step_seconds" in r
            # only the ClustPy comparison may fail here, and only because ClustPy is not installed
            if "status" in r:
                assert name.endswith("-clustpy") and "No module named" in r["status"], r
    depict = by_step["depict-s0-dec"][0]
    assert depict["params"]["target"] == "dec" and 0 <= depict["acc"] <= 1
    assert {"fit.pretrain", "fit.init", "fit.warmup", "fit.cluster"} <= set(depict["seconds"])
    assert depict["pretrain"]["samples_per_s"] > 0 and depict["pretrain"]["matrix_flops_per_sample"] > 0
    assert by_step["depict-s0-paper"][0]["seconds"]["fit.pretrain"] == 0.0  # the autoencoder came from the cache
    fewer = by_step["depict-s0-b1024"][0]  # its own autoencoder: the batch changes pretraining too
    assert fewer["params"]["batch_size"] == 1024 and fewer["seconds"]["fit.pretrain"] > 0
    start = by_step["depict-s0-kmeans"][0]
    assert start["params"]["init"] == "kmeans" and start["seconds"]["fit.pretrain"] == 0.0
    ours, faiss = by_step["kmeans-1m"]
    assert (ours["library"], faiss["library"]) == ("deepclust", "faiss")
    assert ours["inertia"] == pytest.approx(faiss["inertia"], rel=1e-4)  # same start, same iterations
    assert by_step["efficientnet"][0]["images_per_s"] > 0
    assert [r["batch_size"] for r in by_step["pretrain-batch"]] == [256, 1024, 4096]
    assert all(r["samples_per_s"] > 0 and r["ms_per_step"] > 0 for r in by_step["pretrain-batch"])
    assert (tmp_path / "log.txt").read_text().count("[run ]") == len(suite.STEPS)
    assert "suite:" in proc.stdout.splitlines()[-2]  # the summary ends the output the device tool returns


def test_steps_that_do_not_fit_the_budget_are_skipped_with_a_record(tmp_path, one_thread):
    suite.run_suite(tmp_path, budget_s=1.0, smoke=True, only=["depict-s0-dec", "n2d"])
    recs = records(tmp_path)
    assert [(r["step"], r["status"]) for r in recs] == [("depict-s0-dec", "skipped"), ("n2d", "skipped")]
    assert "estimate" in recs[0]["reason"]


def test_a_step_past_its_time_is_stopped():
    t0 = time.monotonic()
    with pytest.raises(suite.StepTimeout):
        with suite.time_limit(0.2):
            while True:
                time.sleep(0.01)
    assert time.monotonic() - t0 < 2


# ---------------------------------------------------------------------------------------------- tables
sys.path.insert(0, str(ROOT / "benchmarks"))
import tables  # noqa: E402
import collect  # noqa: E402
import tables  # noqa: E402  (collect puts benchmarks/ on the path)


def test_benchmarks_md_is_what_the_records_give():
    assert tables.main(["--check"]) == 0, "run python benchmarks/tables.py after adding records"


def test_machine_line_says_whether_the_machine_was_idle():
    alone = {"load_avg": [1.3, 1.0, 0.8], "cpu_count": 2, "threads": 1}
    busy = {"load_avg": [4.2, 3.0, 2.0], "cpu_count": 2, "device_name": "AMD EPYC (2 cores, 2 torch threads)"}
    assert tables.machine_line([alone]).startswith("Machine: idle")
    assert "load average up to 2.2 above" in tables.machine_line([alone, busy])
    assert "1 older records carry no load" in tables.machine_line([alone, {}])
    assert "not recorded" in tables.machine_line([{}])


def test_a_rerun_replaces_the_run_it_repeats():
    old = {"dataset": "usps", "method": "kmeans", "seed": 0, "acc": 0.5}
    other = {**old, "seed": 1}
    assert tables.latest([old, other, {**old, "acc": 0.6}], tables._bench_key) == [{**old, "acc": 0.6}, other]


def gpu_records() -> list[dict]:
    env = {"suite": "gpu", "device_name": "NVIDIA H100 80GB HBM3", "timestamp": "2026-12-01T10:00:00",
           "load_avg": [1.0, 1.0, 1.0], "cpu_count": 16, "step_seconds": 1.0}
    depict = {**env, "step": "depict-s0-dec", "method": "depict", "label": "depict[target=dec]", "dataset": "mnist",
              "seed": 0, "acc": 0.97, "nmi": 0.92, "peak_memory_mb": 900.0,
              "seconds": {"fit": 55.0, "fit.pretrain": 40.0, "fit.init": 5.0, "fit.warmup": 2.0, "fit.cluster": 8.0},
              "pretrain": {"samples_per_s": 140000.0, "tflops": 14.0, "share_of_measured_matmul_peak": 0.0175}}
    kmeans = {"benchmark": "kmeans", "dataset": "synthetic", "n": 1000000, "d": 128, "k": 1000, "iters": 20,
              "init_mode": "shared", "seed": 0, "threads": 16}
    ours = {**env, **kmeans, "step": "kmeans-1m", "library": "deepclust", "library_version": "0.1.0",
            "device": "cuda", "inertia": 1.0e8, "seconds_per_iteration": 0.02, "seconds": {"init": 0.0, "total": 1.0}}
    faiss = {**ours, "library": "faiss", "library_version": "1.15.1", "device": "cpu", "seconds_per_iteration": 0.5,
             "seconds": {"init": 0.0, "total": 10.0}}
    skipped = {**env, "step": "n2d", "status": "skipped", "reason": "estimate 120 s > 30 s left"}
    del skipped["timestamp"]  # as suite.py writes them; the file is still named by the measured records
    batch = {**env, "step": "pretrain-batch", "method": "depict-pretrain", "batch_size": 1024,
             "samples_per_s": 200000.0, "ms_per_step": 5.12}
    return [skipped, {**env, "step": "chip", "matmul_tflops": 800.0}, depict, batch, ours, faiss]


def test_collect_merges_a_calls_records_and_fills_the_gpu_tables(tmp_path):
    out, results, md = tmp_path / "out", tmp_path / "results", tmp_path / "BENCHMARKS.md"
    out.mkdir()
    results.mkdir()
    for f in (ROOT / "benchmarks" / "results").glob("*.jsonl"):
        if not f.name.startswith("gpu-"):  # the project's own GPU calls are not this test's
            (results / f.name).write_text(f.read_text())
    md.write_text(tables.regenerate(ROOT / "BENCHMARKS.md", results)[1])
    assert md.read_text().count("**Awaiting the GPU call**") == 5
    (out / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in gpu_records()))

    target = collect.collect(out, results, md)
    assert target.name == "gpu-20261201-1000-nvidia-h100-80gb-hbm3.jsonl" and target.read_text().count("\n") == 6
    text = md.read_text()
    assert text.count("**Awaiting the GPU call**") == 2  # ClustPy and the other runs still await it
    assert "| mnist | depict[target=dec] | 0 | 0.970 | 0.920 | 55.0 | 40.0 |" in text
    assert "14.0 (1.8 %)" in text
    assert "Pretraining alone, 2 epochs of MNIST-full: batch 1,024: 200,000 images/s, 5.12 ms a step." in text  # pretraining rate beside the measured bf16 peak
    assert "faiss ÷ ours 25.0× per iteration, 10.0× whole fit, inertia ratio 1.00000" in text
    assert "| n2d | skipped (estimate 120 s > 30 s left) |" in text
    with pytest.raises(SystemExit, match="exists already"):
        collect.collect(out, results, md)  # never overwrites an earlier call's records


def test_collect_refuses_smoke_records(tmp_path):
    (tmp_path / "records.jsonl").write_text(json.dumps({"suite": "gpu-smoke", "step": "chip"}) + "\n")
    assert collect.main([str(tmp_path), "--results", str(tmp_path / "r"), "--markdown", str(tmp_path / "m.md")]) == 2
    assert not (tmp_path / "r").exists()
