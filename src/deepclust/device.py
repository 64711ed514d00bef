"""Choosing the torch device in one place."""

from __future__ import annotations

import torch

from deepclust.errors import DeepclustError


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into a :class:`torch.device`.

    ``"auto"`` picks CUDA when it is available, else the CPU. Asking for CUDA where there is
    none raises :class:`DeepclustError` instead of failing later inside torch.
    """
    if device is None or (isinstance(device, str) and device.lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeepclustError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeepclustError(
                f"device {device!r} was asked for but no CUDA GPU is available here; use --device cpu or auto"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeepclustError(
                f"device {device!r} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type not in ("cpu", "mps"):
        raise DeepclustError(f"unsupported device {device!r}: use 'auto', 'cpu' or 'cuda'")
    return dev
