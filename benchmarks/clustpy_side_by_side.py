"""DEC and IDEC side by side with ClustPy's, in one run: same machine, data, seeds and epochs.

ClustPy (PyPI ``clustpy``, BSD-3) is installed only for this benchmark (``pip install
'deepclust[clustpy]'``; it needs torchvision). Both libraries get the same images scaled to
[0, 1] as flat vectors, the same autoencoder layout (d-500-500-2000-10), the same number of
pretraining epochs and of clustering epochs; everything else is each library's default. Our
DEC/IDEC run their clustering for exactly the same number of epochs (``tol=0`` turns the
early stop off, ``max_iter`` = epochs × batches per epoch). Labels only score.

    python benchmarks/clustpy_side_by_side.py --dataset usps --seeds 0,1,2 \\
        --pretrain-epochs 20 --clustering-epochs 20 --out benchmarks/results/clustpy-side-by-side.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch

from deepclust.data import load_dataset
from deepclust.metrics import external_scores
from deepclust.runtime import describe_device, machine_load, versions


def run_clustpy(name: str, X: np.ndarray, k: int, seed: int, pre: int, clu: int, device: torch.device):
    from clustpy.deep import DEC, IDEC

    cls = {"dec": DEC, "idec": IDEC}[name]
    model = cls(n_clusters=k, pretrain_epochs=pre, clustering_epochs=clu, device=device, random_state=seed)
    t0 = time.perf_counter()
    model.fit(X)
    seconds = time.perf_counter() - t0
    # ClustPy's labels_ come from a final k-means on the embedding; dec_labels_ are DEC's own
    return {"labels": np.asarray(model.dec_labels_), "labels_final_kmeans": np.asarray(model.labels_)}, seconds


def run_ours(name: str, X: np.ndarray, k: int, seed: int, pre: int, clu: int, device: torch.device):
    from deepclust.methods.dec import DEC, IDEC

    cls = {"dec": DEC, "idec": IDEC}[name]
    batches = math.ceil(len(X) / 256)
    model = cls(k, pretrain_epochs=pre, max_iter=clu * batches, tol=0.0, scaling="none", device=device,
                random_state=seed)
    t0 = time.perf_counter()
    model.fit(X)
    seconds = time.perf_counter() - t0
    return {"labels": model.labels_, "phases": {k: round(v, 2) for k, v in model.timings_.items()}}, seconds


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="usps")
    ap.add_argument("--limit", type=int, default=None, help="first N samples only (a quick check)")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--methods", default="dec,idec")
    ap.add_argument("--pretrain-epochs", type=int, default=100)
    ap.add_argument("--clustering-epochs", type=int, default=150)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    import clustpy

    ds = load_dataset(args.dataset)
    X, y = ds.X[:args.limit], ds.y[:args.limit]
    X = X.reshape(len(X), -1).astype(np.float32)
    X = (X - X.min()) / (X.max() - X.min())
    k = int(ds.meta.n_classes)
    device = torch.device(args.device)
    for seed in (int(s) for s in args.seeds.split(",")):
        for name in args.methods.split(","):
            for library, runner in (("clustpy", run_clustpy), ("deepclust", run_ours)):
                torch.manual_seed(seed)
                labels, seconds = runner(name, X, k, seed, args.pretrain_epochs, args.clustering_epochs, device)
                rec = {"library": library, "library_version": clustpy.__version__ if library == "clustpy"
                       else versions()["deepclust"], "method": name, "dataset": ds.meta.name, "n": len(X), "k": k,
                       "seed": seed, "pretrain_epochs": args.pretrain_epochs,
                       "clustering_epochs": args.clustering_epochs, "seconds": round(seconds, 2),
                       **{key: round(v, 4) for key, v in external_scores(y, labels["labels"]).items()},
                       "device": str(device), "device_name": describe_device(device),
                       "torch": torch.__version__, "threads": torch.get_num_threads(), **machine_load()}
                if "phases" in labels:
                    rec["seconds_per_phase"] = labels["phases"]
                if "labels_final_kmeans" in labels:
                    rec["acc_final_kmeans"] = round(external_scores(y, labels["labels_final_kmeans"])["acc"], 4)
                print(json.dumps(rec), flush=True)
                with open(args.out, "a") as fh:
                    fh.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
