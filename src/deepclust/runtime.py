"""Facts about the run: library versions, hardware, CPU threads, seeding, peak memory."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import random
from functools import lru_cache
from typing import Any, Iterator

import numpy as np
import torch

from deepclust.errors import DeepclustError
from deepclust.validation import check_seed


@lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """Versions of deepclust and the libraries that decide its numbers."""
    import scipy
    import sklearn

    from deepclust import __version__

    out = {
        "deepclust": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
    }
    if torch.version.cuda:
        out["cuda"] = torch.version.cuda
    return out


def json_safe(value: Any) -> Any:
    """``value`` as strict JSON values: NumPy numbers and arrays as Python ones, string keys, and
    NaN or infinity as None (JSON has no NaN; ``json.dumps`` would write a bare ``NaN``)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    return value


def describe_device(device: torch.device) -> str:
    """A human-readable name of the hardware: GPU model, or CPU model with its core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def machine_load() -> dict[str, object]:
    """The host's load averages (1, 5, 15 min) and core count, for benchmark records: a record says
    whether other jobs shared the machine (load above this run's own threads) or it ran alone."""
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Linux/macOS
        load = None
    return {"load_avg": load, "cpu_count": os.cpu_count()}


def seed_everything(seed: int | None) -> np.random.Generator:
    """Seed Python, NumPy and torch; return a NumPy generator for the caller's own draws."""
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed % (2**32))
        torch.manual_seed(seed)
    return np.random.default_rng(seed)


def seeded_generator(random_state: int | None) -> tuple[int, torch.Generator]:
    """The seed of one fit (``random_state``, or a fresh one when None), with Python, NumPy and
    torch seeded by it, and a CPU torch generator for the fit's own shuffling."""
    seed = int(seed_everything(None).integers(2**31)) if random_state is None else check_seed(random_state,
                                                                                              name="random_state")
    seed_everything(seed)
    return seed, torch.Generator().manual_seed(seed)


_threads_rule = "torch's default"


def choose_threads(requested: int | None = None) -> tuple[int, str]:
    """The number of torch CPU threads to use, and why.

    ``requested`` wins; else ``$OMP_NUM_THREADS``; else the cores this process may use minus the
    1-minute load average (at least 1): OpenMP threads that compete with other busy processes for
    the same cores spin and wait (k-means, 50,000 × 64, k = 20, on 2 cores at load average 15:
    2.1–2.7 s with 1 thread, 28–33 s with 2)."""
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise DeepclustError(f"--threads must be a whole number >= 1, got {requested!r}")
        return requested, "given"
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env), "OMP_NUM_THREADS"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, cores - round(load)), f"auto: {cores} cores, 1-minute load average {load:.2f}"


def set_threads(requested: int | None = None) -> int:
    """Set torch's CPU thread count by :func:`choose_threads`; remembered for :func:`thread_info`."""
    global _threads_rule
    n, _threads_rule = choose_threads(requested)
    torch.set_num_threads(n)
    return n


def thread_info() -> dict[str, Any]:
    """The torch CPU thread count in use and how it was chosen (for metrics.json)."""
    return {"threads": torch.get_num_threads(), "threads_rule": _threads_rule}


def peak_memory_mb(device: torch.device | None = None) -> float:
    """Peak memory of this process in MiB: GPU allocator peak on CUDA, else resident set size."""
    if device is not None and device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB
    except (ImportError, OSError):  # pragma: no cover
        return float("nan")


@contextlib.contextmanager
def keep_torch_threads() -> Iterator[None]:
    """Restore torch's CPU thread count after code that resets it: umap-learn's numba kernels set
    the shared OpenMP pool to all cores (measured: 1 → 2 threads here), which would otherwise
    override the user's ``OMP_NUM_THREADS`` / ``torch.set_num_threads`` for the rest of the process."""
    before = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(before)
