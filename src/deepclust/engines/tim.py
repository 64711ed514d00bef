"""TIM: transductive information maximisation with a few labelled points.

Boudiaf, Masud, Rony, Granger, Pedersoli, Piantanida & Ben Ayed, "Transductive Information
Maximization For Few-Shot Learning", NeurIPS 2020, arXiv 2008.11297 (TIM-GD, the gradient version).

A classifier with one weight vector ``w_c`` per class on the L2-normalised features (the authors'
"L2N"), logits ``τ (xᵀw_c − ½|w_c|² − ½|x|²) = −τ/2 |x − w_c|²`` (their ``l2`` classifier), is fitted
to all samples at once by minimising

    λ · CE(labelled samples)  −  ( α · H(Ŷ) − β · H(Ŷ | X) )   over the unlabelled samples,

the cross-entropy of the few labels minus a weighted mutual information between the unlabelled
samples and their predictions: the marginal entropy ``H(Ŷ)`` keeps the classes in use (no
collapse into a few), the conditional entropy ``H(Ŷ|X)`` makes each prediction confident, so the
boundaries move into the low-density gaps between the unlabelled samples. The weights start at the
labelled samples' class means (further clusters k-means++ style) and take ``n_iter`` full-batch Adam
steps on the device. Settings are the authors' (``src/tim.py`` and their evaluation scripts):
τ = 15, (λ, α, β) = (0.1, 1, 0.1), Adam with lr 1e-4, 1,000 steps. Where we differ: the labelled
samples keep their class in ``labels_`` (as in the other semi-supervised methods here); classes
without a label get clusters started k-means++ style (the paper's tasks label every class).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from deepclust.device import resolve_device
from deepclust.engines.constrained import seeded_start
from deepclust.engines.kmeans import _torch_generator
from deepclust.errors import DeepclustError
from deepclust.supervision import SemiSupervisedClusterer
from deepclust.validation import check_number

__all__ = ["TransductiveInfoMax"]


class TransductiveInfoMax(SemiSupervisedClusterer):
    """TIM-GD (Boudiaf et al., NeurIPS 2020): a few labels, and the mutual information between the
    unlabelled samples and their predictions maximised by gradient descent; see the module notes.

    ``fit(X, y)`` with ``y[i]`` a class id, ``-1`` for unlabelled samples (with no labels it is
    information-maximising clustering from a k-means++ start). Cluster ``j`` is class ``classes_[j]``
    for ``j < len(classes_)``.

    Parameters: ``temperature`` (τ), ``ce_weight`` (λ), ``marginal_weight`` (α), ``conditional_weight``
    (β), ``n_iter``, ``lr``.

    Attributes: ``cluster_centers_`` (the class weights, in the L2-normalised space), ``labels_``,
    ``classes_``, ``loss_`` (the final objective), ``mutual_information_`` (H(Ŷ) − H(Ŷ|X) of the
    unlabelled samples, nats). ``predict`` / ``predict_proba`` apply the classifier to new samples.
    """

    _takes = ("labels",)
    _saved_arrays = ("cluster_centers_", "labels_", "classes_")
    _saved_values = ("loss_", "mutual_information_", "n_labelled_", "n_must_link_", "n_cannot_link_")
    _min_samples = 2

    def __init__(self, n_clusters: int = 8, *, temperature: float = 15.0, ce_weight: float = 0.1,
                 marginal_weight: float = 1.0, conditional_weight: float = 0.1, n_iter: int = 1000,
                 lr: float = 1e-4, device: Any = "auto", random_state: Any = 0):
        self.n_clusters = n_clusters
        self.temperature = temperature
        self.ce_weight = ce_weight
        self.marginal_weight = marginal_weight
        self.conditional_weight = conditional_weight
        self.n_iter = n_iter
        self.lr = lr
        self.device = device
        self.random_state = random_state

    def _check(self) -> None:
        for name in ("temperature", "lr", "ce_weight", "marginal_weight", "conditional_weight"):
            check_number(getattr(self, name), name, positive=name in ("temperature", "lr"))
        v = self.n_iter
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise DeepclustError(f"n_iter must be a whole number >= 0, got {v!r}")

    def _logits(self, Z: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        """τ (zᵀw − ½|w|² − ½|z|²): the authors' ``l2`` classifier."""
        return float(self.temperature) * (Z @ W.T - 0.5 * (W * W).sum(1) - 0.5 * (Z * Z).sum(1, keepdim=True))

    def _fit(self, X: np.ndarray) -> None:
        self._check()
        k = int(self.n_clusters)
        dev = resolve_device(self.device)
        Z = F.normalize(torch.as_tensor(X.reshape(len(X), -1), dtype=torch.float32, device=dev), dim=1)
        gen = _torch_generator(int(np.random.default_rng(self.random_state).integers(2**62)), dev)
        self.classes_, fixed, fixed_labels, W = seeded_start(Z, self._supervision.y, k, gen)
        free = torch.ones(len(Z), dtype=torch.bool, device=dev)
        free[fixed] = False
        W = W.clone().requires_grad_(True)
        opt = torch.optim.Adam([W], lr=float(self.lr))
        for _ in range(int(self.n_iter)):
            loss, _ = self._objective(Z, W, fixed, fixed_labels, free)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            loss, mi = self._objective(Z, W, fixed, fixed_labels, free)
            labels = self._logits(Z, W).argmax(1)
            labels[fixed] = fixed_labels
        self.cluster_centers_ = W.detach().cpu().numpy()
        self.labels_ = labels.cpu().numpy().astype(np.int64)
        self.loss_ = float(loss)
        self.mutual_information_ = float(mi)

    def _objective(self, Z: torch.Tensor, W: torch.Tensor, fixed: torch.Tensor, fixed_labels: torch.Tensor,
                   free: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(λ·CE − (α·H(Ŷ) − β·H(Ŷ|X)), H(Ŷ) − H(Ŷ|X)) at the weights ``W``."""
        lam, alpha, beta = float(self.ce_weight), float(self.marginal_weight), float(self.conditional_weight)
        logits = self._logits(Z, W)
        ce = F.cross_entropy(logits[fixed], fixed_labels) if len(fixed) else logits.new_zeros(())
        p = torch.softmax(logits[free], 1) if bool(free.any()) else torch.full_like(logits[:1], 1.0 / W.shape[0])
        conditional = -(p * torch.log(p + 1e-12)).sum(1).mean()
        marginal = p.mean(0)
        entropy = -(marginal * torch.log(marginal + 1e-12)).sum()
        return lam * ce - (alpha * entropy - beta * conditional), (entropy - conditional).detach()

    @torch.no_grad()
    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        Z = F.normalize(torch.as_tensor(X.reshape(len(X), -1), dtype=torch.float32), dim=1)
        return torch.softmax(self._logits(Z, torch.as_tensor(self.cluster_centers_)), 1).numpy()

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return self._predict_proba(X).argmax(1).astype(np.int64)
