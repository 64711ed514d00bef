"""Data-parallel training (torchrun / DistributedDataParallel model) on the CPU with gloo.

Two processes are started with ``torch.multiprocessing`` (and once with ``torchrun`` through the
CLI); each holds a shard of the rows. What couples the rows must be computed over all of them: the
DEC and DEPICT targets and Sinkhorn's transport equal the single-process ones, and a deterministic
method (DEC, IDEC: no random draw in a step) trained on 2 ranks with the same global batch ends with
the single-process parameters and labels.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from deepclust import distributed
from deepclust.distributed import Shard

ROOT = Path(__file__).resolve().parents[1]
WORLD = 2


def _spawn(fn, tmp_path: Path, *args) -> None:
    """Run ``fn(rank, *args)`` on ``WORLD`` gloo ranks (a file store under ``tmp_path``)."""
    mp.start_processes(_worker, args=(fn, str(tmp_path / "store"), args), nprocs=WORLD, join=True,
                       start_method="fork")  # fork: no second import of torch (seconds per rank)


def _worker(rank: int, fn, store: str, args: tuple) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        fn(rank, *args)
    finally:
        dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------- helpers


def test_shard_rows_cover_the_data_once():
    n = 11
    parts = [Shard(n, r, 3) for r in range(3)]
    rows = sorted(i for p in parts for i in range(n)[p.rows])
    assert rows == list(range(n)) and sum(p.size for p in parts) == n
    idx = torch.tensor([10, 0, 4, 5, 7, 3])
    for p in parts:
        local = p.local(idx)
        assert torch.equal(p.to_global(local), idx[idx % 3 == p.rank])


def test_outside_torchrun_everything_is_whole():
    assert not distributed.active() and distributed.is_main() and distributed.shard(5).whole
    t = torch.arange(4.0)
    assert distributed.all_sum(t) is t and distributed.from_main(lambda: 7) == 7
    assert distributed.gather_rows(t, Shard(4)) is t


# ---------------------------------------------------------------------------------------------- targets


def _soft_assignments(n: int = 37, k: int = 5, seed: int = 0, scale: float = 3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g, dtype=torch.float64) * scale


def _check_targets(rank: int) -> None:
    from deepclust.targets import dec_target, depict_target, sinkhorn_target

    logits = _soft_assignments()
    logits[:, 0] -= 40.0  # a cluster nobody likes: with λ = 25 its column of P^λ underflows (log-space path)
    p = torch.softmax(_soft_assignments(seed=1), 1)
    part = distributed.shard(len(p))
    assert part.world == WORLD and part.size in (18, 19)
    checks = {
        "dec": (dec_target(p), dec_target(p[part.rows], sharded=True)),
        "depict": (depict_target(p), depict_target(p[part.rows], sharded=True)),
        "depict prior": (depict_target(p, [1, 2, 3, 4, 5]), depict_target(p[part.rows], [1, 2, 3, 4, 5], sharded=True)),
        "sinkhorn": (sinkhorn_target(_soft_assignments(), lam=5.0, tol=1e-9),
                     sinkhorn_target(_soft_assignments()[part.rows], lam=5.0, tol=1e-9, sharded=True)),
        "sinkhorn log space": (sinkhorn_target(logits, tol=1e-9, n_iters=300),
                               sinkhorn_target(logits[part.rows], tol=1e-9, n_iters=300, sharded=True)),
    }
    for name, (whole, mine) in checks.items():
        got = distributed.gather_rows(mine, part)
        torch.testing.assert_close(got, whole, rtol=1e-12, atol=1e-12, msg=name)
        assert torch.equal(got.argmax(1), whole.argmax(1)), name


def test_targets_computed_over_two_ranks_equal_the_single_process_ones(tmp_path):
    from deepclust.targets import sinkhorn_target

    logits = _soft_assignments()
    logits[:, 0] -= 40.0
    assert torch.exp(25.0 * (torch.log_softmax(logits, 1) - torch.log_softmax(logits, 1).max(1, keepdim=True).values)
                     ).sum(0)[0] <= 1e-200  # the log-space path is the one exercised
    assert sinkhorn_target(logits, tol=1e-9, n_iters=300).sum(0)[0] > 1  # and it still balances
    _spawn(_check_targets, tmp_path)


# ---------------------------------------------------------------------------------------------- training


def _pendigits(n: int = 480) -> tuple[np.ndarray, np.ndarray]:
    path = Path(os.environ.get("DEEPCLUST_DATA", ROOT.parent / "shared" / "data")) / "tabular" / "pendigits.csv.gz"
    if not path.is_file():
        pytest.skip(f"pendigits not found at {path}")
    with gzip.open(path, "rt") as fh:
        rows = [line.rstrip("\n").split(",") for line in fh][1:n + 1]
    return np.array([r[:16] for r in rows], dtype=np.float32), np.array([int(r[16]) for r in rows])


DEC_SMALL = dict(n_clusters=10, hidden_dims=(32, 32, 64), pretrain_epochs=2, batch_size=64, update_interval=6,
                 max_iter=18, tol=0.0, kmeans_n_init=2, device="cpu", mixed_precision=False)
#: small settings without a random draw inside a step (DEPICT without dropout, SeLa without neighbour
#: views): 2 ranks must reach the single-process parameters
DETERMINISTIC = {
    "dec": DEC_SMALL,
    "idec": DEC_SMALL,
    "depict": dict(n_clusters=10, hidden_dims=(32, 32, 64), dropout=0.0, init="kmeans", kmeans_n_init=2,
                   pretrain_epochs=2, warmup_epochs=1, cluster_epochs=2, tol=0.0, batch_size=64, device="cpu",
                   mixed_precision=False),
    "sela": dict(n_clusters=10, augment=None, epochs=4, n_label_updates=2, batch_size=64, device="cpu"),
}
#: with random draws in a step (neighbour picks, augmentations, dropout): the ranks must still agree
STOCHASTIC = {
    "scan": (dict(n_clusters=10, n_neighbors=5, n_heads=2, epochs=2, selflabel_epochs=2, batch_size=64,
                  selflabel_batch_size=128, threshold=0.5, device="cpu"), False),
    "scan images": (dict(n_clusters=10, n_neighbors=5, n_heads=2, epochs=1, selflabel_epochs=1, batch_size=64,
                         selflabel_batch_size=128, strong_ops=1, device="cpu",
                         pretext={"epochs": 1, "width": 4, "image_size": None, "batch_size": 64, "flip": False}),
                    True),
    "depict": (dict(n_clusters=10, hidden_dims=(32, 32, 64), init="kmeans", kmeans_n_init=2, pretrain_epochs=1,
                    warmup_epochs=1, cluster_epochs=2, batch_size=64, device="cpu"), False),
    "sela": (dict(n_clusters=10, n_neighbors=5, epochs=3, n_label_updates=2, batch_size=64, device="cpu"), False),
}


def _fit(rank: int, X: np.ndarray, out: str, method: str, params: dict) -> None:
    from deepclust.methods import make_method
    from deepclust.runtime import seed_everything

    seed_everything(3)
    model = make_method(method.split()[0], random_state=3, **params)
    model.fit(X)
    state = {f"{net}.{k}": v.clone() for net in model._networks for k, v in getattr(model, net).state_dict().items()}
    torch.save({"state": state, "labels": model.labels_, "history": model.history_}, f"{out}/rank{rank}.pt")


def _fit_both(tmp_path: Path, X: np.ndarray, method: str, params: dict) -> tuple[dict, list[dict]]:
    """The single-process fit and every rank's fit."""
    _fit(0, X, str(tmp_path), method, params)  # one process (no group)
    single = torch.load(tmp_path / "rank0.pt", weights_only=False)
    (tmp_path / "rank0.pt").unlink()
    _spawn(_fit, tmp_path, X, str(tmp_path), method, params)
    return single, [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.mark.parametrize("method", sorted(DETERMINISTIC))
def test_two_ranks_train_to_the_single_process_parameters(tmp_path, method, one_thread):
    X, _ = _pendigits()
    single, ranks = _fit_both(tmp_path, X, method, DETERMINISTIC[method])
    for r in ranks:  # every rank holds the whole model and every label, in the global order
        assert r["labels"].shape == (len(X),)
        np.testing.assert_array_equal(r["labels"], single["labels"])
        for key, value in single["state"].items():
            torch.testing.assert_close(r["state"][key], value, rtol=1e-4, atol=1e-5, msg=key)
    # the recorded losses are the global batch means
    for phase, records in single["history"].items():
        np.testing.assert_allclose([e.get("loss", 0) for e in ranks[0]["history"][phase]],
                                   [e.get("loss", 0) for e in records], rtol=1e-4, err_msg=phase)


@pytest.mark.parametrize("method", sorted(STOCHASTIC))
def test_ranks_agree_where_steps_draw_at_random(tmp_path, method, one_thread):
    params, images = STOCHASTIC[method]
    X, _ = _pendigits(256)
    if images:
        X = X.reshape(-1, 4, 4)
    _spawn(_fit, tmp_path, X, str(tmp_path), method, params)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    assert ranks[0]["labels"].shape == (len(X),)
    np.testing.assert_array_equal(ranks[1]["labels"], ranks[0]["labels"])
    for key, value in ranks[0]["state"].items():  # parameters and batch-norm statistics
        torch.testing.assert_close(ranks[1]["state"][key], value, rtol=0, atol=0, msg=key)


# ---------------------------------------------------------------------------------------------- the CLI


def _cli_args(tmp_path: Path, out: str) -> list[str]:
    X, y = _pendigits(600)
    data = tmp_path / "pen600.csv"
    if not data.exists():
        data.write_text("\n".join([",".join([f"f{i}" for i in range(16)] + ["label"])]
                                  + [",".join([*map(str, map(int, x)), str(c)]) for x, c in zip(X, y)]) + "\n")
    params = [f"--param={k}={json.dumps(v)}" for k, v in DEC_SMALL.items() if k not in ("n_clusters", "device", "tol")]
    return ["--quiet", "cluster", str(data), "--method", "dec", "--label-column", "label", "--device", "cpu",
            "--seed", "1", "--threads", "1", "--out", str(tmp_path / out), *params]


def _assignments(folder: Path) -> np.ndarray:
    return np.loadtxt(folder / "assignments.csv", delimiter=",", skiprows=1)


def test_torchrun_two_processes_cluster_like_one_and_only_rank_0_writes(tmp_path, monkeypatch, one_thread):
    from deepclust.cli import main

    # a cached autoencoder would change DEC's random draws: each run gets an empty cache
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1",
           "DEEPCLUST_CACHE": str(tmp_path / "cache-two")}
    # (a rank used to abort in the interpreter's C++ teardown in 1 run of 4-8 here, and torchrun reported the
    # finished run as failed: `python -m deepclust` now leaves torchrun's ranks with os._exit)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m",
                          "deepclust", *_cli_args(tmp_path, "two")], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("results written to") == 1  # rank 0 alone reports
    monkeypatch.setenv("DEEPCLUST_CACHE", str(tmp_path / "cache-one"))
    assert main(_cli_args(tmp_path, "one")) == 0  # one process, no torchrun
    written = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("cache-"))
    assert written == ["one", "pen600.csv", "two"]  # nothing from rank 1
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert metrics["processes"] == 2 and "processes" not in json.loads((tmp_path / "one" / "metrics.json").read_text())
    a, b = _assignments(tmp_path / "one"), _assignments(tmp_path / "two")
    np.testing.assert_array_equal(b[:, 1], a[:, 1])  # the same clusters
    np.testing.assert_allclose(b[:, 2], a[:, 2], atol=1e-4)  # confidences up to float rounding


def _refuses_whole_methods(rank: int, path: str) -> None:
    from deepclust.errors import DeepclustError
    from deepclust.pipeline import run_clustering

    with pytest.raises(DeepclustError, match="kmeans does not train data-parallel.*run it without torchrun"):
        run_clustering(path, "kmeans", 3)


def test_under_torchrun_methods_that_are_not_data_parallel_are_refused(tmp_path):
    X, _ = _pendigits(60)
    np.save(tmp_path / "x.npy", X)
    _spawn(_refuses_whole_methods, tmp_path, str(tmp_path / "x.npy"))


def test_under_torchrun_only_cluster_runs(monkeypatch, capsys):
    from deepclust.cli import main

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["methods"]) == 2
    assert capsys.readouterr().err.strip() == ("deepclust: error: only `deepclust cluster` runs under torchrun, "
                                               "not `deepclust methods`")
