"""Progress bars in one place: shown on a terminal, silent when output is piped or ``quiet``."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

_QUIET = False


def set_quiet(quiet: bool) -> None:
    """Silence (or re-enable) every progress bar of this process."""
    global _QUIET
    _QUIET = quiet


def progress_enabled() -> bool:
    if _QUIET or os.environ.get("DEEPCLUST_NO_PROGRESS"):
        return False
    return sys.stderr.isatty()


def progress(iterable: Iterable[T] | None = None, *, desc: str = "", total: int | None = None,
             unit: str = "it", leave: bool = False) -> Iterator[T] | tqdm:
    """A tqdm bar over ``iterable`` (or a manual bar when ``iterable`` is None)."""
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, disable=not progress_enabled(),
                dynamic_ncols=True)
