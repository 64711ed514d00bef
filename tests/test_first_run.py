"""A first run with default settings: the defaults are the measured ones, and the run says what
happened (convergence, empty clusters, k at the edge of its range, real timings, progress in
logs), refuses options it would ignore, and resumes a long embedding (issue 21, issue 15 part 4)."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning

from deepclust.cli import build_parser, main
from deepclust.engines.kmeans import KMeans, MiniBatchKMeans
from deepclust.methods.dec import DEC, IDEC
from deepclust.methods.depict import DEPICT
from deepclust.methods.n2d import N2D
from deepclust.training import epochs_for_steps
from test_run_report import assert_error


def run_cli(*argv: str) -> int:
    return main(["--quiet", *argv])


# ------------------------------------------------------------------------------------- defaults
def test_epochs_for_steps_gives_small_sets_the_same_number_of_steps() -> None:
    assert epochs_for_steps(2960, 9298, 256) == 80  # USPS: 37 batches an epoch
    assert epochs_for_steps(2960, 1797, 256) == 370  # digits: 8 batches an epoch
    assert epochs_for_steps(2960, 70_000, 256) == 11
    assert epochs_for_steps(0, 100, 10) == 0 and epochs_for_steps(5, 10, 256) == 5


def test_depict_defaults_are_the_measured_ones() -> None:
    model = DEPICT(10)
    assert model.target == "dec" and model.schedule == "budget"
    usps = model._resolve_schedule(9298)  # the schedule benchmarked on USPS: 80 + 3 + 40 epochs
    assert usps == {"lr": 1e-3, "batch_size": 256, "pretrain_epochs": 80, "warmup_epochs": 3, "cluster_epochs": 40}
    digits = model._resolve_schedule(1797)
    assert (digits["pretrain_epochs"], digits["warmup_epochs"], digits["cluster_epochs"]) == (370, 14, 185)
    paper = DEPICT(10, schedule="paper")._resolve_schedule(1797)
    assert (paper["lr"], paper["batch_size"], paper["pretrain_epochs"]) == (1e-4, 100, 4000)
    assert DEPICT(10, pretrain_epochs=7, lr=0.01)._resolve_schedule(1797)["pretrain_epochs"] == 7  # explicit wins


def test_autoencoder_family_budget_and_paper_schedules() -> None:
    assert DEC(10)._resolve_schedule(9298) == {"pretrain_epochs": 30, "max_iter": 3000}  # as benchmarked on USPS
    assert IDEC(10, schedule="paper")._resolve_schedule(9298) == {"pretrain_epochs": 200, "max_iter": 20_000}
    assert N2D(10, schedule="paper")._resolve_schedule(9298) == {"pretrain_epochs": 1000}
    assert DEC(10, max_iter=50, pretrain_epochs=2)._resolve_schedule(9298) == {"pretrain_epochs": 2, "max_iter": 50}


# ------------------------------------------------------------------------------------- convergence
def test_kmeans_at_max_iter_warns_and_says_not_converged() -> None:
    X, _ = make_blobs(300, centers=4, random_state=0)
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        model = KMeans(4, max_iter=1, tol=0, device="cpu").fit(X)
    assert model.converged_ is False
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        assert KMeans(4, device="cpu").fit(X).converged_ is True
    with pytest.warns(ConvergenceWarning, match="MiniBatchKMeans stopped at max_iter = 1 passes"):
        assert MiniBatchKMeans(4, batch_size=64, max_iter=1, tol=0, device="cpu").fit(X).converged_ is False


def test_dec_at_max_iter_warns_with_the_share_of_moving_labels() -> None:
    X, _ = make_blobs(200, centers=3, n_features=8, random_state=0)
    with pytest.warns(ConvergenceWarning, match=r"DEC stopped at its limit of 10 clustering iterations.*max_iter"):
        model = DEC(3, hidden_dims=(16, 16), embedding_dim=3, pretrain_epochs=2, update_interval=10, max_iter=10,
                    tol=0.0, kmeans_n_init=2, device="cpu").fit(X)
    assert model.converged_ is False


def test_depict_at_its_epoch_limit_warns() -> None:
    from test_depict import pattern_images

    X, _ = pattern_images(20)
    kw = dict(pretrain_epochs=2, warmup_epochs=1, batch_size=32, channels=(4, 4), kmeans_n_init=2, device="cpu")
    with pytest.warns(ConvergenceWarning, match="cluster_epochs"):
        assert DEPICT(3, cluster_epochs=2, tol=0.0, **kw).fit(X).converged_ is False
    assert DEPICT(3, cluster_epochs=3, tol=1.01, **kw).fit(X).converged_ is True  # stops at its 2nd epoch


def test_metrics_json_records_converged_false(tmp_path: Path, capsys) -> None:
    out = tmp_path / "o"
    assert run_cli("cluster", "digits", "-k", "10", "--param", "max_iter=1", "--param", "tol=0",
                   "--out", str(out)) == 0
    assert "not converged" in capsys.readouterr().err
    assert json.loads((out / "metrics.json").read_text())["converged"] is False


# ------------------------------------------------------------------------------------- what the console says
def test_cli_warnings_are_one_plain_line(tmp_path: Path, capsys) -> None:
    assert run_cli("cluster", "digits", "-k", "10", "--param", "max_iter=1", "--param", "tol=0",
                   "--out", str(tmp_path / "o")) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert any(line.startswith("deepclust: warning:") and "max_iter" in line for line in lines), lines
    assert not any(".py" in line or "warnings.warn" in line for line in lines), lines


def test_cluster_summary_prints_non_empty_clusters(tmp_path: Path, capsys) -> None:
    assert run_cli("cluster", "digits", "-k", "5", "--out", str(tmp_path / "o")) == 0
    assert "5 of 5 clusters non-empty" in capsys.readouterr().out


def test_fewer_non_empty_clusters_than_k_warn(capsys) -> None:
    from deepclust.cli import _print_clusters_found

    _print_clusters_found({"n_clusters": 10, "n_clusters_found": 9})
    assert "9 of 10 clusters non-empty" in capsys.readouterr().out  # run_clustering warns (test_cli_errors)


def test_auto_k_at_the_edge_of_its_range_says_so(tmp_path: Path, capsys) -> None:
    from deepclust.run import range_edge_note

    assert range_edge_note(5, 2, 25) == ""
    assert "fewer than 2" in range_edge_note(2, 2, 25) and "more than 25" in range_edge_note(25, 2, 25)
    X, _ = make_blobs(120, centers=2, n_features=4, cluster_std=0.5, random_state=0)
    np.save(tmp_path / "two.npy", X.astype(np.float32))
    assert main(["run", str(tmp_path / "two.npy"), "--out", str(tmp_path / "o")]) == 0
    assert "k = 2 is the lowest value searched" in capsys.readouterr().out
    report = json.loads((tmp_path / "o" / "report_data.json").read_text())
    assert "a bound, not an estimate" in report["notes"]["k"]


def test_run_records_load_and_feature_seconds(tmp_path: Path, monkeypatch) -> None:
    import time

    import deepclust.encoders as encoders
    from deepclust.run import run

    slow = encoders.encode_with_info

    def slow_encode(*args, **kwargs):
        time.sleep(0.2)
        return slow(*args, **kwargs)

    monkeypatch.setattr(encoders, "encode_with_info", slow_encode)
    X, _ = make_blobs(60, centers=3, random_state=0)
    np.save(tmp_path / "x.npy", X.astype(np.float32))
    run(str(tmp_path / "x.npy"), tmp_path / "o", k=3, device="cpu")
    seconds = json.loads((tmp_path / "o" / "metrics.json").read_text())["seconds"]
    assert seconds["features"] >= 0.2 and seconds["load"] > 0
    assert seconds["total"] >= seconds["features"] + seconds["fit"]


# ------------------------------------------------------------------------------------- inputs half-used
@pytest.mark.parametrize("kind", ["txt", "npy", "folder", "builtin"])
def test_column_options_that_do_not_apply_are_refused(tmp_path: Path, capsys, kind: str) -> None:
    if kind == "txt":
        (tmp_path / "docs.txt").write_text("a\tsome text\nb\tmore text\n")
        target = str(tmp_path / "docs.txt")
    elif kind == "npy":
        np.save(tmp_path / "x.npy", np.zeros((5, 2), np.float32))
        target = str(tmp_path / "x.npy")
    elif kind == "folder":
        (tmp_path / "imgs").mkdir()
        target = str(tmp_path / "imgs")
    else:
        target = "digits"
    code = run_cli("cluster", target, "-k", "2", "--label-column", "label", "--out", str(tmp_path / "o"))
    assert_error(capsys, code, "--label-column", "only apply to tables")
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------- long embeddings
def test_long_embedding_is_cached_in_chunks_and_resumes(tmp_path: Path, monkeypatch) -> None:
    import deepclust.encoders.api as api
    from deepclust.encoders.base import Encoder

    class Doubler(Encoder):
        name, modality, per_sample = "doubler", "any", True
        calls: list[int] = []

        def identity(self) -> dict:
            return {"name": self.name}

        def _encode(self, X, device, batch_size):
            self.calls.append(len(X))
            if len(self.calls) == 3 and getattr(self, "fail", False):
                raise KeyboardInterrupt
            return np.asarray(X) * 2

    monkeypatch.setattr(api, "EMBED_CHUNK", 10)
    X = np.arange(45, dtype=np.float32).reshape(45, 1)
    enc = Doubler()
    enc.fail = True
    with pytest.raises(KeyboardInterrupt):
        api.encode(X, enc, device="cpu", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.chunks-10/*.npy"))) == 2  # two finished chunks kept
    enc.fail, enc.calls[:] = False, []
    Z = api.encode(X, enc, device="cpu", cache_dir=tmp_path)
    np.testing.assert_array_equal(Z, X * 2)
    assert enc.calls == [10, 10, 5]  # only the chunks not done before
    assert not list(tmp_path.glob("*.chunks-*")) and len(list(tmp_path.glob("*.npy"))) == 1


# ------------------------------------------------------------------------------------- progress in logs
def test_progress_without_a_terminal_writes_a_line_every_few_percent(monkeypatch) -> None:
    import sys

    from deepclust import progress as progress_module

    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.delenv("DEEPCLUST_NO_PROGRESS", raising=False)
    progress_module.set_quiet(False)
    with progress_module.progress(total=200, desc="pretrain", unit="batch") as bar:
        for _ in range(200):
            bar.update(1)
    lines = err.getvalue().splitlines()
    assert "\r" not in err.getvalue()
    assert 100 // progress_module.LOG_STEP_PERCENT <= len(lines) <= 100 // progress_module.LOG_STEP_PERCENT + 2
    assert all(line.startswith("pretrain:") for line in lines) and "200/200" in lines[-1]
    assert "<" in lines[1]  # elapsed<remaining: the estimate of the time left


# ------------------------------------------------------------------------------------- help that matches the code
def test_run_help_names_every_encoder_the_code_can_choose(monkeypatch) -> None:
    import deepclust.run as run_module

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["run"]
    help_text = next(a.help for a in sub._actions if a.dest == "encoder")
    chosen = set()
    for installed in (True, False):
        monkeypatch.setattr(run_module, "_installed", lambda *m, installed=installed: installed)
        for modality in run_module.DEFAULT_ENCODERS:
            for n, device, shape in ((500, "cpu", (3, 64, 64)), (70_000, "cpu", (3, 64, 64)), (500, "cpu", (1, 8, 8))):
                name = run_module.default_encoder(modality, n, device, shape)[0]
                assert name in run_module.DEFAULT_ENCODERS[modality], (modality, name)
                chosen.add(name)
    assert chosen == {n for names in run_module.DEFAULT_ENCODERS.values() for n in names}
    for name in chosen:
        assert name in help_text, name


def test_depict_budget_on_a_gpu_keeps_the_measured_epochs() -> None:
    """On a CPU the step budget gives 70,000 images 11 pretraining epochs; on a GPU each phase keeps at
    least the 80 + 3 + 40 epochs measured on USPS and MNIST-test (small sets keep their larger share)."""
    import torch

    from deepclust.methods.depict import DEPICT

    cpu = DEPICT(10)._resolve_schedule(70_000, torch.device("cpu"))
    gpu = DEPICT(10)._resolve_schedule(70_000, torch.device("cuda"))
    assert (cpu["pretrain_epochs"], gpu["pretrain_epochs"]) == (11, 80)
    assert (gpu["warmup_epochs"], gpu["cluster_epochs"]) == (3, 40)
    small = DEPICT(10)._resolve_schedule(1_797, torch.device("cuda"))
    assert small == DEPICT(10)._resolve_schedule(1_797, torch.device("cpu"))  # 370 > 80 epochs already
    assert DEPICT(10, schedule="paper")._resolve_schedule(70_000, torch.device("cuda"))["pretrain_epochs"] == 4000


def test_autoencoder_budget_on_a_gpu_is_the_papers_schedule() -> None:
    import torch

    from deepclust.methods.dec import DEC

    cpu = DEC(10)._resolve_schedule(70_000, torch.device("cpu"))
    gpu = DEC(10)._resolve_schedule(70_000, torch.device("cuda"))
    paper = DEC(10, schedule="paper")._resolve_schedule(70_000, torch.device("cpu"))
    assert gpu == paper and cpu["pretrain_epochs"] < paper["pretrain_epochs"]
    assert cpu["max_iter"] < gpu["max_iter"]
