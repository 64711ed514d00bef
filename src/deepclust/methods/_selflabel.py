"""What the self-labelling methods (DeepCluster/ClusterFit, SeLa, SCAN) share: input preparation,
seeding, and saving/loading of their networks.

Inputs are embeddings (n × d), e.g. from a pretrained text or image encoder. By default
(``normalize=True``) every row is L2-normalised and scaled to norm √d: such embeddings are compared
by cosine, the learning rates become independent of the encoder's scale, and each coordinate has
unit root-mean-square — the scale that the default initialisation of a linear layer and the
papers' learning rates are made for (their heads read backbone features, not unit vectors; on unit
vectors a linear head at SCAN's lr 1e-4 never reaches the 0.99 confidence of self-labelling). Methods that also accept images (DeepCluster)
standardise pixels with the mean and standard deviation seen at fit.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from deepclust.base import BaseClusterer
from deepclust.device import resolve_device
from deepclust.errors import DeepclustError
from deepclust.runtime import seeded_generator
from deepclust.validation import ArrayLike, as_float_array


#: a cluster holding more than this many times its equal share n/k counts as a giant (collapse)
GIANT_SHARE = 5.0


def collapse(labels: np.ndarray | torch.Tensor, n_clusters: int, *, giant: float = GIANT_SHARE) -> str | None:
    """Label-free collapse check of a hard assignment: None when every one of the ``n_clusters``
    clusters is used and none holds more than ``giant`` × its equal share n/k; otherwise one line
    saying what is wrong (how many clusters are empty, how big the largest is).

    Self-labelling heads can end with a few clusters holding everything (SCAN at k = 150 on
    CLINC150: 28 non-empty, the largest 41 × n/k); this is how the methods notice it."""
    lab = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    k, n = int(n_clusters), int(lab.size)
    counts = np.bincount(lab.ravel(), minlength=k)
    empty = int((counts[:k] == 0).sum()) if n >= k else 0
    share = float(counts.max()) * k / max(n, 1)
    if empty == 0 and share <= giant:
        return None
    return (f"{k - empty} of {k} clusters are non-empty and the largest holds {int(counts.max()):,} of {n:,} "
            f"samples ({share:.1f} × n/k)")


class Settled:
    """A label-free stopping rule for self-labelling heads, used as an ``after_epoch`` hook of
    :func:`deepclust.training.train_epochs`: DEC's and DEPICT's share of hard labels that changed
    since the last epoch, and the growth of the share of confident predictions (above
    ``threshold``), which a head can still gain with its labels fixed. Both go into the epoch's
    record (``changed``, ``confident_share``; the largest over heads when there are several), and
    training stops once both are below ``tol``. ``predict``: the current top probability and hard
    label of every sample, each of shape (…, n) — a fresh pass (``lambda: probs().max(-1)``) or
    :class:`SeenPredictions`."""

    def __init__(self, predict: Callable[[], tuple[torch.Tensor, torch.Tensor]], tol: float, threshold: float):
        self.predict, self.tol, self.threshold = predict, float(tol), float(threshold)
        self.labels, self.share = self._measure()

    def _measure(self) -> tuple[torch.Tensor, torch.Tensor]:
        top, labels = self.predict()
        return labels.clone(), (top > self.threshold).float().mean(-1)

    def __call__(self, epoch: int, record: dict[str, Any]) -> bool:
        labels, share = self._measure()
        changed = float((labels != self.labels).float().mean(-1).max())
        grew = float((share - self.share).max())
        self.labels, self.share = labels, share
        record["changed"], record["confident_share"] = changed, float(share.max())
        return changed < self.tol and grew < self.tol


class SeenPredictions:
    """The top probability and hard label of every sample as the training steps computed them, for
    :class:`Settled` when one epoch's steps see every plain sample once (frozen embeddings, one
    process): the rule then costs no pass over the data of its own. ``probs`` (…, n, k): the
    starting assignment; :meth:`record` stores a batch's logits (…, batch, k) at sample indices ``idx``."""

    def __init__(self, probs: torch.Tensor):
        self.top, self.labels = probs.max(-1)

    @torch.no_grad()
    def record(self, idx: torch.Tensor, logits: torch.Tensor) -> None:
        self.top[..., idx], self.labels[..., idx] = torch.softmax(logits.detach().float(), -1).max(-1)

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.top, self.labels


@contextlib.contextmanager
def eval_mode(*modules: torch.nn.Module) -> Iterator[None]:
    """Put modules in eval mode (batch-norm running statistics) for the duration, then restore."""
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)


class SelfLabelClusterer(BaseClusterer):
    """Base of the self-labelling methods. Subclasses list their networks (``nn.Module`` attributes
    rebuilt by ``_build_networks(input_shape)``) in ``_networks``."""

    _max_input_dims = 2
    _min_samples = 2  # neighbours, batch normalisation
    #: the name users know the method by, for messages
    _display_name: ClassVar[str] = ""

    # ------------------------------------------------------------------ input
    def _validate_input(self, X: ArrayLike) -> np.ndarray:
        X = as_float_array(X, max_dims=max(4, self._max_input_dims))
        if X.ndim > self._max_input_dims:
            raise DeepclustError(
                f"{self._display_name or type(self).__name__} clusters embeddings of shape (n_samples, n_features); "
                f"got an array of shape {X.shape}. Compute embeddings first (a pretrained encoder), "
                "or flatten the samples with X.reshape(len(X), -1)")
        return X

    def _check_common(self, optional: tuple[str, ...] = ()) -> None:
        """Check ``epochs``, ``batch_size`` (None allowed for the names in ``optional``: the method's
        own default) and ``lr``."""
        for name in ("epochs", "batch_size"):
            value = getattr(self, name, 1)
            if value is None and name in optional:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise DeepclustError(f"{name} must be a whole number >= 1, got {value!r}")
        if not float(getattr(self, "lr", 1.0)) > 0:
            raise DeepclustError(f"lr must be > 0, got {self.lr!r}")

    def _warn_if_collapsed(self, labels: np.ndarray, hint: str = "") -> str | None:
        """Warn (RuntimeWarning) when ``labels`` is a collapsed assignment (:func:`collapse`); return
        the finding."""
        found = collapse(labels, int(self.n_clusters))
        if found:
            warnings.warn(f"{self._display_name}: collapsed clustering: {found}{hint}", RuntimeWarning, stacklevel=4)
        return found

    def _seed(self) -> tuple[int, torch.Generator]:
        return seeded_generator(self.random_state)

    def _fit_scaling(self, X: np.ndarray) -> None:
        if X.ndim > 2:  # images: one mean and standard deviation over all pixels
            self.input_mean_ = np.float32(X.mean())
            self.input_std_ = np.float32(max(float(X.std()), 1e-6))

    def _prepare(self, X: np.ndarray, dev: torch.device) -> torch.Tensor:
        """Samples as a float32 tensor on ``dev``: rows L2-normalised (``normalize``) for vectors,
        standardised N×C×H×W for images."""
        Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).to(dev)
        if Xt.dim() == 2:
            if not getattr(self, "normalize", True):
                return Xt
            return F.normalize(Xt, dim=1).mul_(Xt.shape[1] ** 0.5)
        if Xt.dim() == 3:
            Xt = Xt.unsqueeze(1)
        return (Xt - np.asarray(self.input_mean_).item()) / np.asarray(self.input_std_).item()

    def _net_device(self) -> torch.device:
        for attr in self._networks:
            for p in getattr(self, attr).parameters():
                return p.device
        return resolve_device(self.device)

    # ------------------------------------------------------------------ save / load
