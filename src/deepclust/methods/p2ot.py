"""P²OT and SP²OT: deep imbalanced clustering by progressive partial optimal transport.

Zhang, Ren & He, "P²OT: Progressive Partial Optimal Transport for Deep Imbalanced Clustering",
ICLR 2024, arXiv 2401.09266; and "SP²OT: Semantic-Regularized Progressive Partial Optimal
Transport for Imbalanced Clustering", arXiv 2404.03446.

SeLa's equal-size transport splits big clusters to feed small ones. P²OT keeps SeLa's loop (pseudo-
labels from a transport problem, a head trained on them by cross-entropy) but changes the problem
(:func:`deepclust.targets.p2ot_target`): only a fraction ρ of the mass is transported, so the least
confident samples carry no label at first, and the cluster sizes are tied to the prior by a KL
penalty instead of an equality, so they can follow the data. ρ grows from 0.1 to 1 along a sigmoid
ramp. The soft plan is the target: each sample's row sums to the mass it carries, its weight in the
loss. SP²OT adds a k-NN regulariser that pulls neighbours into the same cluster
(:func:`deepclust.targets.sp2ot_target`, majorization-minimization), its weight decaying as (1 − ρ).

Defaults as the authors' code: ε 0.1, KL weight 1, ρ from 0.1 to 1 (sigmoid ramp), Adam at lr
5e-4 without weight decay, batch 512, 50 epochs; SP²OT's regulariser weight 0.5 and 10 MM steps.

Where we differ, and why:

* Frozen embeddings, not a fine-tuned ViT: the network is a head (linear, or an MLP with
  ``hidden_dims``) on the fixed embedding, as our SeLa; the second augmented view of each image is
  replaced, as in SeLa here, by a random one of the sample's 20 nearest neighbours.
* The transport is solved on the whole data set at every label update (``n_label_updates``,
  default every epoch), not per mini-batch on a queue of the last 10 × 512 logits: with a fixed
  embedding the whole data set is cheap to score, and the plan then sees every sample at once.
  ρ follows the ramp over epochs instead of iterations.
* A linear softmax head in place of the authors' cosine-prototype head, and the last network
  rather than the epoch with the lowest training loss (a label-free choice either way; we keep the
  simpler one).
* The start, label-free (``init="kmeans"``, ``prior="kmeans"``, the defaults): the head from the
  k-means centroids of what it reads (as SeLa and SCAN here, and DEPICT), and the prior of the KL
  term from the cluster proportions of a k-means partition of X as given (each count plus one).
  The paper starts from a random head and a uniform prior (``init="random", prior=None``). Why:
  with ε = 0.1 and KL weight 1 the column scaling is raised to the power 1/1.1, so the found sizes
  stay close to the prior, and a uniform one makes the head classes split to feed the tail. On the
  long-tailed benchmarks (BENCHMARKS.md, 8 sets, 3 seeds) the k-means start raised ACC on every set
  at R = 100 (mean 0.426 → 0.476, +1.7 to +12.1 points) and on 6 of 8 at R = 10 (mean 0.515 → 0.548;
  pendigits −3.2 and optdigits −0.9 points, within the seeds' spread); it lowers tail accuracy (mean
  0.21 → 0.16 at R = 100, 0.42 → 0.30 at R = 10): the head classes are no longer split, the tail is
  merged more often. ``init="random", prior=None`` gives the paper's start back. k-means runs on
  the rows as given rather than on the L2-normalised rows the head reads, because the normalisation
  drops the norm that separates some groups (from the normalised rows the z-scored tables gave ACC
  0.593 and 0.539 at R = 100, against 0.661 and 0.633). The prior is an estimate, not a constraint:
  the KL term still lets the sizes move.
* SP²OT's regulariser is scaled so that its weight does not depend on n (see
  :func:`~deepclust.targets.sp2ot_target`); its graph is the same 20-NN cosine graph that supplies
  the views, unweighted, where the authors threshold a kernel on the batch.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from deepclust.engines.neighbors import cosine_knn
from deepclust.errors import DeepclustError
from deepclust.losses import soft_cross_entropy
from deepclust.methods.sela import SeLa
from deepclust.targets import knn_graph, p2ot_target, sigmoid_rampup, sp2ot_target


class P2OT(SeLa):
    """P²OT (Zhang, Ren & He, ICLR 2024) on embeddings, with the common estimator API.

    Parameters
    ----------
    n_clusters : number of clusters K.
    prior : cluster proportions in the KL term: ``"kmeans"`` (default: those of a k-means partition of X),
        None (uniform, as the paper) or K positive numbers.
    rho_start, rho_end : transported fraction at the first and the last epoch (sigmoid ramp between).
    eps, kl_weight : entropic regularisation ε and weight of the KL relaxation of the cluster sizes.
    ot_iters, ot_tol : scaling iterations at most, and the relative change of the scaling that stops them.
    semantic_weight, mm_iters : SP²OT's k-NN regulariser weight (0: plain P²OT) and its MM steps.
    epochs, n_label_updates, batch_size, lr, weight_decay : training (Adam).
    hidden_dims, normalize, augment, n_neighbors, device, random_state, verbose : as :class:`SeLa`.
    init : "kmeans" (default: the head from k-means centroids, SeLa's warm start) or "random" (the paper).

    SP²OT is this class with ``semantic_weight`` > 0 (the catalogue's ``sp2ot`` sets 0.5).

    Attributes: ``labels_`` (arg-max of the final head), ``pseudo_labels_`` (arg-max of the last
    plan), ``sample_weights_`` (mass each sample carried in the last plan), ``prior_`` (the proportions
    used), ``history_``, ``timings_``.
    """

    _saved_arrays = ("labels_", "pseudo_labels_", "sample_weights_", "prior_")
    _display_name = "P2OT"
    _data_parallel = False  # its transport plan is not reduced over shards: it runs on one process

    def __init__(self, n_clusters: int = 10, *, prior: Sequence[float] | str | None = "kmeans", rho_start: float = 0.1,
                 rho_end: float = 1.0, eps: float = 0.1, kl_weight: float = 1.0, ot_iters: int = 1000,
                 ot_tol: float = 1e-6, semantic_weight: float = 0.0, mm_iters: int = 10, epochs: int = 50,
                 n_label_updates: int = 50, batch_size: int = 512, lr: float = 5e-4, weight_decay: float = 0.0,
                 hidden_dims: Sequence[int] = (), normalize: bool = True, augment: str | None = "neighbors",
                 n_neighbors: int = 20, init: str = "kmeans", device: Any = "auto", random_state: int | None = 0,
                 verbose: bool = False):
        self.n_clusters = n_clusters
        self.prior = prior
        self.rho_start = rho_start
        self.rho_end = rho_end
        self.eps = eps
        self.kl_weight = kl_weight
        self.ot_iters = ot_iters
        self.ot_tol = ot_tol
        self.semantic_weight = semantic_weight
        self.mm_iters = mm_iters
        self.epochs = epochs
        self.n_label_updates = n_label_updates
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.hidden_dims = hidden_dims
        self.normalize = normalize
        self.augment = augment
        self.n_neighbors = n_neighbors
        self.init = init
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _check_params(self) -> None:
        self._check_labelling()
        if not 0 < float(self.rho_start) <= float(self.rho_end) <= 1:
            raise DeepclustError(f"need 0 < rho_start <= rho_end <= 1, got rho_start={self.rho_start!r}, "
                                 f"rho_end={self.rho_end!r}")
        for name in ("eps", "kl_weight", "ot_tol"):
            if not float(getattr(self, name)) > 0:
                raise DeepclustError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not float(self.semantic_weight) >= 0:
            raise DeepclustError(f"semantic_weight must be >= 0, got {self.semantic_weight!r}")

    def rho_at(self, epoch: int) -> float:
        """Transported fraction ρ at ``epoch`` (0-based): the sigmoid ramp from ``rho_start`` to ``rho_end``."""
        t = epoch / max(int(self.epochs) - 1, 1)
        return float(self.rho_start) + sigmoid_rampup(t) * (float(self.rho_end) - float(self.rho_start))

    def _make_optimizer(self, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=float(self.lr), weight_decay=float(self.weight_decay))

    def _make_targets(self, logits: torch.Tensor, epoch: int, epochs: int, state: dict[str, Any]) -> torch.Tensor:
        rho = self.rho_at(epoch)
        ot = dict(eps=float(self.eps), kl_weight=float(self.kl_weight), n_iters=int(self.ot_iters),
                  tol=float(self.ot_tol))
        if float(self.semantic_weight) == 0:
            q = p2ot_target(logits, rho, self.prior_, **ot)
        else:
            if "graph" not in state:
                views = state.get("views")
                if views is None:
                    views = cosine_knn(state["X"], min(int(self.n_neighbors), len(logits) - 1))
                state["graph"] = knn_graph(views)
            q = sp2ot_target(logits, rho, state["graph"], self.prior_, weight=float(self.semantic_weight) * (1 - rho),
                             mm_iters=int(self.mm_iters), **ot)
        self.sample_weights_ = q.sum(1).cpu().numpy()
        return q.float()

    def _target_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return soft_cross_entropy(logits, targets)
