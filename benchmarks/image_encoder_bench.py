"""EfficientNet-Lite0 features vs raw pixels on Fashion-MNIST (or MNIST): k-means over seeds, embedding time.

    python benchmarks/image_encoder_bench.py --split test --image-size 112 --seeds 0,1,2,3,4 \
        --out benchmarks/results/fashion-efficientnet-kmeans.jsonl

Features are computed once through deepclust.encoders.encode_with_info (and cached); each seed
runs deepclust's KMeans on the features and on the raw pixels. Labels are used only to score.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from deepclust.data import load_dataset
from deepclust.device import resolve_device
from deepclust.encoders import encode_with_info
from deepclust.engines.kmeans import KMeans
from deepclust.metrics import external_scores
from deepclust.runtime import describe_device, machine_load, peak_memory_mb, versions


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", choices=["fashion-mnist", "mnist"], default="fashion-mnist")
    ap.add_argument("--split", choices=["test", "all"], default="test", help="test: the 10,000 test images")
    ap.add_argument("--limit", type=int, default=None, help="first N images of the split only")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--encoder", default="efficientnet-lite0")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    ds = load_dataset(args.dataset)
    X, y = (ds.X[60000:], ds.y[60000:]) if args.split == "test" else (ds.X, ds.y)
    if args.limit:
        X, y = X[:args.limit], y[:args.limit]
    dev = resolve_device(args.device)
    t0 = time.perf_counter()
    Z, info = encode_with_info(X, args.encoder, device=dev, batch_size=args.batch_size, image_size=args.image_size)
    embed_s = time.perf_counter() - t0
    print(f"{args.encoder} @{args.image_size}px: {len(X)} images in {embed_s:.1f}s "
          f"({len(X) / embed_s:.1f} img/s, cached={info['cached']}) on {describe_device(dev)}", flush=True)
    title = {"fashion-mnist": "Fashion-MNIST", "mnist": "MNIST"}[args.dataset]
    protocol = f"{title} {'test (10,000)' if args.split == 'test' else 'full (70,000)'}" + (
        f", first {args.limit}" if args.limit else "")
    with open(args.out, "a") as fh:
        for name, F in ((f"{args.encoder}@{args.image_size}", Z), ("raw", X.reshape(len(X), -1))):
            for seed in [int(s) for s in args.seeds.split(",")]:
                t = time.perf_counter()
                labels = KMeans(n_clusters=10, random_state=seed, device=str(dev)).fit(F).labels_
                fit_s = time.perf_counter() - t
                s = external_scores(y, labels)
                rec = {"method": "kmeans", "label": "kmeans", "dataset": args.dataset, "protocol": protocol,
                       "encoder": name, "seed": seed, "n": len(X), "k": 10, **{k: s[k] for k in ("acc", "nmi", "ari", "ami")},
                       "seconds": {"fit": round(fit_s, 3), "features": round(embed_s, 2) if name != "raw" else 0.0},
                       "encoder_info": info if name != "raw" else {"name": "raw"}, "device": str(dev),
                       "images_per_s": round(len(X) / embed_s, 1) if name != "raw" else None, **machine_load(),
                       "peak_memory_mb": round(peak_memory_mb(dev), 1),
                       "device_name": describe_device(dev), "versions": versions(),
                       "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S")}
                fh.write(json.dumps(rec, default=str) + "\n")
                print(f"{name} seed {seed}: acc {s['acc']:.4f} nmi {s['nmi']:.4f} ari {s['ari']:.4f}", flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)  # the shared 2-core machine: one thread ran faster than two under load
    main()
