"""Shared test settings: the offline data folder and a fixed, small torch thread count."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings

# Property tests draw the same examples on every run (a failure found once is found again in CI).
settings.register_profile("deepclust", derandomize=True, print_blob=True)
settings.load_profile("deepclust")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

if "DEEPCLUST_DATA" not in os.environ and SHARED_DATA.is_dir():
    os.environ["DEEPCLUST_DATA"] = str(SHARED_DATA)
os.environ.setdefault("DEEPCLUST_NO_PROGRESS", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def data_dir() -> Path:
    """The real data folder (../shared/data or $DEEPCLUST_DATA); tests needing it skip when it is absent."""
    path = Path(os.environ.get("DEEPCLUST_DATA", SHARED_DATA))
    if not (path / "mnist").is_dir():
        pytest.skip(f"real data not found in {path}")
    return path


@pytest.fixture
def one_thread():
    """Tiny networks: one torch thread (on a busy 2-core machine, two threads made these 50x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
