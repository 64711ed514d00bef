"""Data-parallel training under ``torchrun``: the process group, the shard each rank holds, and the
collectives the deep methods need (PyTorch's DistributedDataParallel model: Li et al., "PyTorch
Distributed: Experiences on Accelerating Data Parallel Training", VLDB 2020).

``torchrun --nproc-per-node N -m deepclust cluster …`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set; :func:`launched` joins them into one process group (NCCL for
CUDA tensors, gloo for CPU tensors) and puts each rank on its own GPU. Outside torchrun, or with one
process, every function here is a no-op and :func:`shard` is the whole data set.

Rank r holds the rows r, r + N, r + 2N, … of the data (:class:`Shard`). The training loop
(:func:`deepclust.training.train_epochs`) cuts the same global permutation into the same global
mini-batches as one process would; each rank computes the loss of the batch's rows that it holds,
and the gradients are averaged over the ranks weighted by their rows, so that a step equals the
one-process step on the whole batch (DistributedDataParallel averages unweighted, which is the same
when the batch splits evenly). Whatever needs the whole data set is computed globally: column sums
of the soft assignments (:func:`all_sum`), rows gathered in their global order
(:func:`gather_rows`), or a computation on rank 0 whose result is sent to all (:func:`from_main`).
Only rank 0 writes results (:func:`is_main`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def active() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """True on the rank that writes results (rank 0), and always outside torchrun."""
    return rank() == 0


def launched_by_torchrun() -> bool:
    """True when torchrun (or another launcher setting its variables) started more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


@contextlib.contextmanager
def launched() -> Iterator[bool]:
    """Join the process group that torchrun set up (from ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``MASTER_ADDR``/``MASTER_PORT``), for the duration; yields whether there is one. With CUDA, rank
    ``LOCAL_RANK`` uses GPU ``LOCAL_RANK`` and CUDA tensors go through NCCL, CPU tensors through gloo."""
    if not launched_by_torchrun() or dist.is_initialized():
        yield active()
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        backend = "cpu:gloo,cuda:nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend)
    try:
        yield True
    finally:
        dist.destroy_process_group()


@dataclass(frozen=True)
class Shard:
    """The rows of an ``n``-row data set that one rank holds: ``rank``, ``rank + world``, … (strided,
    so every rank holds an even share and a global index maps to a rank and a local row by division)."""

    n: int
    rank: int = 0
    world: int = 1

    @property
    def rows(self) -> slice:
        """The rows as a slice (NumPy and torch index it without a copy)."""
        return slice(self.rank, None, self.world)

    @property
    def size(self) -> int:
        return len(range(self.rank, self.n, self.world))

    @property
    def whole(self) -> bool:
        return self.world == 1

    def local(self, idx: torch.Tensor) -> torch.Tensor:
        """The rows of ``idx`` (global indices) that this rank holds, as local indices, in order."""
        if self.whole:
            return idx
        return idx[idx % self.world == self.rank] // self.world

    def to_global(self, idx: torch.Tensor) -> torch.Tensor:
        """Global indices of local rows."""
        return idx if self.whole else idx * self.world + self.rank


def shard(n: int) -> Shard:
    """This rank's shard of ``n`` rows (all of them outside torchrun)."""
    return Shard(int(n), rank(), world_size())


def all_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over the ranks (a new tensor on every rank; ``t`` itself outside torchrun)."""
    if not active():
        return t
    out = t.detach().clone()
    dist.all_reduce(out)
    return out


def all_max(t: torch.Tensor) -> torch.Tensor:
    """The element-wise maximum of ``t`` over the ranks."""
    if not active():
        return t
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return out


def global_mean(count: torch.Tensor | float, n: int) -> float:
    """``count`` (this rank's count) summed over the ranks, as a share of the ``n`` rows of the data set."""
    if active():
        count = all_sum(torch.as_tensor(count, device=count.device if isinstance(count, torch.Tensor) else "cpu")
                        .double())
    return float(count) / max(int(n), 1)


def gather_rows(local: torch.Tensor, part: Shard) -> torch.Tensor:
    """The whole ``n``-row tensor, in its global row order, from every rank's shard of it (on every rank)."""
    if part.whole or not active():
        return local
    m = -(-part.n // part.world)  # the largest shard; smaller ones are padded to it
    padded = local.new_zeros((m, *local.shape[1:]))
    padded[:local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in range(part.world)]
    dist.all_gather(parts, padded.contiguous())
    out = local.new_empty((part.n, *local.shape[1:]))
    for r, p in enumerate(parts):
        out[r::part.world] = p[:len(range(r, part.n, part.world))]
    return out


def broadcast_object(obj: T) -> T:
    """Rank 0's ``obj`` on every rank (pickled; for small results: labels, centres, flags)."""
    if not active():
        return obj
    return _broadcast_object(obj, 0)


def _broadcast_object(obj: T, src: int) -> T:
    box = [obj if rank() == src else None]
    dist.broadcast_object_list(box, src=src, device=_small_device())
    return box[0]


def _small_device() -> torch.device:
    """Where small messages (flags, pickled objects) go: the CPU (gloo), or the GPU in an NCCL-only group."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def from_main(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` run on rank 0 only, its result returned on every rank (k-means or AC-PIC starts,
    nearest-neighbour tables: computed once, on the whole data, then shared)."""
    if not active():
        return fn(*args)
    result = fn(*args) if is_main() else None
    return broadcast_object(result)


def broadcast_tensors(tensors: Iterable[torch.Tensor]) -> None:
    """Overwrite ``tensors`` (parameters, buffers) with rank 0's values, in place, as
    DistributedDataParallel does when it wraps a model."""
    if not active():
        return
    with torch.no_grad():
        for t in tensors:
            dist.broadcast(t.data, src=0)


def average_buffers(*modules: torch.nn.Module) -> None:
    """Average the floating-point buffers (batch-norm running statistics) of ``modules`` over the
    ranks: each rank's statistics saw only its shard."""
    if not active():
        return
    with torch.no_grad():
        for m in modules:
            for b in m.buffers():
                if b.is_floating_point():
                    dist.all_reduce(b)
                    b.div_(world_size())


def sync_gradients(params: list[torch.nn.Parameter], weight: float) -> None:
    """Replace every gradient by the weighted mean over the ranks, ``Σ_r w_r g_r / Σ_r w_r`` (``weight``:
    this rank's rows in the batch), in one all-reduce of a flat buffer. A parameter with no gradient on
    any rank keeps none (so optimizers skip it, as on one process); a rank with no rows in the batch
    contributes zeros."""
    if not active() or not params:
        return
    dev = params[0].device
    sizes = [p.numel() for p in params]
    total_size = sum(sizes)
    # float64 on the CPU (gloo), so the reduction itself adds no rounding; float32 on GPUs (NCCL)
    flat = torch.zeros(total_size + len(params) + 1, dtype=torch.float64 if dev.type == "cpu" else torch.float32,
                       device=dev)
    offset = 0
    for i, p in enumerate(params):
        if p.grad is not None:
            flat[offset:offset + sizes[i]] = p.grad.reshape(-1).to(flat.dtype) * float(weight)
            flat[total_size + i] = 1.0
        offset += sizes[i]
    flat[-1] = float(weight)
    dist.all_reduce(flat)
    had_grad = flat[total_size:].cpu()
    scale = 1.0 / max(float(had_grad[-1]), 1e-300)
    offset = 0
    for i, p in enumerate(params):
        if float(had_grad[i]) > 0:
            g = flat[offset:offset + sizes[i]].mul(scale).view_as(p).to(p.dtype)
            if p.grad is None:
                p.grad = g
            else:
                p.grad.copy_(g)
        offset += sizes[i]


def agree(flag: bool) -> bool:
    """Rank 0's ``flag`` on every rank: decisions that end a loop must be the same everywhere."""
    if not active():
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=_small_device())
    dist.broadcast(t, src=0)
    return bool(t.item())


def all_keys(keys: Iterable[str]) -> list[str]:
    """The sorted union of ``keys`` over the ranks."""
    keys = list(keys)
    if not active():
        return sorted(keys)
    return sorted({k for r in range(world_size()) for k in _broadcast_object(keys, r)})


__all__ = ["Shard", "active", "agree", "all_keys", "all_max", "all_sum", "average_buffers", "broadcast_object",
           "broadcast_tensors", "from_main", "gather_rows", "global_mean", "is_main", "launched",
           "launched_by_torchrun", "rank", "shard", "sync_gradients", "world_size"]
