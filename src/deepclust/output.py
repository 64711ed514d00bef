"""Writing a run folder (``--out``) without ever losing what the user had.

- Every run folder carries a marker file, :data:`MARKER`. ``--overwrite`` replaces only a folder
  with that marker, and never the current folder, the home folder, ``/``, a folder holding the
  input, or any folder above those.
- :func:`reserve_out_dir` checks ``--out`` (place, contents, write permission) and locks it
  *before* the fit, so that a bad ``--out`` or a second run to the same folder fails at once.
- :func:`write_run_dir` writes into a hidden sibling folder, then swaps it in: the old run is
  renamed aside, the new one renamed into place, and only then is the old one deleted. Any error
  or interrupt (Ctrl-C; SIGTERM in the CLI) before the swap is complete puts the old run back and
  removes the hidden folder (the rename-aside commit pattern of e.g. Git's lock files).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from deepclust.errors import DeepclustError

#: the marker file in every folder deepclust writes; ``--overwrite`` replaces only such folders
MARKER = ".deepclust-run"
MARKER_FORMAT = "deepclust-run"
T = TypeVar("T")


def _resolved(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(path)).resolve()


def _is_within(path: Path, folder: Path) -> bool:
    """True when ``path`` is ``folder`` or lies below it (both resolved)."""
    return path == folder or folder in path.parents


def protected_reason(out: Path, inputs: Iterable[str | os.PathLike | None] = ()) -> str | None:
    """Why ``out`` must never be replaced (it is or holds the current folder, the home folder,
    ``/`` or an input), or None."""
    where = _resolved(out)
    places = [(Path(where.anchor), "the root folder"), (_resolved(Path.home()), "your home folder"),
              (_resolved(os.getcwd()), "the current folder")]
    places += [(_resolved(p), f"the input {p}") for p in inputs if p and os.path.exists(p)]
    for place, name in places:
        if _is_within(place, where):
            return f"is {name}" if place == where else f"holds {name}"
    return None


def is_run_dir(path: Path) -> bool:
    """True when ``path`` is a folder that deepclust wrote (it holds a valid :data:`MARKER`)."""
    marker = path / MARKER
    try:
        return marker.is_file() and json.loads(marker.read_text()).get("format") == MARKER_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def check_out_dir(out: str | os.PathLike, overwrite: bool,
                  inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Check that the run folder ``out`` may be (re)written, and return it as a Path.

    Refuses (:class:`DeepclustError`) a path that is a file or a link, a protected place (see
    :func:`protected_reason`), a non-empty folder without ``overwrite``, a non-empty folder that
    deepclust did not write, and a place where the user cannot write."""
    shown = f"--out {str(out)!r}"
    out = Path(out)
    reason = protected_reason(out, inputs)
    if reason:
        raise DeepclustError(f"{shown} {reason}; deepclust writes a run only into a new folder or one it wrote itself")
    if out.is_symlink():
        raise DeepclustError(f"{shown} is a symbolic link; give the folder it points to, or a new folder")
    if out.exists() and not out.is_dir():
        raise DeepclustError(f"{shown} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise DeepclustError(f"{shown} is not empty; choose another folder or pass --overwrite")
        if not is_run_dir(out):
            raise DeepclustError(f"{shown} was not written by deepclust (it has no {MARKER} file), so --overwrite "
                                 "will not replace it; choose another folder")
    check_writable(out)
    return out


def check_writable(out: Path) -> None:
    """Check that ``out`` can be created: its nearest existing parent is a folder we may write in
    (tried for real with an empty probe folder, which also catches read-only file systems)."""
    parent = Path(os.path.abspath(out)).parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise DeepclustError(f"--out {str(out)!r} cannot be created: {parent} is a file, not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".deepclust-probe.", dir=parent))
    except OSError as exc:
        raise DeepclustError(f"--out {str(out)!r} cannot be written: {parent} is not writable "
                             f"({exc.strerror})") from None


def lock_path(out: str | os.PathLike) -> Path:
    """The lock file guarding the run folder ``out``: in deepclust's cache (``$DEEPCLUST_CACHE``),
    not beside ``out``, so that no stray file is left in the user's folders."""
    from deepclust.encoders.cache import cache_root

    key = hashlib.blake2b(str(_resolved(out)).encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    return cache_root() / "locks" / f"{key}.lock"


@contextlib.contextmanager
def lock_out_dir(out: str | os.PathLike) -> Iterator[None]:
    """Hold a lock on ``out`` (re-entrant in this process); another process holding it makes this
    fail at once with :class:`DeepclustError`."""
    from filelock import FileLock, Timeout

    path = lock_path(out)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(path, timeout=0, is_singleton=True)
        lock.acquire()
    except Timeout:
        raise DeepclustError(f"--out {str(out)!r} is being written by another deepclust run; wait for it to "
                             "finish or choose another folder") from None
    except OSError as exc:
        raise DeepclustError(f"cannot create the lock file {path} ({exc.strerror}); set DEEPCLUST_CACHE to a "
                             "writable folder") from None
    try:
        yield
    finally:
        lock.release()


def holding_out_lock(func: Callable[..., T]) -> Callable[..., T]:
    """Decorator: hold the lock of the run folder given as ``func``'s ``out`` argument while it runs."""
    signature = inspect.signature(func)

    @functools.wraps(func)
    def locked(*args: Any, **kwargs: Any) -> T:
        with lock_out_dir(signature.bind(*args, **kwargs).arguments["out"]):
            return func(*args, **kwargs)

    return locked


@contextlib.contextmanager
def reserve_out_dir(out: str | os.PathLike, overwrite: bool,
                    inputs: Iterable[str | os.PathLike | None] = ()) -> Iterator[Path]:
    """Check ``out`` and hold its lock for the whole run: ``with reserve_out_dir(...) as out: fit; write``."""
    inputs = list(inputs)
    out = check_out_dir(out, overwrite, inputs)
    with lock_out_dir(out):
        yield out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_run_dir(out: str | os.PathLike, fill: Callable[[Path], None], *, overwrite: bool = False,
                  inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Create the run folder ``out`` with ``fill(folder)`` writing its files, atomically (see the
    module notes); an existing run is replaced only with ``overwrite``."""
    with reserve_out_dir(out, overwrite, inputs) as out:
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        except OSError as exc:
            raise DeepclustError(f"cannot write --out {str(out)!r}: {exc.strerror}") from None
        aside = tmp.with_name(tmp.name + ".old")
        try:
            fill(tmp)
            (tmp / MARKER).write_text(json.dumps({"format": MARKER_FORMAT, "version": 1,
                                                  "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))
            tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it 0700
            if out.exists():
                os.rename(out, aside)
            os.rename(tmp, out)
        except BaseException as exc:
            if aside.exists():  # the old run was moved aside: put it back (taking the new one out if it got in)
                if out.exists():
                    os.rename(out, tmp)
                os.rename(aside, out)
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, OSError):
                raise DeepclustError(f"cannot write --out {str(out)!r}: {exc.strerror or exc}") from None
            raise
        try:
            if aside.exists():
                shutil.rmtree(aside)
        except BaseException:  # the new run is in place: finish removing the old one, then report
            shutil.rmtree(aside, ignore_errors=True)
            raise
    return out
