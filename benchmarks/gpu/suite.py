"""The GPU benchmark call's driver (issue 15): the measurements in priority order, within a budget.

    python benchmarks/gpu/suite.py OUT_DIR [--budget-s 420] [--smoke] [--steps a,b]

``run.sh`` calls this after installing the carried wheels; ``--smoke`` runs every step on the CPU
with tiny sizes, so that the test suite keeps the call working. Each step reuses the project's own
measuring code: :func:`deepclust.bench.run_one` (one fit, scored, with seconds per phase and peak
memory), ``benchmarks/kmeans_bench.py``, ``benchmarks/clustpy_side_by_side.py`` and
``benchmarks/image_encoder_bench.py``. Every record is appended to ``OUT_DIR/records.jsonl`` as
soon as its run ends, with the step's name, the device, torch/CUDA versions, the step's peak GPU
memory and the host's load. Before each step the time left is compared with the step's estimate
(printed up front); a step that would not fit is skipped with a record saying so, and a step still
running when its time is up is stopped and recorded as such. Labels only score.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BENCH_DIR))  # kmeans_bench, clustpy_side_by_side, image_encoder_bench

#: DEPICT's schedule as the records state it (the current defaults, written out so that the
#: records stay comparable when defaults change): Adam 1e-3, batch 256, 80 + 3 + ≤ 40 epochs
DEPICT_SCHEDULE = {"pretrain_epochs": 80, "warmup_epochs": 3, "cluster_epochs": 40}
#: the autoencoder family on MNIST-full: one shared MLP autoencoder per seed (the cache), 50 epochs
AE_FAMILY = {"architecture": "mlp", "pretrain_epochs": 50}
#: DEC/IDEC beside ClustPy 0.0.3: the same reduced epochs for both libraries
CLUSTPY_EPOCHS = 10
#: DEPICT with 4x larger steps (the call of 2026-11-28 found a step launch-bound: 6.1 ms at batch
#: 256, 6.9 ms at 1,024), the learning rate scaled by the square root of the batch ratio
FEWER_STEPS = {"batch_size": 1024, "lr": 2e-3}


class StepTimeout(BaseException):
    """Raised in the main thread when a step's time is up (BaseException: no ``except Exception``
    in library code swallows it)."""


@dataclass
class Context:
    out: Path
    smoke: bool
    device: str
    threads: int
    facts: dict[str, Any] = field(default_factory=dict)  # measured once, used later (the chip's bf16 rate)
    datasets: dict[str, Any] = field(default_factory=dict)  # loaded once

    def dataset(self, name: str) -> Any:
        """A built-in dataset (loaded once), in smoke mode the first 400 samples of its test split."""
        from deepclust.data import load_dataset

        if name not in self.datasets:
            if self.smoke:
                ds, n = load_dataset(f"{name}-test"), 400
                meta = replace(ds.meta, name=f"{ds.meta.name}[:{n}]", protocol=f"{ds.meta.protocol}; first {n} (smoke)")
                self.datasets[name] = type(ds)(ds.X[:n], ds.y[:n], meta)
            else:
                self.datasets[name] = load_dataset(name)
        return self.datasets[name]


@dataclass
class Step:
    name: str
    what: str
    estimate_s: float  # measured on one H200 (2026-11-27/28; n2d overran 186 s, the b1024 step a guess)
    smoke_estimate_s: float
    run: Callable[[Context], Iterator[dict[str, Any]]]
    family: str = ""  # steps of one family (DEPICT's seeds) take the time the first of them took


# ---------------------------------------------------------------------------------------------- steps
def chip(ctx: Context) -> Iterator[dict[str, Any]]:
    """The two ceilings (METHOD.md): bf16 matrix rate and device-to-device copy bandwidth, on random data."""
    import torch

    n = 256 if ctx.smoke else 8192
    dev = torch.device(ctx.device)
    dtype = torch.float32 if ctx.smoke else torch.bfloat16
    a, b = (torch.randn(n, n, device=dev, dtype=dtype) for _ in range(2))
    src = torch.randn(1 << (20 if ctx.smoke else 30), device=dev)  # 4 GiB on the GPU
    dst = torch.empty_like(src)
    timings = {}
    for name, fn, reps in (("matmul", lambda: a @ b, 20), ("copy", lambda: dst.copy_(src), 20)):
        for _ in range(3):
            fn()
        _sync(dev)
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        _sync(dev)
        timings[name] = (time.perf_counter() - t0) / reps
    tflops = 2 * n**3 / timings["matmul"] / 1e12
    ctx.facts["matmul_tflops"] = tflops
    yield {"method": "chip", "dataset": "random", "protocol": f"{n}×{n}×{n} {str(dtype)[6:]} matrix product; "
           f"{src.numel() * 4 / 2**30:.3g} GiB device-to-device copy (bytes read + written)", "seed": 0,
           "matmul_tflops": round(tflops, 1), "copy_gb_per_s": round(2 * src.numel() * 4 / timings["copy"] / 1e9, 1),
           "seconds": {k: round(v, 6) for k, v in timings.items()}}


def depict_pretrain_flops(image_shape: tuple[int, ...], k: int, channels: Any) -> float:
    """Matrix FLOPs of one sample's pretraining step (forward of both pathways and backward), counted
    by torch's FlopCounterMode on the loss of DEPICT's pretraining (``DEPICT._fit``, step 1)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from deepclust.losses import layerwise_reconstruction_loss
    from deepclust.methods.depict import DEPICT

    model = DEPICT(k, channels=channels)
    model._build_networks(image_shape)
    ae = model.autoencoder_
    xb = torch.rand(2, *((1, *image_shape) if len(image_shape) == 2 else image_shape))
    with FlopCounterMode(display=False) as counter:
        noisy, clean = ae(xb, corrupt=True), ae(xb, corrupt=False, decode=False)
        layerwise_reconstruction_loss(noisy.decoded, clean.encoded, model.hidden_recon_weight).backward()
    return counter.get_total_flops() / len(xb)


def depict(seed: int, target: str, init: str | None = None,
           **schedule: Any) -> Callable[[Context], Iterator[dict[str, Any]]]:
    def run(ctx: Context) -> Iterator[dict[str, Any]]:
        from deepclust.bench import run_one

        params = {**DEPICT_SCHEDULE, "target": target, **({"init": init} if init else {}), **schedule}
        if ctx.smoke:
            params.update(pretrain_epochs=1, warmup_epochs=1, cluster_epochs=1, channels=[8, 8])
        ds = ctx.dataset("mnist")
        rec = run_one("depict", ds, seed, device=ctx.device, params=params)
        pre = rec["seconds"].get("fit.pretrain", 0.0)
        if pre > 0:  # 0: the autoencoder came from the cache (an earlier step of this call)
            per_s = params["pretrain_epochs"] * rec["n"] / pre
            flops = depict_pretrain_flops(ds.X.shape[1:], rec["k"], params.get("channels", (50, 50)))
            rec["pretrain"] = {"samples_per_s": round(per_s, 1), "matrix_flops_per_sample": flops,
                               "tflops": round(per_s * flops / 1e12, 3)}
            if "matmul_tflops" in ctx.facts:
                rec["pretrain"]["share_of_measured_matmul_peak"] = round(
                    per_s * flops / 1e12 / ctx.facts["matmul_tflops"], 5)
        yield rec
    return run


def pretrain_batch(ctx: Context) -> Iterator[dict[str, Any]]:
    """DEPICT's autoencoder pretraining on MNIST-full at batch sizes 256, 1,024 and 4,096 (2 epochs
    each, no clustering): if the seconds per step stay flat as the batch grows, a step is bound by
    kernel launches, not by the chip, and fewer, larger steps are the speed-up."""
    from deepclust.methods.depict import DEPICT

    ds = ctx.dataset("mnist")
    X, epochs = ds.X, 1 if ctx.smoke else 2
    small = dict(channels=[8, 8]) if ctx.smoke else {}
    with tempfile.TemporaryDirectory() as fresh, warnings.catch_warnings():  # an empty cache: every fit pretrains
        warnings.simplefilter("ignore")  # no clustering epochs: "not converged" is the point
        common = dict(warmup_epochs=0, cluster_epochs=0, init="kmeans", kmeans_n_init=1, device=ctx.device,
                      random_state=0, cache_dir=fresh, **small)
        DEPICT(10, pretrain_epochs=1, batch_size=256, **common).fit(X[:len(X) // 4])  # warm-up: kernels chosen
        fits = {bs: DEPICT(10, pretrain_epochs=epochs, batch_size=bs, **common).fit(X) for bs in (256, 1024, 4096)}
    for bs, model in fits.items():
        seconds = model.timings_["pretrain"]
        steps = epochs * -(-len(X) // bs)
        yield {"method": "depict-pretrain", "dataset": "mnist", "protocol": "MNIST-full: train+test, 70,000 images",
               "n": len(X), "batch_size": bs, "epochs": epochs, "seed": 0, "seconds": {"pretrain": round(seconds, 3)},
               "samples_per_s": round(epochs * len(X) / seconds, 1), "ms_per_step": round(1000 * seconds / steps, 3)}


def kmeans_1m(ctx: Context) -> Iterator[dict[str, Any]]:
    """1,000,000 × 128, k = 1,000, 20 Lloyd iterations from one shared k-means++ start: ours on the
    device against faiss-cpu on all cores; the same inertia is the check that both did the same work."""
    size = ["--n", "3000", "--d", "16", "--k", "20", "--iters", "3"] if ctx.smoke else ["--iters", "20"]
    yield from _kmeans_bench(ctx, ["--dataset", "synthetic", "--init", "shared", *size])


def kmeans_mnist(ctx: Context) -> Iterator[dict[str, Any]]:
    """MNIST-full raw pixels, k = 10: the speed side by side with faiss, and ACC/NMI/ARI of our fit."""
    from deepclust.bench import run_one

    yield from _kmeans_bench(ctx, ["--dataset", "mnist", "--iters", "20", *(["--n", "400"] if ctx.smoke else [])])
    yield run_one("kmeans", ctx.dataset("mnist"), 0, device=ctx.device)


def _kmeans_bench(ctx: Context, argv: list[str]) -> Iterator[dict[str, Any]]:
    import kmeans_bench

    from deepclust.engines import KMeans

    KMeans(4, random_state=0, device=ctx.device).fit(_random(1000, 8))  # warm-up: context, kernels, handles
    for rec in _records_of(kmeans_bench.main, [*argv, "--libs", "deepclust,faiss", "--device", ctx.device,
                                               "--threads", str(ctx.threads)], ctx):
        yield {"method": "kmeans", "protocol": rec["data"], **rec}


def clustpy_pair(method: str) -> Callable[[Context], Iterator[dict[str, Any]]]:
    def run(ctx: Context) -> Iterator[dict[str, Any]]:
        import clustpy_side_by_side

        epochs = "1" if ctx.smoke else str(CLUSTPY_EPOCHS)
        yield from _records_of(clustpy_side_by_side.main, [
            "--dataset", "mnist", "--seeds", "0", "--methods", method, "--pretrain-epochs", epochs,
            "--clustering-epochs", epochs, "--device", ctx.device, *(["--limit", "400"] if ctx.smoke else [])], ctx)
    return run


def autoencoder_method(method: str) -> Callable[[Context], Iterator[dict[str, Any]]]:
    def run(ctx: Context) -> Iterator[dict[str, Any]]:
        from deepclust.bench import run_one

        params = {**AE_FAMILY, **({"pretrain_epochs": 1, "hidden_dims": [32, 32, 64]} if ctx.smoke else {})}
        yield run_one(method, ctx.dataset("mnist"), 0, device=ctx.device, params=params)
    return run


def efficientnet(ctx: Context) -> Iterator[dict[str, Any]]:
    """EfficientNet-Lite0 at 224 px on the 10,000 MNIST test images: images/s (the seconds include
    building the network from its weights file), then k-means on the features and on raw pixels."""
    import image_encoder_bench

    size = ["--limit", "32", "--image-size", "32"] if ctx.smoke else ["--image-size", "224", "--batch-size", "512"]
    common = ["--dataset", "mnist", "--split", "test", "--device", ctx.device, *size]
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):  # warm-up: weights read, kernels chosen
        image_encoder_bench.main([*common, "--limit", "16" if ctx.smoke else "256", "--seeds", "0", "--out", os.devnull])
    yield from _records_of(image_encoder_bench.main, [*common, "--seeds", "0"], ctx)


STEPS = [  # priority order for the next call: what no call has measured first
    Step("chip", "bf16 matrix rate and copy bandwidth of this GPU", 10, 2, chip),
    Step("depict-s0-b1024", f"DEPICT MNIST-full seed 0 target=dec, batch {FEWER_STEPS['batch_size']:,} "
         f"(lr {FEWER_STEPS['lr']:g}) in every phase: 4x fewer, larger steps", 150, 20, depict(0, "dec", **FEWER_STEPS)),
    Step("depict-s1-dec", "DEPICT MNIST-full seed 1 target=dec (AC-PIC start)", 270, 20, depict(1, "dec"), "depict-dec"),
    Step("kmeans-1m", "KMeans 1M×128 k=1000 20 it., ours on the GPU vs faiss-cpu, shared start", 40, 10, kmeans_1m),
    Step("kmeans-mnist", "KMeans MNIST-full raw k=10, ours vs faiss-cpu; ACC", 10, 10, kmeans_mnist),
    Step("dec-clustpy", f"DEC MNIST-full, ours vs ClustPy 0.0.3, {CLUSTPY_EPOCHS}+{CLUSTPY_EPOCHS} epochs", 60, 15,
         clustpy_pair("dec")),
    Step("idec-clustpy", f"IDEC MNIST-full, ours vs ClustPy 0.0.3, {CLUSTPY_EPOCHS}+{CLUSTPY_EPOCHS} epochs", 45, 15,
         clustpy_pair("idec")),
    Step("depict-s0-dec", "DEPICT MNIST-full seed 0 target=dec (AC-PIC start), phases, pretraining images/s", 270, 20,
         depict(0, "dec"), "depict-dec"),
    Step("depict-s0-paper", "DEPICT MNIST-full seed 0 target=paper (autoencoder from the cache)", 140, 10,
         depict(0, "paper")),
    *(Step(f"depict-s{s}-dec", f"DEPICT MNIST-full seed {s} target=dec", 270, 20, depict(s, "dec"), "depict-dec")
      for s in (2, 3, 4)),
    Step("ae-kmeans", "AE + k-means MNIST-full (MLP autoencoder, 50 epochs)", 50, 10, autoencoder_method("ae-kmeans")),
    Step("n2d", "N2D MNIST-full (the same autoencoder from the cache, UMAP, GMM)", 240, 60, autoencoder_method("n2d")),
    Step("efficientnet", "EfficientNet-Lite0 images/s at 224 px, MNIST test split", 15, 10, efficientnet),
    Step("pretrain-batch", "DEPICT pretraining images/s at batch 256, 1024, 4096 (2 epochs each)", 10, 10,
         pretrain_batch),
    Step("depict-s0-kmeans", "DEPICT MNIST-full seed 0 init=kmeans (the first call's start; cached autoencoder)",
         80, 20, depict(0, "dec", "kmeans")),
]


# ---------------------------------------------------------------------------------------------- driver
def _random(n: int, d: int) -> Any:
    import numpy as np

    return np.random.default_rng(0).standard_normal((n, d), dtype=np.float32)


def _sync(dev: Any) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _records_of(main: Callable[[list[str]], Any], argv: list[str], ctx: Context) -> Iterator[dict[str, Any]]:
    """Run a benchmark script's ``main`` with ``--out`` a scratch file and yield the records it wrote,
    also those written before a time-out stopped it."""
    scratch = ctx.out / ".scratch.jsonl"
    scratch.unlink(missing_ok=True)
    try:
        main([*argv, "--out", str(scratch)])
    finally:
        records = [json.loads(line) for line in scratch.read_text().splitlines()] if scratch.exists() else []
        scratch.unlink(missing_ok=True)
        yield from records


def environment(device: str) -> dict[str, Any]:
    import torch

    from deepclust.runtime import describe_device, versions

    return {"device": device, "device_name": describe_device(torch.device(device)),
            "torch": torch.__version__, "cuda": torch.version.cuda, "versions": versions()}


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`StepTimeout` in the main thread after ``seconds``."""
    def expire(signum: int, frame: Any) -> None:
        raise StepTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_suite(out: Path, budget_s: float, smoke: bool, only: list[str] | None = None) -> list[dict[str, Any]]:
    import torch

    from deepclust.runtime import machine_load

    start = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    device = "cpu" if smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: torch sees no CUDA device; run with --smoke on a machine without one")
    if smoke:
        torch.set_num_threads(1)
    ctx = Context(out, smoke, device, 1 if smoke else os.cpu_count() or 1)
    env = environment(device)
    steps = [s for s in STEPS if only is None or s.name in only]
    measured: dict[str, float] = {}  # family → seconds its first step took in this call

    def estimate(s: Step) -> float:
        return measured.get(s.family) or (s.smoke_estimate_s if smoke else s.estimate_s)

    print(f"{env['device_name']}, torch {env['torch']}, CUDA {env['cuda']}; budget {budget_s:.0f} s; "
          f"estimates (from the calls so far; n2d and depict-s0-b1024 guesses):")
    for s in steps:
        print(f"  {s.name:<16} {estimate(s):>5.0f} s  {s.what}")
    print(f"  {'all':<16} {sum(map(estimate, steps)):>5.0f} s", flush=True)

    records = []
    for s in steps:
        left = budget_s - (time.monotonic() - start)
        base = {"step": s.name, "suite": "gpu-smoke" if smoke else "gpu", **env, **machine_load()}
        if estimate(s) > left:
            records.append(_append(out, {**base, "status": "skipped",
                                         "reason": f"estimate {estimate(s):.0f} s > {left:.0f} s left"}))
            print(f"[skip] {s.name}: estimate {estimate(s):.0f} s, {left:.0f} s left", flush=True)
            continue
        # on the GPU an estimate far off must not cost every later step; a smoke run on a shared CPU
        # only checks that every step runs
        limit = left if smoke else min(left, max(2 * estimate(s), 60))
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.monotonic()
        status = "done"
        print(f"[run ] {s.name} (at most {limit:.0f} s)", flush=True)
        try:
            with time_limit(limit):
                for rec in s.run(ctx):
                    records.append(_append(out, {**base, **rec, **_step_facts(device, t0)}))
        except StepTimeout:
            status = f"stopped after {limit:.0f} s"
        except Exception as exc:  # noqa: BLE001 - one failed step must not cost the others
            status = f"failed: {type(exc).__name__}: {exc}"
        if status != "done":
            records.append(_append(out, {**base, "status": status, **_step_facts(device, t0)}))
        elif s.family:
            measured.setdefault(s.family, time.monotonic() - t0)
        print(f"[{'done' if status == 'done' else 'stop'}] {s.name}: {time.monotonic() - t0:.1f} s; {status}",
              flush=True)
        if device == "cuda":
            torch.cuda.empty_cache()
    print_summary(records)
    print(f"suite: {time.monotonic() - start:.0f} s of {budget_s:.0f}; records in {out / 'records.jsonl'}")
    return records


def _step_facts(device: str, t0: float) -> dict[str, Any]:
    import torch

    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
    return {"step_seconds": round(time.monotonic() - t0, 2), "step_peak_gpu_memory_mb": peak,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S")}


def _append(out: Path, record: dict[str, Any]) -> dict[str, Any]:
    record.setdefault("timestamp", time.strftime("%Y-%m-%dT%H:%M:%S"))  # skip records too: they name the call
    with open(out / "records.jsonl", "a") as fh:
        fh.write(json.dumps(record, default=str) + "\n")
    return record


def print_summary(records: list[dict[str, Any]]) -> None:
    """One line per record, last in the output (the device tool returns the output's end)."""
    print(f"{'step':<16} {'what':<24} {'ACC':>6} {'NMI':>6} {'seconds':>8}  note")
    for r in records:
        what = r.get("label") or r.get("method") or ""
        if r.get("library"):
            what = f"{r['method']} {r['library']}"
        elif r.get("encoder", "raw") != "raw":
            what = f"{what} {r['encoder']}"
        secs = r.get("seconds")
        secs = secs.get("fit", secs.get("total")) if isinstance(secs, dict) else secs
        note = r.get("status", "")
        if "pretrain" in r and isinstance(r["pretrain"], dict):
            note = f"pretrain {r['pretrain']['samples_per_s']:.0f} samples/s, {r['pretrain']['tflops']:.2f} TFLOP/s"
        elif "inertia" in r:
            note = f"inertia {r['inertia']:.6g}, {r['n_iter']} it."
        elif "matmul_tflops" in r:
            note = f"{r['matmul_tflops']} TFLOP/s, copy {r['copy_gb_per_s']} GB/s"
        elif r.get("images_per_s"):
            note = f"{r['images_per_s']} images/s"
        acc, nmi = (f"{r[k]:.3f}" if isinstance(r.get(k), float) else "" for k in ("acc", "nmi"))
        sec = f"{secs:.1f}" if isinstance(secs, (int, float)) else ""
        print(f"{r['step']:<16} {str(what)[:24]:<24} {acc:>6} {nmi:>6} {sec:>8}  {note}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="folder for records.jsonl")
    p.add_argument("--budget-s", type=float, default=420, help="seconds for all steps (default 420)")
    p.add_argument("--smoke", action="store_true", help="every step on the CPU with tiny sizes")
    p.add_argument("--steps", default=None, help=f"comma-separated subset of: {','.join(s.name for s in STEPS)}")
    args = p.parse_args(argv)
    only = None
    if args.steps:
        only = [s.strip() for s in args.steps.split(",") if s.strip()]
        unknown = set(only) - {s.name for s in STEPS}
        if unknown:
            p.error(f"unknown steps {sorted(unknown)}")
    run_suite(args.out, args.budget_s, args.smoke, only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
