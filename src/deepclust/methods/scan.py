"""SCAN: Semantic Clustering by Adopting Nearest neighbours.

Van Gansbeke, Vandenhende, Georgoulis, Proesmans & Van Gool, "SCAN: Learning to Classify Images
without Labels", ECCV 2020, arXiv 2005.12320.

Three steps: (1) a pretext embedding; (2) mine the k = 20 nearest neighbours of every sample by
cosine similarity (:func:`deepclust.engines.neighbors.cosine_knn`) and train clustering heads with
the SCAN loss — ``-log <p_i, p_j>`` for a sample i and a random one of its mined neighbours j,
minus 5 × the entropy of the mean assignment (:func:`deepclust.losses.scan_loss`); ``n_heads`` = 10
heads are trained at once and the one with the lowest total loss over all (sample, neighbour)
pairs is kept, as in the paper (label-free); (3) self-labelling: samples whose prediction exceeds
0.99 become pseudo-labels, and the kept head is trained on them with cross-entropy weighted by
inverse class frequency (:func:`deepclust.losses.confident_self_label_loss`).

Two kinds of input:

- **Embeddings** (n × d; e.g. MiniLM sentence vectors or features of a pretrained image encoder):
  the embedding is the pretext step, the backbone is frozen and only the clustering head — a
  linear softmax layer on the L2-normalised embedding — is trained (the authors'
  ``update_cluster_head_only`` setting). There is nothing to augment, so self-labelling compares
  the embedding with itself: it sharpens and rebalances the head on its own confident predictions.
- **Images** (N×H×W or N×C×H×W): the full method. Step 1 trains a SimCLR backbone on the images
  (:class:`deepclust.encoders.pretext.SimCLR`, settings in ``pretext``); step 2 trains backbone
  and heads together (``update_backbone``, the authors' CIFAR/MNIST setting) on strongly augmented
  anchors and neighbours; step 3 takes the teacher's prediction from the plain image and trains
  on a strongly augmented view (:func:`deepclust.augment.strong_view`: four RandAugment operations
  and Cutout, the authors' "ours" augmentation in both steps).

Large k (the paper goes up to 200 classes on ImageNet subsets; as written, k = 150 on CLINC150
ended with 28 non-empty clusters, one holding 41 × its share). Three label-free changes:

- ``init="kmeans"`` (default): every head starts from the k-means partition of what it reads
  (weights = L2-normalised centroids, as DEPICT initialises its head, plus the head's own random
  initialisation so the heads still differ). From a random start the heads must first leave the
  uniform prediction, which at lr 1e-4, batches of 128 and many clusters they did by collapsing.
  ``"random"`` is the paper's start; ``"auto"`` keeps it while a batch holds at least
  ``BATCH_PER_CLUSTER`` samples per cluster (the test ``entropy_mean="auto"`` makes; on embeddings,
  whose 1,024-sample batches allow up to k = 204), takes the k-means start beyond, and on a frozen
  backbone also after the paper's start when every head collapsed (``start_``, ``restarted_``).
  Measured on 10 embedded sets × 3 seeds (``scan-init.jsonl`` in BENCHMARKS.md) neither start wins
  everywhere: the paper's is ahead on MNIST-test EfficientNet features (0.671 vs 0.617),
  SearchSnippets and BANKING77, the k-means start on the autoencoder embeddings of USPS and MNIST-test
  (0.663 vs 0.569, 0.646 vs 0.490) and on CLINC150; the k-means start is 1.6 points ahead on average
  and stays the default.
- ``entropy_mean``: the entropy term is the entropy of the mean assignment, computed in the paper
  over the batch. With fewer samples per batch than a few per cluster this is a biased estimate
  (at most log |B| for confident predictions) that rewards soft predictions, so nothing becomes
  confident. ``"auto"`` keeps the batch mean while a batch holds at least ``BATCH_PER_CLUSTER`` = 5
  samples per cluster (the paper's CIFAR settings: 6.4–12.8), and otherwise uses a running mean
  over all the data (:func:`deepclust.losses.scan_loss`).
- collapse checks (:func:`deepclust.methods._selflabel.collapse`: an empty cluster, or one above
  5 × n/k): the kept head is the lowest-loss one among the heads that did not collapse;
  self-labelling stops at the first epoch whose assignment collapses and keeps the head of the
  epoch before (at large k, clusters without a confident member get no target and empty out);
  a collapsed final clustering warns.

Hyper-parameters are the paper's (its CIFAR configuration): Adam, lr 1e-4, weight decay 1e-4;
SCAN step 50 epochs of batch 128 (an epoch visits every sample once as an anchor); self-labelling
200 epochs of batch 1000; threshold 0.99, class balancing on. At lr 1e-4 the heads need thousands
of steps to leave the uniform prediction they start from (CIFAR-10: ~20,000); a much shorter run
warns (label-free: the consistency term is still close to log K, or no sample became confident).

Both steps end early once they have settled (``tol`` = 0.001, label-free,
:class:`deepclust.methods._selflabel.Settled`): fewer than 0.1 % of the hard labels changed in the
last epoch, in every head (DEC's and DEPICT's rule), and the share of predictions above the
threshold grew by less than 0.1 % (a head can still sharpen with its labels fixed).

Speed on embeddings (the same epochs, the same loss; three differences from the authors' code,
none of which reads labels or depends on the data set):

- **Batches** (``batch_size``, ``selflabel_batch_size`` left at None) are ``EMBEDDING_BATCH_SCALE`` = 8 ×
  the paper's (1,024 and 8,000) at 8 × its learning rate, the linear scaling rule (Goyal et al.,
  "Accurate, Large Minibatch SGD", 2017): an epoch makes 8 × fewer Adam steps of 8 × the size, so
  the weights can move as far per epoch (Adam's step is about lr; for SGD the ratio of lr to batch,
  which sets the noise of the steps, would be the paper's). With batch 128 the step was bound by per-step overhead
  (≈ 2 ms a step, 8,800 steps on CLINC150); now it is bound by the heads' products. There is no
  augmentation of a frozen embedding, so nothing is lost by seeing more samples per step. On
  images the batches stay the paper's.
- **The stopping rule of the SCAN step reads the predictions the steps made** (an epoch's anchors
  are every plain embedding once; :class:`deepclust.methods._selflabel.SeenPredictions`) instead of
  a pass of its own, which cost a quarter of an epoch. Self-labelling keeps a fresh pass: its
  collapse guard keeps the head as it is at the end of an epoch.
- **bfloat16 products** for the heads' training steps (SCAN step and self-labelling) on a CPU with
  bfloat16 instructions (AVX512-BF16, AMX; :func:`deepclust.training.autocast` with ``cpu=True``), as
  every deep method already trains on CUDA; losses, the head choice, the passes of the stopping and
  collapse rules and predictions stay float32 (self-labelling's epochs in bfloat16: about 2 × faster
  on BANKING77 and CLINC150, the same ACC within 0.002 over five seeds; BENCHMARKS.md, "v4").

Cost: the SCAN step is epochs × 2 (anchor and neighbour) × heads × n·k·d multiply-adds forward and
as many backward; the heads are one product (:class:`deepclust.heads.MultiHead`), so 10 heads cost
10 × one. Mining the neighbours is n²·d (bfloat16 products re-ranked in float32 on a CPU that has them), the
warm start one k-means fit. On BANKING77 and CLINC150
(MiniLM) the labels still move 1–2 % an epoch at epoch 50, so the SCAN step runs its 50 epochs
and only self-labelling ends early; see BENCHMARKS.md ("SCAN's speed") for the time against k-means.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepclust import distributed
from deepclust.augment import strong_view
from deepclust.device import resolve_device
from deepclust.encoders.pretext import SimCLR, as_image_tensor, make_backbone
from deepclust.engines.neighbors import cosine_knn
from deepclust.errors import DeepclustError
from deepclust.heads import MultiHead, SoftmaxHead
from deepclust.losses import confident_self_label_loss, scan_loss
from deepclust.methods._selflabel import SeenPredictions, SelfLabelClusterer, Settled, collapse, eval_mode
from deepclust.targets import kmeans_target
from deepclust.training import autocast, batched, mark_interrupted, train_epochs

INITS = ("auto", "kmeans", "random")
ENTROPY_MEANS = ("auto", "batch", "running")
#: ``entropy_mean="auto"`` keeps the paper's batch mean while a batch holds at least this many samples per
#: cluster (CIFAR-10: 12.8, CIFAR-100-20: 6.4 in the paper), and uses the running mean below
BATCH_PER_CLUSTER = 5
#: the paper's batches (its CIFAR configuration): SCAN step, self-labelling
PAPER_BATCH, PAPER_SELFLABEL_BATCH = 128, 1000
#: on embeddings, the default batches are this many times the paper's, at this many times its learning rate
EMBEDDING_BATCH_SCALE = 8


class SCAN(SelfLabelClusterer):
    """SCAN (Van Gansbeke et al., ECCV 2020) on embeddings, with the common estimator API.

    Parameters
    ----------
    n_clusters : number of clusters K.
    n_neighbors : neighbours mined per sample (20 in the paper).
    n_heads : clustering heads trained at once; the lowest-loss one is kept (10 in the paper).
    entropy_weight : weight of the entropy of the mean assignment (5 in the paper).
    entropy_mean : where the mean assignment is taken: ``"batch"`` (the paper), ``"running"`` (over all
        the data, kept up to date) or ``"auto"`` (batch while it holds >= 5 samples per cluster).
    epochs, batch_size : SCAN step (50 epochs of 128 in the paper; None: 128 on images, 1,024 at 8 × lr on
        embeddings, see the notes above).
    selflabel_epochs, selflabel_batch_size : self-labelling step (200 epochs of 1000; 0 epochs skips it;
        None: 1,000 on images, 8,000 at 8 × lr on embeddings).
    threshold : confidence above which a prediction becomes a pseudo-label (0.99).
    class_balance : weight the self-labelling cross-entropy by inverse class frequency.
    lr, weight_decay : Adam settings of both steps (1e-4, 1e-4), at the paper's batch sizes.
    init : ``"kmeans"`` (heads from the k-means centroids of what they read; default), ``"random"`` (the
        paper), or ``"auto"``: the paper's while a batch holds ``BATCH_PER_CLUSTER`` samples per cluster
        (and on a frozen backbone unless every head collapsed), else k-means.
    tol : end each step at the first epoch in which, in every head, fewer than this share of hard
        labels changed (DEC's and DEPICT's rule) and the share of predictions above ``threshold``
        grew by less than this (0.001; 0 runs every epoch; :class:`~deepclust.methods._selflabel.Settled`).
    knn_backend : ``"auto"`` (torch; faiss for large n on a CPU without bfloat16 instructions, when
        installed; see :func:`~deepclust.engines.neighbors.cosine_knn`), ``"torch"``, ``"faiss"``.
    normalize : L2-normalise the rows of X and scale them to norm √d (see deepclust.methods._selflabel).
    pretext : images only: settings of the SimCLR pretext step (:class:`deepclust.encoders.pretext.SimCLR`,
        e.g. ``{"epochs": 100, "flip": False}``); None: its defaults.
    update_backbone : images only: train the backbone in the SCAN and self-labelling steps (True, as
        the authors do on CIFAR and MNIST) or only the heads.
    strong_ops, cutout : images only: RandAugment operations per view (4) and the Cutout side as a
        fraction of the image (0.5), see :func:`deepclust.augment.strong_view`.

    Attributes: ``labels_``, ``head_losses_`` (total SCAN loss of every head; ``best_head_`` is the
    arg-min), ``backbone_`` (the identity for embeddings), ``head_``, ``history_``, ``timings_``,
    ``schedule_`` (the batch sizes and learning rates the two steps used).
    """

    _networks = ("backbone_", "head_")
    _saved_arrays = ("labels_", "scale_min_", "scale_max_")
    _saved_values = ("history_", "timings_", "head_losses_", "best_head_", "interrupted_", "schedule_")
    _display_name = "SCAN"
    _data_parallel = True
    _max_input_dims = 4

    def __init__(self, n_clusters: int = 10, *, n_neighbors: int = 20, n_heads: int = 10,
                 entropy_weight: float = 5.0, entropy_mean: str = "auto", epochs: int = 50,
                 batch_size: int | None = None, selflabel_epochs: int = 200, selflabel_batch_size: int | None = None,
                 threshold: float = 0.99, class_balance: bool = True,
                 lr: float = 1e-4, weight_decay: float = 1e-4, init: str = "kmeans", tol: float = 0.001,
                 knn_backend: str = "auto", normalize: bool = True,
                 pretext: dict[str, Any] | None = None, update_backbone: bool = True, strong_ops: int = 4,
                 cutout: float = 0.5, device: Any = "auto", random_state: int | None = 0, verbose: bool = False):
        self.n_clusters = n_clusters
        self.n_neighbors = n_neighbors
        self.n_heads = n_heads
        self.entropy_weight = entropy_weight
        self.entropy_mean = entropy_mean
        self.epochs = epochs
        self.batch_size = batch_size
        self.selflabel_epochs = selflabel_epochs
        self.selflabel_batch_size = selflabel_batch_size
        self.threshold = threshold
        self.class_balance = class_balance
        self.lr = lr
        self.weight_decay = weight_decay
        self.init = init
        self.tol = tol
        self.knn_backend = knn_backend
        self.normalize = normalize
        self.pretext = pretext
        self.update_backbone = update_backbone
        self.strong_ops = strong_ops
        self.cutout = cutout
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _check_params(self, n: int) -> None:
        self._check_common(optional=("batch_size",))
        for name in ("n_heads", "selflabel_batch_size"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                raise DeepclustError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if int(self.selflabel_epochs) < 0:
            raise DeepclustError(f"selflabel_epochs must be >= 0, got {self.selflabel_epochs!r}")
        if not 1 <= int(self.n_neighbors) < n:
            raise DeepclustError(f"n_neighbors must be between 1 and n_samples - 1 = {n - 1}, got {self.n_neighbors!r}")
        if not 0.0 < float(self.threshold) < 1.0:
            raise DeepclustError(f"threshold must be between 0 and 1, got {self.threshold!r}")
        if self.entropy_mean not in ENTROPY_MEANS:
            raise DeepclustError(f"entropy_mean must be one of {', '.join(map(repr, ENTROPY_MEANS))}, "
                                 f"got {self.entropy_mean!r}")
        if not 0.0 <= float(self.tol) < 1.0:
            raise DeepclustError(f"tol must be in [0, 1), got {self.tol!r}")
        if self.init not in INITS:
            raise DeepclustError(f"init must be one of {', '.join(map(repr, INITS))}, got {self.init!r}")
        if int(self.strong_ops) < 0 or not 0.0 <= float(self.cutout) < 1.0:
            raise DeepclustError(f"strong_ops must be >= 0 and cutout in [0, 1), got {self.strong_ops!r}, {self.cutout!r}")

    def _schedule(self, images: bool) -> dict[str, float]:
        """Batch sizes and learning rates of the two steps. A batch left at None is the paper's
        (``PAPER_BATCH``, ``PAPER_SELFLABEL_BATCH``) on images and ``EMBEDDING_BATCH_SCALE`` × it on
        embeddings, where that step's learning rate is scaled by the same factor (the linear scaling
        rule: the same epochs move the weights as far in fewer, larger steps); a given batch runs at ``lr``."""
        plan: dict[str, float] = {}
        for key, given, paper in (("", self.batch_size, PAPER_BATCH),
                                  ("selflabel_", self.selflabel_batch_size, PAPER_SELFLABEL_BATCH)):
            scale = 1 if given is not None or images else EMBEDDING_BATCH_SCALE
            plan[f"{key}batch_size"] = int(given) if given is not None else paper * scale
            plan[f"{key}lr"] = float(self.lr) * scale
        return plan

    def _warm_start(self, batch_size: int) -> bool:
        """Whether the heads start from k-means: ``init="kmeans"``, or ``"auto"`` outside the paper's
        regime (the same test as ``entropy_mean="auto"``: under ``BATCH_PER_CLUSTER`` samples per cluster
        in a batch)."""
        if self.init == "auto":
            return int(batch_size) < BATCH_PER_CLUSTER * int(self.n_clusters)
        return self.init == "kmeans"

    def _running_entropy(self, batch_size: int) -> bool:
        """Whether the entropy term uses the running mean assignment over all the data (see
        :func:`deepclust.losses.scan_loss`): ``entropy_mean="running"``, or ``"auto"`` with fewer than
        ``BATCH_PER_CLUSTER`` samples per cluster in a batch."""
        if self.entropy_mean == "auto":
            return int(batch_size) < BATCH_PER_CLUSTER * int(self.n_clusters)
        return self.entropy_mean == "running"

    def _pretext_model(self, device: torch.device | str = "cpu", seed: int | None = 0) -> SimCLR:
        if not isinstance(self.pretext, (dict, type(None))):
            raise DeepclustError(f"pretext must be a dict of SimCLR settings or None, got {self.pretext!r}")
        settings = dict(self.pretext or {})
        try:
            return SimCLR(**{**settings, "device": device, "random_state": seed})
        except TypeError as exc:
            raise DeepclustError(f"pretext does not take these settings: {exc}") from exc

    def _build_networks(self, input_shape: tuple[int, ...]) -> None:
        if len(input_shape) == 1:
            self.backbone_: nn.Module = nn.Identity()
            self.head_ = SoftmaxHead(input_shape[0], int(self.n_clusters))
            return
        pretext = self._pretext_model()
        channels = 1 if len(input_shape) == 2 else input_shape[0]
        self.backbone_ = make_backbone(pretext.backbone, channels, int(pretext.width))
        self.head_ = SoftmaxHead(self.backbone_.out_dim, int(self.n_clusters))

    def _images(self, X: np.ndarray, dev: torch.device) -> torch.Tensor:
        """Images as N×C×H×W in [0, 1] (the min/max seen at fit), resized as the pretext step does."""
        lo, hi = (float(np.asarray(v).ravel()[0]) for v in (self.scale_min_, self.scale_max_))
        x = (torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)) - lo) / max(hi - lo, 1e-12)
        return as_image_tensor(x, dev, self._pretext_model().image_size)

    def _inputs(self, X: np.ndarray, dev: torch.device) -> torch.Tensor:
        return self._images(X, dev) if X.ndim > 2 else self._prepare(X, dev)

    def _fit(self, X: np.ndarray) -> None:
        n = X.shape[0]
        self._check_params(n)
        dev = resolve_device(self.device)
        seed, gen = self._seed()
        images = X.ndim > 2
        self.schedule_ = plan = self._schedule(images)
        batch = int(plan["batch_size"])
        timings: dict[str, float] = {}
        # torchrun: every rank holds all inputs (a step reads a sample's neighbours, which may lie in any
        # shard) and takes the steps' samples from its own rows
        part = distributed.shard(n)

        # 1. the pretext embedding: the given one, or SimCLR trained on the images
        if images:
            if min(X.shape[-2:]) < 4:
                raise DeepclustError(f"SCAN needs images of at least 4×4 pixels, got samples of shape {X.shape[1:]}")
            self.scale_min_, self.scale_max_ = np.float32(X.min()), np.float32(X.max())
            x = self._images(X, dev)
            t0 = time.perf_counter()
            pretext = self._pretext_model(dev, seed).fit(x)
            timings["pretext"] = time.perf_counter() - t0
            backbone = pretext.backbone_
            features = F.normalize(distributed.gather_rows(batched(backbone, x[part.rows]), part), dim=1)
            pretext_history = list(pretext.history_)
        else:
            x = features = self._prepare(X, dev)
            backbone = nn.Identity()
            pretext_history = []
        train_backbone = images and bool(self.update_backbone)
        backbone.train(train_backbone).requires_grad_(train_backbone)
        aug_gen = torch.Generator(device=dev)
        aug_gen.manual_seed(seed)
        flip = self._pretext_model().flip

        def view(xb: torch.Tensor) -> torch.Tensor:
            """The strongly augmented view of images (embeddings are used as they are)."""
            if not images:
                return xb
            return strong_view(xb, aug_gen, n_ops=int(self.strong_ops), cutout=float(self.cutout),
                               flip=flip)

        # 2. neighbours in the pretext embedding
        t0 = time.perf_counter()
        nbrs = distributed.from_main(self._neighbors, features).to(dev)
        timings["knn"] = time.perf_counter() - t0
        del features

        # 3. SCAN loss, all heads at once (summed: the heads are independent given the backbone)
        # "auto" in the paper's regime: its random start, and on a frozen backbone the k-means one after
        # it when every head collapsed (label-free; see the module notes)
        starts = [self._warm_start(batch)]
        if self.init == "auto" and not starts[0] and not train_backbone:
            starts.append(True)
        for warm in starts:
            dim = int(getattr(backbone, "out_dim", x.shape[1]))
            heads = MultiHead(dim, int(self.n_clusters), int(self.n_heads)).to(dev)
            if warm:  # every head from the k-means partition of what it reads
                t0 = time.perf_counter()
                with eval_mode(backbone):
                    z = distributed.gather_rows(batched(backbone, x[part.rows]), part) if images else x
                heads.init_from_centroids(distributed.from_main(lambda: kmeans_target(z, int(self.n_clusters),
                                                                                      seed=seed)[1].cpu()))
                timings["init"] = time.perf_counter() - t0
                del z
            params = [*heads.parameters(), *(backbone.parameters() if train_backbone else [])]
            opt = torch.optim.Adam(params, lr=plan["lr"], weight_decay=float(self.weight_decay))
            m = int(self.n_neighbors)

            def head_probs() -> torch.Tensor:
                """Every head's assignment of the plain inputs, (heads, n, k)."""
                with eval_mode(backbone):
                    return torch.softmax(batched(lambda xb: heads(backbone(xb)).transpose(0, 1), x), -1).transpose(0, 1)

            # on embeddings (one process) an epoch's anchors are every plain sample once: the stopping rule
            # reads the predictions the steps made instead of a pass of its own
            seen_in_steps = not images and part.whole
            stop_rule = float(self.tol) > 0
            start = head_probs() if self._running_entropy(batch) or (stop_rule and seen_in_steps) else None
            # the mean assignment of every head over all the data, kept up to date
            running = start.mean(1) if self._running_entropy(batch) else None
            seen = SeenPredictions(start) if stop_rule and seen_in_steps else None
            settled = (Settled(seen or (lambda: head_probs().max(-1)), float(self.tol), float(self.threshold))
                       if stop_rule else None)
            del start
            momentum = min(1.0, batch / n)  # a memory of about one epoch

            def scan_step(idx: torch.Tensor) -> dict[str, torch.Tensor]:
                nonlocal running
                idx = part.to_global(idx)
                pick = torch.randint(m, (idx.numel(),), generator=gen).to(dev)
                pairs = torch.cat([idx, nbrs[idx, pick]])  # anchors, then one mined neighbour of each
                inputs = torch.cat([view(x[idx]), view(x[pairs[idx.numel():]])]) if images else x[pairs]
                with autocast(dev, True, cpu=not images):  # the heads' products: all of the step's cost on embeddings
                    logits = heads(backbone(inputs))
                if seen is not None:
                    seen.record(idx, logits[:, :idx.numel()])
                if running is not None:
                    batch_mean = torch.softmax(logits[:, :idx.numel()].detach().float(), -1).mean(1)
                    running = running.mul(1 - momentum).add_(batch_mean, alpha=momentum)
                out = scan_loss(logits[:, :idx.numel()], logits[:, idx.numel():], float(self.entropy_weight), running)
                return {"loss": out["loss"].sum(), "consistency": out["consistency"].mean(),
                        "entropy": out["entropy"].mean()}

            def synced(hook: Any) -> Any:
                """torchrun: the backbone's batch-norm statistics averaged over the ranks before ``hook`` reads them."""
                if hook is None or not (train_backbone and distributed.active()):
                    return hook

                def run(epoch: int, record: dict[str, Any]) -> Any:
                    distributed.average_buffers(backbone)
                    return hook(epoch, record)
                return run

            t0 = time.perf_counter()
            scan_hist = train_epochs(opt, scan_step, part, epochs=int(self.epochs), batch_size=batch,
                                     device=dev, generator=gen, desc="SCAN clustering",
                                     after_epoch=synced(settled))
            distributed.average_buffers(backbone)
            timings["scan"] = timings.get("scan", 0.0) + time.perf_counter() - t0  # both starts
            if scan_hist and scan_hist[-1]["consistency"] > 0.9 * math.log(int(self.n_clusters)):
                warnings.warn(f"SCAN: after {len(scan_hist)} epochs the heads still predict almost uniformly "
                              f"(consistency {scan_hist[-1]['consistency']:.2f}, log K = "
                              f"{math.log(int(self.n_clusters)):.2f}); train longer (epochs) — the paper runs "
                              "about 20,000 steps", RuntimeWarning, stacklevel=3)

            # the head with the lowest SCAN loss on all (sample, neighbour) pairs of the plain inputs
            # (entropy weight 1, as in the authors' evaluation)
            with eval_mode(backbone):
                probs = torch.softmax(batched(lambda xb: heads(backbone(xb)).transpose(0, 1), x), -1).transpose(0, 1)
            losses = [float(_scan_total_loss(p, nbrs)) for p in probs]  # probs: (heads, n, k)
            collapsed = [collapse(p.argmax(1), int(self.n_clusters)) for p in probs]
            del probs
            self.head_losses_ = losses
            # lowest loss, among the heads that did not collapse when there are any (label-free)
            self.best_head_ = min(range(len(losses)), key=lambda h: (collapsed[h] is not None, losses[h]))
            self.head_ = head = heads.head(self.best_head_)
            if warm or any(c is None for c in collapsed) or len(starts) == 1:
                break
        self.start_ = "kmeans" if warm else "random"
        self.restarted_ = warm and not starts[0]
        scan_state = copy.deepcopy((head.state_dict(), backbone.state_dict()))

        # 4. self-labelling on confident samples: the teacher sees the plain input, the student a
        # strongly augmented view (for embeddings both are the embedding itself)
        sl_hist: list = []
        if int(self.selflabel_epochs) > 0:
            params = [*head.parameters(), *(backbone.parameters() if train_backbone else [])]
            opt = torch.optim.Adam(params, lr=plan["selflabel_lr"], weight_decay=float(self.weight_decay))

            def selflabel_step(idx: torch.Tensor) -> dict[str, torch.Tensor]:
                xb = x[part.to_global(idx)]
                if images:
                    with torch.no_grad():
                        teacher = head(backbone(xb))
                    logits = head(backbone(view(xb)))
                else:
                    with autocast(dev, True, cpu=True):  # as the SCAN step (and as on CUDA); the loss is float32
                        logits = head(xb)
                    teacher = logits.detach()
                loss, n_conf = confident_self_label_loss(logits, teacher, float(self.threshold),
                                                         bool(self.class_balance))
                return {"loss": loss, "confident": n_conf.float() / idx.numel()}

            kept: dict[str, Any] = {"state": scan_state, "epoch": 0}

            def probs() -> torch.Tensor:
                with eval_mode(backbone):
                    return torch.softmax(batched(lambda xb: head(backbone(xb)), x), 1)

            guard_collapse = collapsed[self.best_head_] is None
            # a fresh pass: the collapse guard keeps the head as it is at the end of an epoch
            settled = Settled(lambda: probs().max(-1), float(self.tol), float(self.threshold))

            def guard(epoch: int, record: dict[str, Any]) -> bool:
                """Stop when self-labelling has settled (:class:`Settled`), or when it collapses the
                clustering (label-free; the head of the last epoch that did not is kept): at large k,
                clusters without a confident member get no target and their members drift to the others."""
                done = settled(epoch, record)
                found = collapse(settled.labels, int(self.n_clusters)) if guard_collapse else None
                if found is None:
                    kept.update(state=copy.deepcopy((head.state_dict(), backbone.state_dict())), epoch=epoch + 1)
                    return done
                kept["found"] = found
                return True

            t0 = time.perf_counter()
            sl_hist = train_epochs(opt, selflabel_step, part, epochs=int(self.selflabel_epochs),
                                   batch_size=int(plan["selflabel_batch_size"]), device=dev, generator=gen,
                                   desc="SCAN self-labelling", after_epoch=synced(guard))
            distributed.average_buffers(backbone)
            timings["selflabel"] = time.perf_counter() - t0
            if "found" in kept:
                warnings.warn(f"SCAN: self-labelling collapsed the clustering at epoch {len(sl_hist)} "
                              f"({kept['found']}); kept the head of epoch {kept['epoch']}", RuntimeWarning,
                              stacklevel=3)
                head.load_state_dict(kept["state"][0])
                backbone.load_state_dict(kept["state"][1])
            if sl_hist and max(r["confident"] for r in sl_hist) == 0:
                warnings.warn(f"SCAN: no prediction reached the self-labelling threshold {self.threshold}, so "
                              "self-labelling had no sample to learn from: the clusters are those of the SCAN "
                              "step alone, without the refinement self-labelling usually adds. The heads are not "
                              "confident (a short SCAN step, or groups that overlap); a lower threshold (e.g. "
                              "--param threshold=0.9) or more SCAN epochs lets it work", RuntimeWarning,
                              stacklevel=3)
        self.backbone_ = backbone.eval().requires_grad_(True)
        head.eval()
        self.labels_ = batched(lambda xb: head(backbone(xb)), x).argmax(1).cpu().numpy()
        self._warn_if_collapsed(self.labels_)
        self.history_ = {"pretext": pretext_history, "scan": list(scan_hist), "selflabel": list(sl_hist)}
        self.timings_ = timings
        mark_interrupted(self, scan_hist.interrupted or getattr(sl_hist, "interrupted", False))
        if self.verbose:
            print(f"SCAN: head losses {np.round(losses, 4).tolist()}, kept head {self.best_head_}")

    def _neighbors(self, features: torch.Tensor) -> torch.Tensor:
        """The ``n_neighbors`` nearest neighbours (cosine) of every row, on the CPU."""
        return cosine_knn(features, int(self.n_neighbors), backend=self.knn_backend).cpu()

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        x = self._inputs(X, self._net_device())
        return torch.softmax(batched(lambda xb: self.head_(self.backbone_(xb)), x), 1).cpu().numpy()

    def _transform(self, X: np.ndarray) -> np.ndarray:
        """The embedding the head reads: the (normalised) input embedding, which SCAN keeps frozen, or
        for images the backbone's features."""
        if X.ndim == 2:
            return self._prepare(X, torch.device("cpu")).numpy()
        return batched(self.backbone_, self._images(X, self._net_device())).cpu().numpy()


@torch.no_grad()
def _scan_total_loss(p: torch.Tensor, nbrs: torch.Tensor, block: int = 1 << 22) -> torch.Tensor:
    """``-mean log <p_i, p_j>`` over every (sample, neighbour) pair minus the entropy of the mean
    assignment: the authors' label-free criterion for choosing a head. The neighbours' assignments are
    gathered ``block`` elements (16 MiB) at a time: memory stays bounded at any n · k, and on the CPU the
    blocks stay in cache (2.6 × faster than 65,536 rows at a time on CLINC150's n × 20 × 150)."""
    rows = max(1, block // (nbrs.shape[1] * p.shape[1]))
    total = torch.zeros((), dtype=torch.float64, device=p.device)
    for start in range(0, p.shape[0], rows):
        sim = torch.einsum("nk,nmk->nm", p[start:start + rows], p[nbrs[start:start + rows]])
        total += torch.log(sim.clamp_min(1e-7)).sum(dtype=torch.float64)
    mean = p.mean(0)
    return -total / nbrs.numel() + (mean * torch.log(mean.clamp_min(1e-8))).sum()
