"""DEPICT: Deep Embedded Regularized Clustering.

Ghasedi Dizaji, Herandi, Deng, Cai, Huang: "Deep Clustering via Joint Convolutional Autoencoder
Embedding and Relative Entropy Minimization", ICCV 2017, arXiv 1704.06327.

A convolutional denoising autoencoder (:class:`~deepclust.encoders.ConvAutoencoder`; a fully
connected one for flat vectors) gives a K-dimensional tanh embedding; a softmax head on it gives
the soft assignments P. Training alternates: the target Q is computed from P of the *clean*
pathway on all data (``target="paper"``: ``q ∝ p / sqrt(Σ_i p)``, the published formula;
``target="dec"``: ``q ∝ p² / Σ_i p``, what the authors' released code uses); then mini-batch
steps minimise cross-entropy between Q and the *corrupted* pathway's softmax plus the layer-wise
reconstruction loss, all layers jointly.

Schedule: inputs min-max scaled to [-1, 1] (the scaling is kept for ``predict``) → autoencoder
pretraining (reconstruction only) → initial partition of the clean embedding (``init``) → softmax
head initialised from the L2-normalised centroids of that partition (it then assigns by cosine,
not by distance, so it disagrees with the partition on some points) → ``warmup_epochs`` on the
hard initial labels → alternate until fewer than ``tol`` of the hard labels change between epochs
(or ``cluster_epochs``). ``history_["cluster"][0]["changed"]`` is the share of labels that moved
away from the initial partition during the warm-up.

Initial partition: ``init="pic"`` (default) is agglomerative clustering by maximum incremental
path integral (AC-PIC, :class:`~deepclust.engines.PathIntegralClustering`), which the authors use
for USPS and MNIST-test; above ``PIC_MAX_SAMPLES`` points it clusters a seeded random subsample of
that size and every point joins the nearest of its centroids. ``init="kmeans"`` (``kmeans_n_init``
restarts, 40 in the paper) is what the released code uses for MNIST-full, where AC-PIC on all
70,000 points is slow. We start from AC-PIC at every size because the start decides the result:
on MNIST-test, from the same pretrained autoencoder (seed 0), k-means gives ACC 0.764 and AC-PIC
0.961 (benchmarks/results/depict-init.jsonl), and on MNIST-full the k-means start ended at 0.84
on a GPU. ``"auto"`` is kept as another name for ``"pic"``. One addition to AC-PIC: DEPICT's prior says the
clusters have comparable sizes, so groups smaller than ``PIC_MIN_SHARE`` (10 %) of the mean
cluster size n/K do not count as clusters (see ``min_cluster_size`` of the engine); plain AC-PIC
sometimes ends with a cluster of two isolated points, which then dies during training and leaves
K − 1 clusters.

The two targets behave differently. ``"paper"`` only rebalances cluster sizes: for balanced
clusters Q ≈ P, so the noisy pathway is taught to match the clean one and, with dropout noise, P
grows softer epoch after epoch while its arg-max barely moves (it mostly keeps the k-means
partition). ``"dec"`` sharpens P and keeps improving the partition slowly.

Differences from the released code, all so that no label is used for anything but scoring: it
holds out a validation split stratified by the *true* labels, stops pretraining on that split's
loss (patience 100, up to 4,000 epochs) and stops the warm-up on NMI against pseudo-labels of
that split. Here pretraining and warm-up run a fixed number of epochs on all data, and the
clustering phase stops on the label-change criterion above. We also scale pixels by their
min/max rather than by 127.5.

Default target: ``"dec"``. Measured on every visible set where both ran (BENCHMARKS.md): USPS
ACC 0.963 against 0.913 for ``"paper"`` (five seeds), MNIST-test 0.954 against 0.877 (four
seeds); the paper's formula stays one parameter away (``target="paper"``).

Schedules (``schedule``), each value overridden by an explicit ``lr``, ``batch_size`` or
``*_epochs``:

* ``"budget"`` (default) counts gradient steps, not epochs: 2,960 pretraining, 111 warm-up and at
  most 1,480 clustering steps (Adam lr 1e-3, batch 256), rounded up to whole epochs. That is the
  80 + 3 + 40 epochs measured on the 9,298 USPS images, which take 6–8 minutes on two CPU cores
  (a compute budget, not a choice made by looking at accuracy); 1,797 8×8 digits get the same
  number of steps (370 + 14 + 185 epochs of 8 batches) instead of 8 steps an epoch, and 70,000
  MNIST images 11 + 1 + 6 epochs on a CPU. On a GPU every phase gets at least those 80 + 3 + 40
  epochs (``GPU_MIN_EPOCHS``), so MNIST-full trains as long as the measured USPS and MNIST-test
  runs did. The target Q is refreshed once an epoch in every schedule.
* ``"paper"``: the published optimiser settings and pretraining length (Adam lr 1e-4, batch 100,
  4,000 pretraining epochs, the released code's cap, without its label-stratified early stop),
  then 3 warm-up and at most 40 clustering epochs. It takes hours on a CPU.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from deepclust import distributed
from deepclust.base import BaseClusterer
from deepclust.device import resolve_device
from deepclust.encoders import ConvAutoencoder, MLPAutoencoder
from deepclust.encoders.cache import load_weights, save_weights, weights_path
from deepclust.engines.kmeans import inner_kmeans
from deepclust.engines.pic import PathIntegralClustering
from deepclust.errors import DeepclustError
from deepclust.heads import SoftmaxHead
from deepclust.losses import layerwise_reconstruction_loss, soft_cross_entropy
from deepclust.runtime import seed_everything, seeded_generator
from deepclust.targets import TARGETS
from deepclust.training import History, batched, epochs_for_steps, mark_interrupted, train_epochs, warn_not_converged

#: AC-PIC clusters at most this many points (a random subsample above; the rest join its centroids)
PIC_MAX_SAMPLES = 20_000
#: AC-PIC groups below this share of the mean cluster size n/K are outliers, not clusters
PIC_MIN_SHARE = 0.1
INITS = ("auto", "pic", "kmeans")
#: the schedules of the module notes: "budget" in gradient steps (80/3/40 epochs of USPS), "paper" in epochs
SCHEDULES: dict[str, dict[str, float]] = {
    "budget": {"lr": 1e-3, "batch_size": 256, "pretrain_steps": 2960, "warmup_steps": 111, "cluster_steps": 1480},
    "paper": {"lr": 1e-4, "batch_size": 100, "pretrain_epochs": 4000, "warmup_epochs": 3, "cluster_epochs": 40},
}
PHASES = ("pretrain", "warmup", "cluster")
#: on a GPU the "budget" schedule gives every phase at least the epochs measured on USPS and MNIST-test
#: (80 + 3 + 40): a GPU does tens of times the work per second, and a step cap would leave 70,000 images
#: 11 pretraining epochs
GPU_MIN_EPOCHS = {"pretrain": 80, "warmup": 3, "cluster": 40}


class DEPICT(BaseClusterer):
    """DEPICT (Ghasedi Dizaji et al., ICCV 2017) with the common estimator API.

    Parameters
    ----------
    n_clusters : number of clusters K (also the embedding size, as in the paper).
    target : ``"dec"`` (q ∝ p²/f, the released code's choice and the better one on every set
        measured; default) or ``"paper"`` (q ∝ p/√f, the published formula).
    prior : cluster-size prior u for the ``"paper"`` target (None: uniform).
    schedule : ``"budget"`` (default: counted in gradient steps) or ``"paper"`` (see the module notes).
    pretrain_epochs, warmup_epochs, cluster_epochs : epochs of each phase (the last is a maximum);
        None: from ``schedule``.
    batch_size, lr : Adam mini-batch size and learning rate, the same in every phase; None: from
        ``schedule``.
    tol : stop clustering when fewer than this share of hard labels change in an epoch.
    recon_weight, hidden_recon_weight : weights of the reconstruction loss and, inside it, of
        each hidden layer (0.1 in the paper).
    dropout : corruption rate of the noisy pathway (0.1 in the paper).
    channels : conv feature maps (50, 50 in the paper); hidden_dims : widths for flat vectors.
    init : initial partition of the pretrained embedding: ``"pic"`` (AC-PIC; above
        ``PIC_MAX_SAMPLES`` points on a random subsample of that size, the rest joining the nearest
        centroid; ``"auto"`` is the same) or ``"kmeans"``.
    kmeans_n_init : k-means restarts when k-means initialises (40 in the paper).
    cache_dir : folder for pretrained autoencoders (None: ``$DEEPCLUST_CACHE`` or no cache); fits
        with the same data, seed and pretraining settings (e.g. both targets) then pretrain once.
    mixed_precision : autocast on CUDA: True or ``"bf16"`` (bfloat16), ``"fp16"`` (float16 with
        gradient scaling), False (float32). Ignored on the CPU.
    random_state : seed of every random draw (None: a fresh one each fit).
    """

    _saved_arrays = ("labels_", "scale_min_", "scale_max_")
    _saved_values = ("history_", "timings_", "n_iter_", "init_used_", "interrupted_", "schedule_", "converged_")
    _networks = ("autoencoder_", "head_")
    _data_parallel = True

    def __init__(self, n_clusters: int = 10, *, target: str = "dec", prior: Sequence[float] | None = None,
                 schedule: str = "budget", pretrain_epochs: int | None = None, warmup_epochs: int | None = None,
                 cluster_epochs: int | None = None, batch_size: int | None = None, lr: float | None = None,
                 tol: float = 0.001, recon_weight: float = 1.0,
                 hidden_recon_weight: float = 0.1, dropout: float = 0.1, channels: Sequence[int] = (50, 50),
                 hidden_dims: Sequence[int] = (500, 500, 2000), init: str = "pic", kmeans_n_init: int = 40,
                 cache_dir: str | None = None, mixed_precision: bool = True, device: Any = "auto",
                 random_state: int | None = 0, verbose: bool = False):
        self.n_clusters = n_clusters
        self.target = target
        self.prior = prior
        self.schedule = schedule
        self.pretrain_epochs = pretrain_epochs
        self.warmup_epochs = warmup_epochs
        self.cluster_epochs = cluster_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.tol = tol
        self.recon_weight = recon_weight
        self.hidden_recon_weight = hidden_recon_weight
        self.dropout = dropout
        self.channels = channels
        self.hidden_dims = hidden_dims
        self.init = init
        self.kmeans_n_init = kmeans_n_init
        self.cache_dir = cache_dir
        self.mixed_precision = mixed_precision
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ building blocks
    def _check_params(self) -> None:
        if self.init not in INITS:
            raise DeepclustError(f"init must be one of {INITS}, got {self.init!r}")
        if self.target not in TARGETS:
            raise DeepclustError(f"target must be one of {sorted(TARGETS)}, got {self.target!r}")
        if self.prior is not None:
            prior = np.asarray(self.prior, dtype=float)
            if prior.shape != (self.n_clusters,) or (prior <= 0).any():
                raise DeepclustError(f"prior must be {self.n_clusters} positive cluster frequencies, "
                                     f"got {self.prior!r}")
        if self.schedule not in SCHEDULES:
            raise DeepclustError(f"schedule must be one of {sorted(SCHEDULES)}, got {self.schedule!r}")
        for name in ("pretrain_epochs", "warmup_epochs", "cluster_epochs"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 0:
                raise DeepclustError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if (self.batch_size is not None and int(self.batch_size) < 1) or \
                (self.lr is not None and not float(self.lr) > 0):
            raise DeepclustError("batch_size must be >= 1 and lr > 0")
        if self.mixed_precision not in (True, False, "bf16", "fp16"):
            raise DeepclustError(f"mixed_precision must be True, False, 'bf16' or 'fp16', got {self.mixed_precision!r}")

    def _resolve_schedule(self, n_samples: int, device: torch.device | None = None) -> dict[str, Any]:
        """lr, batch size and epochs of each phase: the explicit parameters, else ``schedule``'s (on a
        GPU, "budget" gives each phase at least :data:`GPU_MIN_EPOCHS`)."""
        plan = SCHEDULES[self.schedule]
        floor = GPU_MIN_EPOCHS if self.schedule == "budget" and device is not None and device.type == "cuda" else {}
        bs = int(self.batch_size if self.batch_size is not None else plan["batch_size"])
        out: dict[str, Any] = {"lr": float(self.lr if self.lr is not None else plan["lr"]), "batch_size": bs}
        for name in PHASES:
            given = getattr(self, f"{name}_epochs")
            out[f"{name}_epochs"] = int(given if given is not None else plan.get(f"{name}_epochs") or
                                        max(floor.get(name, 0),
                                            epochs_for_steps(int(plan[f"{name}_steps"]), n_samples, bs)))
        return out

    def _build_networks(self, input_shape: tuple[int, ...]) -> None:
        k = int(self.n_clusters)
        if len(input_shape) == 1:
            self.autoencoder_ = MLPAutoencoder(input_shape[0], k, hidden_dims=self.hidden_dims, dropout=self.dropout)
        else:
            shape = (1, *input_shape) if len(input_shape) == 2 else input_shape
            self.autoencoder_ = ConvAutoencoder(shape, k, channels=self.channels, dropout=self.dropout)
        self.head_ = SoftmaxHead(k, k)

    def _scale(self, X: np.ndarray, dev: torch.device) -> torch.Tensor:
        """Inputs to [-1, 1] with the min/max learnt at fit (per feature for vectors, global for images)."""
        Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).to(dev)
        if Xt.dim() == 3:
            Xt = Xt.unsqueeze(1)
        lo = torch.as_tensor(self.scale_min_, device=dev)
        hi = torch.as_tensor(self.scale_max_, device=dev)
        return (Xt - lo).div_((hi - lo).clamp_min(1e-12)).mul_(2).sub_(1)

    def _cache_path(self, X: np.ndarray, seed: int) -> Path | None:
        settings = {**{k: getattr(self, k) for k in ("n_clusters", "hidden_recon_weight", "dropout", "channels",
                                                     "hidden_dims", "mixed_precision")},
                    **{k: self.schedule_[k] for k in ("pretrain_epochs", "batch_size", "lr")}}
        identity = {"depict-autoencoder": settings, "seed": seed, "device": resolve_device(self.device).type}
        return weights_path(self.cache_dir, identity, X)

    def _net_device(self) -> torch.device:
        return next(self.autoencoder_.parameters()).device

    @torch.no_grad()
    def _clean_proba(self, Xt: torch.Tensor) -> torch.Tensor:
        return batched(lambda xb: self.head_.proba(self.autoencoder_.encode(xb)), Xt,
                       mixed_precision=self.mixed_precision)

    # ------------------------------------------------------------------ fit
    def _fit(self, X: np.ndarray) -> None:
        self._check_params()
        dev = resolve_device(self.device)
        seed, gen = seeded_generator(self.random_state)
        n = X.shape[0]
        self.schedule_ = plan = self._resolve_schedule(n, dev)
        if X.ndim == 2:
            self.scale_min_, self.scale_max_ = X.min(0).astype(np.float32), X.max(0).astype(np.float32)
        else:
            self.scale_min_, self.scale_max_ = np.float32(X.min()), np.float32(X.max())
        self._build_networks(tuple(X.shape[1:]))
        ae, head = self.autoencoder_.to(dev), self.head_.to(dev)
        part = distributed.shard(n)  # under torchrun this rank's rows; else all of them
        Xt = self._scale(X[part.rows], dev)
        bs, hw = plan["batch_size"], float(self.hidden_recon_weight)
        common = dict(batch_size=bs, device=dev, generator=gen, lr=plan["lr"],
                      mixed_precision=self.mixed_precision)

        history: dict[str, list] = {}
        timings: dict[str, float] = {}

        def phase(name: str, params: Any, loss_fn: Any, epochs: int, **hooks: Any) -> None:
            t0 = time.perf_counter()
            interrupted = any(getattr(h, "interrupted", False) for h in history.values())
            history[name] = train_epochs(params, loss_fn, part, epochs=0 if interrupted else int(epochs),
                                         desc=f"DEPICT {name}", **common, **hooks)
            timings[name] = time.perf_counter() - t0

        def reconstruction(idx: torch.Tensor) -> dict[str, torch.Tensor]:
            xb = Xt[idx]
            noisy, clean = ae(xb, corrupt=True), ae(xb, corrupt=False, decode=False)
            return {"loss": layerwise_reconstruction_loss(noisy.decoded, clean.encoded, hw)}

        # 1. autoencoder pretraining: corrupted pathway reconstructs every layer of the clean one
        cached = self._cache_path(X, seed)
        if cached is not None and distributed.agree(cached.is_file()):  # torchrun: rank 0 reads, and sends
            if distributed.is_main():
                load_weights(ae, cached, dev)
            distributed.broadcast_tensors(ae.state_dict().values())
            history["pretrain"], timings["pretrain"] = History([{"cached": str(cached)}]), 0.0
        else:
            phase("pretrain", ae.parameters(), reconstruction, plan["pretrain_epochs"])
            if cached is not None and not history["pretrain"].interrupted and distributed.is_main():
                save_weights(ae, cached)
        # later phases draw from a fresh stream, so a cached autoencoder gives the same fit
        seed_everything(seed + 1)
        common["generator"] = torch.Generator().manual_seed(seed + 1)

        # 2. initial partition of the clean embedding of all data (torchrun: gathered, on rank 0); softmax
        # head from its L2-normalised centroids
        t0 = time.perf_counter()
        Z = distributed.gather_rows(batched(ae.encode, Xt, mixed_precision=self.mixed_precision).float(), part)
        self.init_used_ = "pic" if self.init == "auto" else self.init
        centers, start_labels = distributed.from_main(self._initial_partition, Z, seed, dev)
        del Z
        head.init_from_centroids(torch.from_numpy(centers))
        timings["init"] = time.perf_counter() - t0

        optimizer = torch.optim.Adam([*ae.parameters(), *head.parameters()], lr=plan["lr"])
        rw = float(self.recon_weight)
        init_labels = torch.from_numpy(np.asarray(start_labels, dtype=np.int64)[part.rows]).to(dev)
        targets = {"q": torch.nn.functional.one_hot(init_labels, self.n_clusters).float()}

        def joint(idx: torch.Tensor) -> dict[str, torch.Tensor]:
            xb = Xt[idx]
            noisy, clean = ae(xb, corrupt=True), ae(xb, corrupt=False, decode=False)
            cluster = soft_cross_entropy(head(noisy.embedding), targets["q"][idx])
            recon = layerwise_reconstruction_loss(noisy.decoded, clean.encoded, hw)
            return {"loss": cluster + rw * recon, "cluster": cluster, "reconstruction": recon}

        # 3. warm-up: the noisy softmax learns the hard initial labels
        phase("warmup", optimizer, joint, plan["warmup_epochs"])

        # 4. alternate: target Q from the clean P of all data, then an epoch of steps towards it
        target_fn = TARGETS[self.target]
        prior = self.prior if self.target == "paper" else None
        state = {"labels": init_labels, "changed": 1.0, "stopped": False}  # first "changed": moved from the start

        def refresh(epoch: int) -> None:
            P = self._clean_proba(Xt)
            sharded = not part.whole  # the cluster frequencies over every rank's rows
            targets["q"] = target_fn(P, prior, sharded=sharded) if prior is not None else target_fn(P, sharded=sharded)
            labels = P.argmax(1)
            state["changed"] = distributed.global_mean((labels != state["labels"]).sum(), n)
            state["labels"] = labels

        def converged(epoch: int, record: dict[str, float]) -> bool:
            record["changed"] = state["changed"]  # measured before this epoch's steps
            if self.verbose:
                print(f"DEPICT epoch {epoch + 1}: " + ", ".join(f"{k} {v:.4g}" for k, v in record.items()))
            state["stopped"] = epoch > 0 and state["changed"] < float(self.tol)
            return state["stopped"]

        phase("cluster", optimizer, joint, plan["cluster_epochs"], before_epoch=refresh, after_epoch=converged)
        t0 = time.perf_counter()
        self.labels_ = distributed.gather_rows(self._clean_proba(Xt).argmax(1), part).cpu().numpy()
        timings["cluster"] += time.perf_counter() - t0
        self.n_iter_ = len(history["cluster"])
        self.history_ = {name: list(h) for name, h in history.items()}
        self.timings_ = timings
        self.converged_ = bool(state["stopped"])
        mark_interrupted(self, any(h.interrupted for h in history.values()))
        if not self.interrupted_ and not self.converged_:
            warn_not_converged("DEPICT", f"{plan['cluster_epochs']} clustering epochs", state["changed"],
                               float(self.tol), "cluster_epochs")

    def _initial_partition(self, Z: torch.Tensor, seed: int, dev: torch.device) -> tuple[np.ndarray, np.ndarray]:
        """(centroids, labels) of the initial partition of the embedding ``Z`` (``init_used_``)."""
        Z = Z.cpu().numpy()
        n = len(Z)
        if self.init_used_ == "pic":
            # AC-PIC's cost grows faster than n: above PIC_MAX_SAMPLES it clusters a random subsample,
            # and every point joins the nearest of its centroids
            sample = Z if n <= PIC_MAX_SAMPLES else Z[np.random.default_rng(seed).choice(n, PIC_MAX_SAMPLES,
                                                                                         replace=False)]
            min_size = max(1, math.ceil(PIC_MIN_SHARE * len(sample) / self.n_clusters))
            start = PathIntegralClustering(self.n_clusters, min_cluster_size=min_size).fit(sample)
            return start.cluster_centers_, start.labels_ if sample is Z else start.predict(Z)
        start = inner_kmeans(Z, self.n_clusters, n_init=int(self.kmeans_n_init), device=dev, random_state=seed)
        return start.cluster_centers_, start.labels_

    # ------------------------------------------------------------------ inference
    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self._clean_proba(self._scale(X, self._net_device())).cpu().numpy()

    def _transform(self, X: np.ndarray) -> np.ndarray:
        Xt = self._scale(X, self._net_device())
        return batched(self.autoencoder_.encode, Xt, mixed_precision=self.mixed_precision).cpu().numpy()
