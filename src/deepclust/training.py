"""The one training loop every deep method uses.

Data stay on the device as one tensor; an epoch is a random permutation cut into index
mini-batches (no per-sample DataLoader). A method supplies ``loss_fn(idx) -> {"loss": ..., ...}``
(``idx`` indexes its own tensors); the loop does the Adam step, mixed precision on CUDA
(bfloat16 autocast, no loss scaling needed; fp16 with a gradient scaler on request), a progress
bar, per-epoch means of every reported loss, and optional hooks before and after each epoch
(an ``after_epoch`` hook returning True stops training: convergence criteria live in the
method, and are label-free).

Ctrl-C stops training cleanly: the loop returns what it has, with ``history.interrupted`` set,
so the method can finish with the network as it is (and mark itself ``interrupted_``). Inside
:func:`interrupts_abort` (used by everything that writes results: the pipeline, ``deepclust run``,
the benchmark) Ctrl-C is not caught here and propagates at once, so a half-trained model is
never written.

On the CPU, denormal floats are flushed to zero while training: small activations and Adam
moments otherwise fall into the denormal range and make convolutions several times slower.

Data-parallel under torchrun (:mod:`deepclust.distributed`): given a :class:`~deepclust.distributed.Shard`
instead of a sample count, every rank walks rank 0's permutation of all ``n`` samples in the same
global mini-batches, ``loss_fn`` gets the local indices of the batch's rows that the rank holds,
gradients are averaged over the ranks (weighted by rows) before each step, the recorded losses are
the global batch means, and rank 0's stopping decision holds for all. A step is then the step one
process takes on the whole batch, for any loss that is a mean over the batch's samples.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from sklearn.exceptions import ConvergenceWarning

from deepclust import distributed
from deepclust.distributed import Shard
from deepclust.progress import progress

LossFn = Callable[[torch.Tensor], dict[str, torch.Tensor]]
PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16}
_INTERRUPTS_ABORT = contextvars.ContextVar("interrupts_abort", default=False)


class History(list):
    """Per-epoch records (dicts of mean losses and whatever the hooks add); ``interrupted`` is
    True when training was stopped with Ctrl-C."""

    interrupted: bool = False


@contextlib.contextmanager
def interrupts_abort() -> Iterator[None]:
    """Within this block, Ctrl-C during training propagates as :class:`KeyboardInterrupt` instead of
    ending training early with a partial model."""
    token = _INTERRUPTS_ABORT.set(True)
    try:
        yield
    finally:
        _INTERRUPTS_ABORT.reset(token)


def mark_interrupted(model: Any, interrupted: bool) -> None:
    """Set ``model.interrupted_`` and, when training was stopped by Ctrl-C, warn that the fitted
    model is the partial one reached so far."""
    model.interrupted_ = bool(interrupted)
    if model.interrupted_:
        warnings.warn(f"{type(model).__name__} training was interrupted (Ctrl-C): the model is the one reached so "
                      "far (interrupted_ = True)", RuntimeWarning, stacklevel=4)


def autocast(device: torch.device, enabled: bool | str = True, *,
             cpu: bool = False) -> contextlib.AbstractContextManager:
    """Autocast on CUDA: ``True``/``"bf16"`` → bfloat16, ``"fp16"`` → float16; a no-op on the CPU, unless
    ``cpu`` and the CPU multiplies bfloat16 natively (:func:`native_cpu_bf16`): then bfloat16 there too
    (a method opts in where matrix products are its whole cost and its losses are taken in float32)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=PRECISIONS.get(enabled, torch.bfloat16) if isinstance(enabled, str)
                              else torch.bfloat16)
    if enabled and cpu and device.type == "cpu" and native_cpu_bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@functools.cache
def native_cpu_bf16() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX512-BF16 or AMX): there a bfloat16 matrix product
    ran ~3 × faster than a float32 one (AMD EPYC, one thread, 2048 × 384 by 384 × 150); elsewhere it is
    emulated and no faster."""
    return any(bool(getattr(torch.cpu, name, lambda: False)())
               for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


@contextlib.contextmanager
def flush_denormal(device: torch.device) -> Iterator[None]:
    """Flush denormal floats to zero on the CPU for the duration (restored afterwards)."""
    on = device.type == "cpu" and torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if on:
            torch.set_flush_denormal(False)


def train_epochs(params: Iterable[torch.nn.Parameter] | torch.optim.Optimizer, loss_fn: LossFn,
                 n_samples: int | Shard, *, epochs: int, batch_size: int, device: torch.device,
                 generator: torch.Generator, lr: float = 1e-3, desc: str = "training",
                 mixed_precision: bool | str = True, steps_per_epoch: int | None = None,
                 before_epoch: Callable[[int], None] | None = None,
                 after_epoch: Callable[[int, dict[str, float]], bool | None] | None = None) -> History:
    """Run up to ``epochs`` epochs of Adam (or the given optimizer) on ``loss_fn``; return the history.

    An epoch is one pass over a random permutation of the samples, or, with ``steps_per_epoch``,
    that many mini-batches drawn from a stream of permutations (for methods whose hooks run every
    T iterations, such as DEC's target refresh). ``n_samples``: the number of samples, or this
    rank's :class:`~deepclust.distributed.Shard` of them (data-parallel; see the module notes).
    """
    optimizer = params if isinstance(params, torch.optim.Optimizer) else torch.optim.Adam(params, lr=lr)
    part = n_samples if isinstance(n_samples, Shard) else Shard(int(n_samples))
    parallel = not part.whole and distributed.active()
    weights = [p for group in optimizer.param_groups for p in group["params"]]
    if parallel:
        distributed.broadcast_tensors(weights)  # every rank starts from rank 0's network
    fp16 = mixed_precision == "fp16" and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if fp16 else None
    history = History()
    n_batches = int(steps_per_epoch) if steps_per_epoch else max(1, -(-part.n // batch_size))
    batches = _index_batches(part.n, batch_size, generator, device, shared=parallel)
    with progress(total=epochs * n_batches, desc=desc, unit="batch") as bar, flush_denormal(device):
        try:
            for epoch in range(epochs):
                if before_epoch is not None:
                    before_epoch(epoch)
                sums: dict[str, torch.Tensor] = {}
                for _ in range(n_batches):
                    idx = next(batches)
                    local = part.local(idx) if parallel else idx
                    optimizer.zero_grad(set_to_none=True)
                    losses: dict[str, torch.Tensor] = {}
                    if local.numel():
                        with autocast(device, mixed_precision):
                            losses = loss_fn(local)
                        (scaler.scale(losses["loss"]) if scaler is not None else losses["loss"]).backward()
                    share = 1.0
                    if parallel:
                        distributed.sync_gradients(weights, local.numel())
                        share = local.numel() / idx.numel()  # this rank's part of the batch mean
                    if scaler is not None:
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        optimizer.step()
                    for key, value in losses.items():
                        sums[key] = sums.get(key, 0.0) + value.detach().float() * share
                    bar.update(1)
                if parallel:
                    keys = distributed.all_keys(sums)
                    totals = distributed.all_sum(torch.stack([torch.as_tensor(sums.get(k, 0.0), device=device)
                                                              .float() for k in keys]))
                    sums = dict(zip(keys, totals))
                record: dict[str, Any] = {key: float(value) / n_batches for key, value in sums.items()}  # one sync
                record["epoch"] = epoch + 1
                history.append(record)
                if "loss" in record:
                    bar.set_postfix(loss=f"{record['loss']:.4f}")
                stop = after_epoch is not None and after_epoch(epoch, record)
                if distributed.agree(bool(stop)) if parallel else stop:
                    break
        except KeyboardInterrupt:
            if _INTERRUPTS_ABORT.get():
                raise
            history.interrupted = True
    return history


def epochs_for_steps(steps: int, n_samples: int, batch_size: int) -> int:
    """Whole epochs that give at least ``steps`` mini-batch steps on ``n_samples`` (at least one
    epoch when ``steps`` > 0): a schedule counted in gradient steps gives small data sets as many
    updates as large ones, instead of a few batches an epoch."""
    if steps <= 0:
        return 0
    return max(1, -(-int(steps) // max(1, -(-int(n_samples) // int(batch_size)))))


def _index_batches(n_samples: int, batch_size: int, generator: torch.Generator,
                   device: torch.device, shared: bool = False) -> Iterator[torch.Tensor]:
    """Endless mini-batches of indices: each permutation of the samples cut into batches (the last
    one of a permutation may be smaller). ``shared``: every rank uses rank 0's permutations."""
    while True:
        perm = torch.randperm(n_samples, generator=generator, device=generator.device).to(device)
        if shared:
            distributed.broadcast_tensors([perm])
        for start in range(0, n_samples, batch_size):
            yield perm[start:start + batch_size]


@torch.no_grad()
def batched(fn: Callable[[torch.Tensor], Any], X: torch.Tensor, batch_size: int = 4096,
            mixed_precision: bool | str = True) -> torch.Tensor:
    """Apply ``fn`` to ``X`` in batches (no gradients) and concatenate the float32 results."""
    outs = []
    with flush_denormal(X.device):
        for start in range(0, X.shape[0], batch_size):
            with autocast(X.device, mixed_precision):
                outs.append(fn(X[start:start + batch_size]).float())
    return torch.cat(outs)


def balanced_indices(labels: torch.Tensor, n_draws: int, generator: torch.Generator) -> torch.Tensor:
    """``n_draws`` sample indices drawn uniformly over the non-empty classes of ``labels``, then
    uniformly within the class (DeepCluster's sampling "based on a uniform distribution over the
    classes, or pseudo-labels", Caron et al. ECCV 2018 §3.3), so that big pseudo-classes do not
    dominate an epoch. Vectorised: no loop over samples or classes."""
    dev = labels.device
    counts = torch.bincount(labels)
    order = torch.argsort(labels, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    nonempty = (counts > 0).nonzero().flatten()
    cls = nonempty[torch.randint(int(nonempty.numel()), (int(n_draws),), generator=generator).to(dev)]
    offset = (torch.rand(int(n_draws), generator=generator).to(dev) * counts[cls]).long()
    return order[starts[cls] + torch.minimum(offset, counts[cls] - 1)]


def warn_not_converged(method: str, limit: str, changed: float, tol: float, parameter: str) -> None:
    """Warn (scikit-learn's ``ConvergenceWarning``) that ``method`` stopped at its ``limit`` while
    more than ``tol`` of its labels still changed: the partition is usable but not settled."""
    rule = f"its stopping rule is < {tol:.2%}" if tol > 0 else "tol = 0 never stops early"
    warnings.warn(f"{method} stopped at its limit of {limit} with {changed:.2%} of labels still changing "
                  f"({rule}): the clusters had not settled; raise {parameter} to train longer "
                  "(metrics.json records converged: false)", ConvergenceWarning, stacklevel=4)
