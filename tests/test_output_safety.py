"""Nothing the user had is lost: --out / --overwrite, atomic replacement, SIGTERM, concurrent runs,
bench --out (issue 14, items 1-7, and the umask)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from deepclust import pipeline
from deepclust.cli import main
from deepclust.errors import DeepclustError
from deepclust.output import MARKER, lock_path, write_run_dir

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*argv: str) -> int:
    return main(["--quiet", *argv])


def tree_hash(folder: Path) -> str:
    """A hash of every path and file content below ``folder``."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        h.update(str(p.relative_to(folder)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def assert_refused(capsys, code: int, *fragments: str) -> None:
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("deepclust: error:"), err
    for fragment in fragments:
        assert fragment in err, err


@pytest.fixture
def no_fit(monkeypatch):
    """Fail the test if a run gets as far as fitting (refusals must come before any work)."""
    def fit(*args, **kwargs):
        raise AssertionError("the run was fitted before --out was refused")

    monkeypatch.setattr(pipeline, "run_clustering", fit)


@pytest.fixture
def user_folder(tmp_path: Path) -> Path:
    """A folder of the user's: a table (the input) and another file beside it."""
    folder = tmp_path / "data"
    folder.mkdir()
    X = np.random.default_rng(0).normal(size=(40, 3))
    np.savetxt(folder / "measurements.csv", X, delimiter=",", header="a,b,c", comments="")
    (folder / "notes.txt").write_text("the user's notes")
    return folder


def make_run(folder: Path, content: str = "old run") -> Path:
    """A run folder as deepclust writes it (with the marker), holding ``content``."""
    write_run_dir(folder, lambda d: (d / "metrics.json").write_text(content))
    return folder


# ---------------------------------------------------------------- 1-2: what --overwrite may replace
@pytest.mark.parametrize("out", ["", "."])
def test_current_folder_is_never_replaced(user_folder, monkeypatch, capsys, no_fit, out) -> None:
    monkeypatch.chdir(user_folder)
    before = tree_hash(user_folder)
    assert_refused(capsys, run_cli("cluster", "digits", "-k", "3", "--out", out, "--overwrite"), "current folder")
    assert tree_hash(user_folder) == before


def test_folder_of_the_input_is_never_replaced(user_folder, capsys, no_fit) -> None:
    before = tree_hash(user_folder)
    (user_folder / MARKER).write_text(json.dumps({"format": "deepclust-run"}))  # even with a marker
    code = run_cli("cluster", str(user_folder / "measurements.csv"), "-k", "3", "--out", str(user_folder),
                   "--overwrite")
    assert_refused(capsys, code, "holds the input")
    (user_folder / MARKER).unlink()
    assert tree_hash(user_folder) == before


@pytest.mark.parametrize("place", ["/", "home", "parent"])
def test_root_home_and_parents_are_never_replaced(tmp_path, monkeypatch, capsys, no_fit, place) -> None:
    cwd = tmp_path / "work"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    out = {"/": "/", "home": str(Path.home()), "parent": str(tmp_path)}[place]
    assert_refused(capsys, run_cli("cluster", "digits", "-k", "3", "--out", out, "--overwrite"), f"--out {out!r}")


def test_folder_not_written_by_deepclust_is_never_replaced(user_folder, tmp_path, capsys, no_fit) -> None:
    before = tree_hash(user_folder)
    code = run_cli("cluster", "digits", "-k", "3", "--out", str(user_folder), "--overwrite")
    assert_refused(capsys, code, "not written by deepclust", MARKER)
    assert tree_hash(user_folder) == before


def test_overwrite_replaces_a_run_deepclust_wrote(tmp_path, capsys) -> None:
    out = make_run(tmp_path / "run")
    assert (out / MARKER).is_file()
    assert run_cli("cluster", "digits", "-k", "3", "--out", str(out), "--overwrite") == 0
    assert json.loads((out / "metrics.json").read_text())["n_clusters"] == 3
    assert (out / MARKER).is_file() and (out / "model" / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing hidden left beside it


# ---------------------------------------------------------------- 3: atomic replacement
@pytest.mark.parametrize("when", ["before the new run moves in", "just after the new run moved in"])
def test_interrupt_during_the_swap_puts_the_old_run_back(tmp_path, monkeypatch, when) -> None:
    out = make_run(tmp_path / "run")
    before = tree_hash(out)
    real_rename = os.rename
    calls = []

    def rename(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # 1: old run aside, 2: new run in place
            if when.startswith("just after"):
                real_rename(src, dst)
            raise KeyboardInterrupt
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        write_run_dir(out, lambda d: (d / "metrics.json").write_text("new run"), overwrite=True)
    monkeypatch.undo()
    assert tree_hash(out) == before and (out / "metrics.json").read_text() == "old run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_failure_while_writing_keeps_the_old_run(tmp_path) -> None:
    out = make_run(tmp_path / "run")
    before = tree_hash(out)

    def fill(folder: Path) -> None:
        (folder / "metrics.json").write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(DeepclustError, match="cannot write --out") as info:
        write_run_dir(out, fill, overwrite=True)
    assert ".run." not in str(info.value)  # names --out, not the hidden folder
    assert tree_hash(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["run"]


# ---------------------------------------------------------------- 4: bench --out
def test_bench_never_appends_to_a_users_file(tmp_path, capsys) -> None:
    cases = {"users.csv": "name,age\nann,31\n", "other.jsonl": '{"a": 1}\n', "binary.jsonl": "\x00\xff\x10"}
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content.encode("latin-1"))
        code = run_cli("bench", "--methods", "kmeans", "--datasets", "digits", "--seeds", "0", "--out", str(path))
        assert_refused(capsys, code, "not a deepclust benchmark file")
        assert path.read_bytes() == content.encode("latin-1")


def test_bench_appends_to_its_own_jsonl(tmp_path) -> None:
    from deepclust.bench import read_records, run_benchmark

    out = tmp_path / "b.jsonl"
    run_benchmark(["kmeans"], ["digits"], [0], out, isolate=False, echo=lambda m: None, device="cpu")
    out.write_text(out.read_text().rstrip("\n"))  # a last line without its newline (e.g. edited by hand)
    run_benchmark(["kmeans"], ["digits"], [1], out, isolate=False, echo=lambda m: None, device="cpu")
    assert [r["seed"] for r in read_records([out])] == [0, 1]


# ---------------------------------------------------------------- 5: SIGTERM while writing
SLOW_WRITE = """
import sys, time
from pathlib import Path
from deepclust import base
from deepclust.cli import main

def slow_save(self, path):
    Path(path).mkdir()
    (Path(path) / "partial").write_text("x")
    Path(sys.argv[1]).write_text("writing")
    time.sleep(120)

base.BaseClusterer.save = slow_save
sys.exit(main(["--quiet", "cluster", "digits", "-k", "3", "--device", "cpu", "--out", sys.argv[2], "--overwrite"]))
"""


def test_sigterm_while_writing_leaves_no_hidden_folder_and_keeps_the_old_run(tmp_path) -> None:
    out = make_run(tmp_path / "run")
    before = tree_hash(out)
    ready = tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITE, str(ready), str(out)], env=env,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready.exists(), proc.stderr.read() if proc.poll() is not None else "the run did not start writing"
        hidden = [p.name for p in tmp_path.iterdir() if p.name.startswith(".run.")]
        assert hidden  # it is writing into its hidden folder now
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ready", "run"]
    assert tree_hash(out) == before


# ---------------------------------------------------------------- 6: concurrent runs
HOLD_LOCK = """
import sys
from filelock import FileLock
lock = FileLock(sys.argv[1], timeout=0)
if sys.argv[2] == "hold":
    lock.acquire()
    print("held", flush=True)
    sys.stdin.read()
else:
    try:
        lock.acquire()
    except Exception:
        sys.exit(3)
"""


@pytest.mark.parametrize("command", ["cluster", "run"])
def test_second_run_to_the_same_out_fails_at_once(tmp_path, capsys, no_fit, command) -> None:
    out = tmp_path / "run"
    lock_path(out).parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock_path(out)), "hold"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code = run_cli(command, "digits", "-k", "3", "--out", str(out))
    finally:
        holder.communicate("")
    assert_refused(capsys, code, "another deepclust run")
    assert not out.exists()


def test_lock_is_held_during_the_fit(tmp_path, monkeypatch) -> None:
    out = tmp_path / "run"
    real = pipeline.run_clustering
    seen = []

    def fit_while_probing(*args, **kwargs):
        probe = subprocess.run([sys.executable, "-c", HOLD_LOCK, str(lock_path(out)), "try"])
        seen.append(probe.returncode)
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "run_clustering", fit_while_probing)
    assert run_cli("cluster", "digits", "-k", "3", "--out", str(out)) == 0
    assert seen == [3]  # another process could not take the lock during the fit


# ---------------------------------------------------------------- 7: --out checked before the fit
def test_unwritable_out_is_refused_before_the_fit(tmp_path, capsys, no_fit) -> None:
    (tmp_path / "afile").write_text("x")
    code = run_cli("cluster", "digits", "-k", "3", "--out", str(tmp_path / "afile" / "run"))
    assert_refused(capsys, code, "--out", "is a file, not a folder")
    code = run_cli("cluster", "digits", "-k", "3", "--out", str(tmp_path / "afile"))
    assert_refused(capsys, code, "exists and is not a folder")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs permissions that apply (not root)")
def test_read_only_parent_is_refused_before_the_fit(tmp_path, capsys, no_fit) -> None:
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        code = run_cli("cluster", "digits", "-k", "3", "--out", str(parent / "run"))
    finally:
        parent.chmod(0o755)
    assert_refused(capsys, code, f"--out {str(parent / 'run')!r}", "is not writable")


# ---------------------------------------------------------------- the umask
@pytest.mark.parametrize("umask, mode", [(0o022, 0o755), (0o077, 0o700), (0o002, 0o775)])
def test_run_folder_respects_the_umask(tmp_path, umask, mode) -> None:
    previous = os.umask(umask)
    try:
        out = make_run(tmp_path / "run")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(out.stat().st_mode) == mode
    assert stat.S_IMODE((out / "metrics.json").stat().st_mode) == 0o666 & ~umask
