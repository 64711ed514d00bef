"""Finding a data file locally, downloading it (canonical URL + checksum) when it is missing."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from deepclust.errors import DeepclustError
from deepclust.progress import progress


@dataclass(frozen=True)
class RemoteFile:
    """A file of a built-in dataset: its name, where to get it, and the md5 of its decompressed content."""

    filename: str
    urls: tuple[str, ...]
    md5: str | None = None


def md5_of(path: Path) -> str:
    """md5 of the file's content, decompressed first when it is gzip."""
    digest = hashlib.md5()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, md5: str | None) -> None:
    """Raise when ``path`` does not have the expected checksum."""
    if md5 is None:
        return
    try:
        actual = md5_of(path)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DeepclustError(f"{path} could not be read ({exc}); delete it so it is fetched again") from exc
    if actual != md5:
        raise DeepclustError(f"{path} is corrupt: md5 {actual}, expected {md5}; delete it so it is fetched again")


def locate(remote: RemoteFile, folders: list[Path], download_to: Path, *, download: bool = True) -> Path:
    """Return a verified local copy of ``remote``: the first folder holding it, else a fresh download.

    Offline, the error names the missing file and every folder that was searched.
    """
    for folder in folders:
        candidate = folder / remote.filename
        if candidate.is_file():
            verify(candidate, remote.md5)
            return candidate
    searched = ", ".join(str(f) for f in folders)
    if not download or not remote.urls:
        raise DeepclustError(f"{remote.filename} not found (looked in {searched}); "
                             f"set --data-dir or {'DEEPCLUST_DATA'} to the folder holding it")
    download_to.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in remote.urls:
        try:
            return _download(url, download_to / remote.filename, remote.md5)
        except (OSError, DeepclustError) as exc:
            errors.append(f"{url}: {exc}")
    raise DeepclustError(f"{remote.filename} not found (looked in {searched}) and the download failed "
                         f"({'; '.join(errors)}); without a network, copy the file into {download_to} "
                         "or point --data-dir / DEEPCLUST_DATA at a folder holding it")


def _download(url: str, dest: Path, md5: str | None) -> Path:
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
        verify(tmp, md5)
        shutil.move(str(tmp), dest)
        return dest
    finally:
        tmp.unlink(missing_ok=True)
