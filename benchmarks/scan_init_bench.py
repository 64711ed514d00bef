"""SCAN's start: the paper's random heads against the k-means warm start, on frozen embeddings.

For every set, seed and start, SCAN with every other default (10 heads, the embedding schedule) at the
true k, one torch thread; labels only score. Embeddings through the project's encode path and its cache
(MiniLM for texts, EfficientNet-Lite0 at 112 px or the autoencoder for images). One JSON record per run (table kind
``manyclass``, grouped by set and start):

    PYTHONPATH=src DEEPCLUST_DATA=../shared/data python benchmarks/scan_init_bench.py minilm banking77,clinc150 random,kmeans 0,1,2 benchmarks/results/scan-init.jsonl
    PYTHONPATH=src DEEPCLUST_DATA=../shared/data python benchmarks/scan_init_bench.py efficientnet-lite0 mnist-test random,kmeans 0,1,2 benchmarks/results/scan-init.jsonl
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from deepclust.data import load_dataset  # noqa: E402
from deepclust.encoders import encode_with_info  # noqa: E402
from deepclust.methods._selflabel import collapse  # noqa: E402
from deepclust.methods.scan import SCAN  # noqa: E402
from deepclust.metrics import accuracy, ari, nmi  # noqa: E402
from deepclust.runtime import machine_load, versions  # noqa: E402

#: the images' encoder setting (as in the MCR² and self-labelling image tables)
IMAGE_OPTIONS = {"image_size": 112}


def main(argv: list[str]) -> int:
    encoder, sets, starts, seeds, out = argv[0], argv[1].split(","), argv[2].split(","), argv[3].split(","), argv[4]
    options = IMAGE_OPTIONS if encoder.startswith("efficientnet") else {}
    torch.set_num_threads(1)
    for name in sets:
        ds = load_dataset(name)
        X, info = encode_with_info(ds, encoder, device="cpu", cache=True, random_state=0, **options)
        k = int(ds.meta.n_classes)
        shown = name if encoder == "minilm" else f"{name} ({encoder}{', 112 px' if options else ''})"
        for seed in map(int, seeds):
            for start in starts:
                t0 = time.perf_counter()
                model = SCAN(k, random_state=seed, device="cpu", init=start).fit(X)
                labels = model.labels_
                rec = {"dataset": shown, "method": "scan", "label": f"scan[init={start}]", "params": {"init": start},
                       "encoder": encoder, "encoder_params": options, "seed": seed, "k": k, "n": len(ds),
                       "acc": accuracy(ds.y, labels), "nmi": nmi(ds.y, labels), "ari": ari(ds.y, labels),
                       "n_clusters_found": int(len(set(labels.tolist()))), "collapse": collapse(labels, k),
                       "seconds": {"fit": round(time.perf_counter() - t0, 2)}, "best_head": int(model.best_head_),
                       "device": "cpu", "device_name": "cpu", "threads": 1, **machine_load(), "versions": versions()}
                with open(out, "a") as fh:
                    fh.write(json.dumps(rec) + "\n")
                print(f"{shown} {start} seed {seed}: ACC {rec['acc']:.3f}, {rec['n_clusters_found']} clusters",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
