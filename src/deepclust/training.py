"""The one training loop every deep method uses.

Data stay on the device as one tensor; an epoch is a random permutation cut into index
mini-batches (no per-sample DataLoader). A method supplies ``loss_fn(idx) -> {"loss": ..., ...}``;
the loop does the optimiser step, mixed precision on CUDA (bfloat16 autocast, no loss scaling
needed), a progress bar, per-epoch means of every reported loss, and optional hooks before and
after each epoch (an ``after_epoch`` hook returning True stops training: convergence criteria
live in the method, and are label-free).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

import torch

from deepclust.progress import progress

LossFn = Callable[[torch.Tensor], dict[str, torch.Tensor]]


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on CUDA (safe for convs and linears; losses are computed in float32)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_epochs(params: Iterable[torch.nn.Parameter] | torch.optim.Optimizer, loss_fn: LossFn, n_samples: int, *,
                 epochs: int, batch_size: int, device: torch.device, generator: torch.Generator,
                 lr: float = 1e-3, desc: str = "training", mixed_precision: bool = True,
                 before_epoch: Callable[[int], None] | None = None,
                 after_epoch: Callable[[int, dict[str, float]], bool | None] | None = None) -> list[dict[str, float]]:
    """Run up to ``epochs`` epochs of Adam on ``loss_fn`` and return the per-epoch loss history."""
    optimizer = params if isinstance(params, torch.optim.Optimizer) else torch.optim.Adam(params, lr=lr)
    history: list[dict[str, float]] = []
    n_batches = max(1, -(-n_samples // batch_size))
    with progress(total=epochs * n_batches, desc=desc, unit="batch") as bar:
        for epoch in range(epochs):
            if before_epoch is not None:
                before_epoch(epoch)
            perm = torch.randperm(n_samples, generator=generator, device=generator.device).to(device)
            sums: dict[str, torch.Tensor] = {}
            for start in range(0, n_samples, batch_size):
                idx = perm[start:start + batch_size]
                with autocast(device, mixed_precision):
                    losses = loss_fn(idx)
                optimizer.zero_grad(set_to_none=True)
                losses["loss"].backward()
                optimizer.step()
                for key, value in losses.items():
                    sums[key] = sums.get(key, 0.0) + value.detach().float()
                bar.update(1)
            record = {key: float(value) / n_batches for key, value in sums.items()}  # one sync per epoch
            record["epoch"] = epoch + 1
            history.append(record)
            bar.set_postfix(loss=f"{record['loss']:.4f}")
            if after_epoch is not None and after_epoch(epoch, record):
                break
    return history


@torch.no_grad()
def batched(fn: Callable[[torch.Tensor], Any], X: torch.Tensor, batch_size: int = 4096,
            mixed_precision: bool = True) -> torch.Tensor:
    """Apply ``fn`` to ``X`` in batches (no gradients) and concatenate the float32 results."""
    outs = []
    for start in range(0, X.shape[0], batch_size):
        with autocast(X.device, mixed_precision):
            outs.append(fn(X[start:start + batch_size]).float())
    return torch.cat(outs)
