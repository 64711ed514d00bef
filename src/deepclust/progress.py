"""Progress bars in one place: a live bar on a terminal; when stderr is a file or a pipe (logs,
batch jobs), one plain line each time another ``LOG_STEP_PERCENT`` of the work is done, with the
elapsed and estimated remaining time; nothing when ``quiet``."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm.auto import tqdm
from tqdm.std import tqdm as plain_tqdm

T = TypeVar("T")

_QUIET = False
#: when stderr is not a terminal, a progress line is written every this many percent
LOG_STEP_PERCENT = 5


def set_quiet(quiet: bool) -> None:
    """Silence (or re-enable) every progress bar of this process."""
    global _QUIET
    _QUIET = quiet


def _silenced() -> bool:
    return _QUIET or bool(os.environ.get("DEEPCLUST_NO_PROGRESS"))


def progress_enabled() -> bool:
    """Whether live (carriage-return) bars may be drawn, e.g. by a library's own tqdm: on a terminal."""
    return not _silenced() and sys.stderr.isatty()


class LogLines(plain_tqdm):
    """tqdm writing whole lines, each time another ``LOG_STEP_PERCENT`` is done (or every update
    when the total is unknown, at most once per ``mininterval``), never carriage returns."""

    _next_percent: float = 0.0

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg == "":  # tqdm clearing a bar that does not stay: nothing to erase in a log
            return False
        if self.total:
            percent = 100.0 * self.n / self.total
            if percent < self._next_percent or (self.n == 0 and self._next_percent > 0):
                return True
            self._next_percent = (percent // LOG_STEP_PERCENT + 1) * LOG_STEP_PERCENT
        self.fp.write(self.format_meter(**self.format_dict).strip() + "\n")
        self.fp.flush()
        return True


def progress(iterable: Iterable[T] | None = None, *, desc: str = "", total: int | None = None,
             unit: str = "it", leave: bool = False) -> Iterator[T] | Any:
    """A progress bar over ``iterable`` (or a manual one when ``iterable`` is None): tqdm's bar on
    a terminal, :class:`LogLines` otherwise. Both show the estimated time left."""
    if _silenced():
        return tqdm(iterable, total=total, disable=True)
    if progress_enabled():
        return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, dynamic_ncols=True)
    return LogLines(iterable, desc=desc, total=total, unit=unit, leave=leave, file=sys.stderr, mininterval=0,
                    bar_format="{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}, "
                               "{rate_fmt}{postfix}]")
