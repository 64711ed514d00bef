"""Finding a data file locally, downloading it (canonical URL + checksum) when it is missing.

Some built-in files are lossless repacks of several original files (one TSV from a JSON, one
CSV.gz from a UCI train and test file): they are rebuilt from the checksummed originals, and the
result is checked too.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deepclust.errors import DeepclustError
from deepclust.progress import progress


@dataclass(frozen=True)
class RemoteFile:
    """A file of a built-in dataset: its name, where to get it, and its checksums.

    ``md5`` is of the decompressed content, ``sha256`` of the file's bytes as published; a file
    passes when one given checksum matches (a re-compressed copy of the same content passes by
    md5). A file without URLs but with ``sources`` is rebuilt by ``build`` from those originals.
    """

    filename: str
    urls: tuple[str, ...]
    md5: str | None = None
    sha256: str | None = None
    sources: tuple[RemoteFile, ...] = ()
    build: Callable[[list[Path]], bytes] | None = None


def md5_of(path: Path) -> str:
    """md5 of the file's content, decompressed first when it is gzip."""
    digest = hashlib.md5()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    """sha256 of the file's bytes as stored."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, remote: RemoteFile, *, downloaded_from: str | None = None) -> None:
    """Raise when ``path`` has neither of ``remote``'s checksums."""
    if remote.sha256 is None and remote.md5 is None:
        return
    shown = f"{remote.filename} from {downloaded_from}" if downloaded_from else str(path)
    fix = "" if downloaded_from else "; delete it so it is fetched again"
    try:
        if remote.sha256 is not None and sha256_of(path) == remote.sha256:
            return
        actual = md5_of(path) if remote.md5 is not None else None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DeepclustError(f"{shown} could not be read ({exc}){fix}") from exc
    if remote.md5 is not None and actual == remote.md5:
        return
    got, expected = (f"md5 {actual}", remote.md5) if remote.md5 else (f"sha256 {sha256_of(path)}", remote.sha256)
    raise DeepclustError(f"{shown} is corrupt: {got}, expected {expected}{fix}")


def locate(remote: RemoteFile, folders: list[Path], download_to: Path, *, download: bool = True) -> Path:
    """Return a verified local copy of ``remote``: the first folder holding it, else a fresh download.

    Offline, the error names the missing file and every folder that was searched.
    """
    for folder in folders:
        candidate = folder / remote.filename
        if candidate.is_file():
            verify(candidate, remote)
            return candidate
    searched = ", ".join(str(f) for f in folders)
    if not download or not (remote.urls or remote.sources):
        raise DeepclustError(f"{remote.filename} not found (looked in {searched}); "
                             f"set --data-dir or {'DEEPCLUST_DATA'} to the folder holding it")
    download_to.mkdir(parents=True, exist_ok=True)
    try:
        return _rebuild(remote, download_to / remote.filename) if remote.sources else _fetch(remote, download_to)
    except DeepclustError as exc:
        raise DeepclustError(f"{remote.filename} not found (looked in {searched}) and the download failed ({exc}); "
                             f"without a network, copy the file into {download_to} or point --data-dir / "
                             "DEEPCLUST_DATA at a folder holding it") from exc


def _fetch(remote: RemoteFile, folder: Path) -> Path:
    """Download ``remote`` into ``folder`` from the first of its URLs that gives a verified copy."""
    errors = []
    for url in remote.urls:
        try:
            return _download(url, folder / remote.filename, remote)
        except (OSError, DeepclustError) as exc:
            errors.append(f"{url}: {exc}")
    raise DeepclustError("; ".join(errors))


def _rebuild(remote: RemoteFile, dest: Path) -> Path:
    """Download the originals into a temporary folder, build the file from them, verify, move into place."""
    assert remote.build is not None, f"{remote.filename}: sources without a build function"
    with tempfile.TemporaryDirectory(prefix=f".{dest.name}.", dir=dest.parent) as tmp_dir:
        tmp = Path(tmp_dir)
        originals = [_fetch(source, tmp) for source in remote.sources]
        built = tmp / dest.name
        built.write_bytes(remote.build(originals))
        verify(built, remote, downloaded_from=f"the originals ({', '.join(s.filename for s in remote.sources)})")
        shutil.move(str(built), dest)
    return dest


def _download(url: str, dest: Path, remote: RemoteFile) -> Path:
    """Download to a temporary file next to ``dest``, verify, then move into place."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(fd, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with progress(desc=f"downloading {dest.name}", total=total, unit="B") as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    bar.update(len(block))
        tmp_gz = tmp.with_suffix(".gz") if dest.suffix == ".gz" else tmp
        if tmp_gz != tmp:
            tmp.rename(tmp_gz)
            tmp = tmp_gz
        verify(tmp, remote, downloaded_from=url)
        shutil.move(str(tmp), dest)
        return dest
    finally:
        tmp.unlink(missing_ok=True)
