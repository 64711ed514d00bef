"""Facts about the run: library versions, hardware, seeding, peak memory."""

from __future__ import annotations

import contextlib
import os
import platform
import random
from functools import lru_cache
from typing import Iterator

import numpy as np
import torch


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
    seed = int(seed_everything(None).integers(2**31)) if random_state is None else int(random_state)
    seed_everything(seed)
    return seed, torch.Generator().manual_seed(seed)


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
