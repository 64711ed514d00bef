"""What the autoencoder family (AE + k-means, DEC, IDEC, N2D) shares: input scaling, the
autoencoder, its pretraining (end-to-end or greedy layer-wise), an on-disk cache of pretrained
autoencoders, the embedding, and save/load of the network.

The default network is the fully connected d-500-500-2000-e autoencoder of DEC (Xie et al.,
ICML 2016): ReLU everywhere except the embedding and the output, which are linear; inputs
min-max scaled to [0, 1] for images, divided by one scalar so that the mean of ||x||²/d is 1 for
vectors (the DEC paper's normalisation; see ``scaling``). ``architecture="conv"`` uses DEPICT's convolutional autoencoder for
images instead (tanh output, inputs scaled to [-1, 1]).

Pretraining (``pretrain``):

* ``"end-to-end"`` (default, as the Keras re-implementations of DEC and IDEC do): the whole
  autoencoder minimises the mean squared reconstruction error with Adam.
* ``"layerwise"`` (the DEC paper): each encoder layer and its mirrored decoder layer are first
  trained alone as a denoising autoencoder (dropout ``layerwise_dropout`` = 0.2 on their input
  and on their code) to reconstruct the previous layer's clean output, for
  ``layerwise_epochs`` epochs each; then the stack is fine-tuned end to end for
  ``pretrain_epochs``.

Schedule (``schedule``; an explicit ``pretrain_epochs`` or, for DEC/IDEC, ``max_iter`` wins):

* ``"budget"`` (default): pretraining counted in gradient steps, 1,110 at batch 256 (30 epochs of
  the 9,298 USPS images, the budget measured for all four methods on five seeds in BENCHMARKS.md,
  where IDEC comes within 0.01 ACC of its published USPS figure), rounded up to whole epochs; DEC/IDEC
  cluster for at most 3,000 iterations. A first fit of USPS then takes minutes on two CPU cores
  instead of over a quarter of an hour.
* ``"paper"``: the papers' lengths: 200 pretraining epochs (IDEC's released code; N2D: 1,000) and
  at most 20,000 DEC/IDEC iterations.

With ``cache_dir`` (or the ``DEEPCLUST_CACHE`` environment variable) the pretrained weights are
stored under a key made of a fingerprint of the data, the network and pretraining settings and
the seed, so methods with the same autoencoder (for example AE + k-means, DEC, IDEC and N2D in
one benchmark) pretrain it once.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from deepclust import distributed
from deepclust.base import BaseClusterer
from deepclust.device import resolve_device
from deepclust.encoders import ConvAutoencoder, MLPAutoencoder
from deepclust.encoders.cache import load_weights, save_weights, weights_path
from deepclust.errors import DeepclustError
from deepclust.runtime import seed_everything, seeded_generator
from deepclust.training import History, batched, epochs_for_steps, train_epochs

ARCHITECTURES = ("auto", "mlp", "conv")
SCALINGS = ("auto", "minmax", "unit", "standard", "none")
PRETRAIN_MODES = ("end-to-end", "layerwise")
SCHEDULES = ("budget", "paper")
#: pretraining steps of the "budget" schedule: 30 epochs of USPS at batch 256
BUDGET_PRETRAIN_STEPS = 1110


class AutoencoderClusterer(BaseClusterer):
    """Base class: subclasses call :meth:`_pretrained_autoencoder` in ``_fit`` and then cluster
    the embedding. Parameters shared by the family are documented in the subclasses."""

    _ae_params: tuple[str, ...] = ("scaling", "embedding_dim", "hidden_dims", "pretrain", "layerwise_epochs",
                                   "layerwise_dropout", "pretrain_lr", "batch_size")
    #: pretraining epochs of ``schedule="paper"``
    _paper_pretrain_epochs: int = 200

    # ------------------------------------------------------------------ checks and building
    def _check_ae_params(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise DeepclustError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.scaling not in SCALINGS:
            raise DeepclustError(f"scaling must be one of {SCALINGS}, got {self.scaling!r}")
        if self.pretrain not in PRETRAIN_MODES:
            raise DeepclustError(f"pretrain must be one of {PRETRAIN_MODES}, got {self.pretrain!r}")
        check_choice("schedule", self.schedule, SCHEDULES)
        for name in ("pretrain_epochs", "layerwise_epochs"):
            value = getattr(self, name)
            if value is None and name == "pretrain_epochs":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise DeepclustError(f"{name} must be a whole number >= 0, got {value!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, (int, np.integer)) \
                or self.batch_size < 1:
            raise DeepclustError(f"batch_size must be a whole number >= 1, got {self.batch_size!r}")
        if not float(self.pretrain_lr) > 0:
            raise DeepclustError(f"pretrain_lr must be > 0, got {self.pretrain_lr!r}")
        if self.embedding_dim is not None and int(self.embedding_dim) < 1:
            raise DeepclustError(f"embedding_dim must be >= 1, got {self.embedding_dim!r}")

    def _embedding_size(self) -> int:
        return int(self.embedding_dim) if self.embedding_dim is not None else int(self.n_clusters)

    def _resolve_architecture(self, input_shape: tuple[int, ...]) -> str:
        """``"auto"``: the convolutional autoencoder for images, the fully connected one otherwise."""
        if self.architecture != "auto":
            return self.architecture
        return "conv" if len(input_shape) >= 2 else "mlp"

    def _build_autoencoder(self, input_shape: tuple[int, ...]) -> torch.nn.Module:
        e = self._embedding_size()
        if self.architecture_ == "conv":
            if len(input_shape) not in (2, 3):
                raise DeepclustError("architecture='conv' needs images (N×H×W or N×C×H×W); "
                                     f"got samples of shape {input_shape}; use architecture='mlp'")
            shape = (1, *input_shape) if len(input_shape) == 2 else input_shape
            return ConvAutoencoder(shape, e, dropout=0.0)
        return MLPAutoencoder(int(np.prod(input_shape)), e, hidden_dims=tuple(self.hidden_dims), dropout=0.0,
                              activation="relu", embedding_activation=None, output_activation=None)

    # ------------------------------------------------------------------ scaling
    def _resolve_scaling(self, input_shape: tuple[int, ...]) -> str:
        """``"auto"``: ``"minmax"`` for images, ``"unit"`` for vectors."""
        if self.scaling != "auto":
            return self.scaling
        return "minmax" if len(input_shape) >= 2 else "unit"

    def _fit_scaling(self, X: np.ndarray) -> None:
        """Learn ``x' = (x - shift) / scale`` (scalars, or per feature for ``"standard"``):
        ``"minmax"``: all values to [0, 1] (images, as DEC/IDEC/N2D's released code for MNIST);
        ``"unit"``: divided by one scalar so that the mean of ||x||²/d is 1 (the DEC paper);
        ``"standard"``: each feature to mean 0, variance 1 (tables with mixed units); ``"none"``."""
        mode = self.scaling_ = self._resolve_scaling(tuple(X.shape[1:]))
        flat = X.reshape(len(X), -1)
        shift, scale = np.float32(0), np.float32(1)
        if mode == "minmax":
            shift, scale = np.float32(X.min()), np.float32(max(float(X.max() - X.min()), 1e-12))
        elif mode == "unit":
            scale = np.float32(max(float(np.sqrt(np.mean(np.square(flat, dtype=np.float64)))), 1e-12))
        elif mode == "standard":
            shift = flat.mean(0, dtype=np.float64).astype(np.float32)
            scale = np.maximum(flat.std(0, dtype=np.float64), 1e-6).astype(np.float32)
        self.scale_shift_, self.scale_ = np.asarray(shift, dtype=np.float32), np.asarray(scale, dtype=np.float32)

    def _scale(self, X: np.ndarray, dev: torch.device) -> torch.Tensor:
        """``X`` scaled as at fit, as a new tensor (on the CPU, ``from_numpy`` shares the caller's memory)."""
        Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).to(dev)
        shape = Xt.shape
        Xt = Xt.reshape(len(Xt), -1).sub(torch.as_tensor(self.scale_shift_, device=dev)) \
            .div_(torch.as_tensor(self.scale_, device=dev))
        if self.architecture_ == "conv":
            Xt = Xt.reshape(shape)
            if Xt.dim() == 3:
                Xt = Xt.unsqueeze(1)
            return Xt.mul_(2).sub_(1) if self.scaling_ == "minmax" else Xt  # tanh output: [-1, 1]
        return Xt

    # ------------------------------------------------------------------ pretraining
    def _cache_path(self, X: np.ndarray, seed: int) -> Path | None:
        settings = {**{k: getattr(self, k) for k in self._ae_params},
                    "pretrain_epochs": self.schedule_["pretrain_epochs"]}
        identity = {"autoencoder": settings, "seed": seed,
                    "architecture": self.architecture_, "scaling": self.scaling_,
                    "embedding_dim": self._embedding_size()}
        return weights_path(self.cache_dir, identity, X)

    def _pretrained_autoencoder(self, X: np.ndarray, Xt: torch.Tensor, seed: int,
                                gen: torch.Generator) -> torch.nn.Module:
        """Build the autoencoder and pretrain it (or load it from the cache); records timings."""
        dev = Xt.device
        torch.manual_seed(seed)
        ae = self._build_autoencoder(tuple(X.shape[1:])).to(dev)
        t0 = time.perf_counter()
        path = self._cache_path(X, seed)
        if path is not None and distributed.agree(path.is_file()):  # torchrun: rank 0 reads, and sends
            if distributed.is_main():
                load_weights(ae, path, dev)
            distributed.broadcast_tensors(ae.state_dict().values())
            self.history_["pretrain"] = [{"cached": str(path)}]
        else:
            history = History()
            if self.pretrain == "layerwise":
                history.extend(self._layerwise(ae, Xt, gen))
            if not getattr(history, "interrupted", False):
                h = train_epochs(ae.parameters(), self._reconstruction_loss(ae, Xt), self._shard,
                                 epochs=self.schedule_["pretrain_epochs"], batch_size=int(self.batch_size), device=dev,
                                 generator=gen, lr=float(self.pretrain_lr), desc=f"{type(self).__name__} pretrain",
                                 mixed_precision=self.mixed_precision)
                history.extend(h)
                history.interrupted = h.interrupted
            self.history_["pretrain"] = list(history)
            self.interrupted_ = bool(history.interrupted)
            if path is not None and not history.interrupted and distributed.is_main():
                save_weights(ae, path)
        self.timings_["pretrain"] = time.perf_counter() - t0
        return ae

    @staticmethod
    def _reconstruction_loss(ae: torch.nn.Module, Xt: torch.Tensor):
        def loss(idx: torch.Tensor) -> dict[str, torch.Tensor]:
            xb = Xt[idx]
            return {"loss": F.mse_loss(ae(xb, corrupt=False).decoded[0].float(), xb)}
        return loss

    def _layerwise(self, ae: torch.nn.Module, Xt: torch.Tensor, gen: torch.Generator) -> History:
        """Greedy layer-wise denoising pretraining (DEC, section 3.2): layer i and its mirror learn
        to reconstruct the clean output of layers < i from a dropout-corrupted copy."""
        if not isinstance(ae, MLPAutoencoder):
            raise DeepclustError("pretrain='layerwise' is defined for the fully connected autoencoder "
                                 "(architecture='mlp')")
        history = History()
        p, depth = float(self.layerwise_dropout), len(ae.enc)
        h_all = Xt
        for i in range(depth):
            enc, dec = ae.enc[i], ae.dec[depth - 1 - i]
            inner_act = (lambda t: t) if i == depth - 1 else F.relu  # the embedding is linear
            outer_act = (lambda t: t) if i == 0 else F.relu  # so is the reconstruction of the input

            def loss(idx: torch.Tensor, h_all=h_all, enc=enc, dec=dec, inner_act=inner_act,
                     outer_act=outer_act) -> dict[str, torch.Tensor]:
                h = h_all[idx]
                code = inner_act(enc(F.dropout(h, p)))
                return {"loss": F.mse_loss(outer_act(dec(F.dropout(code, p))).float(), h)}

            h = train_epochs([*enc.parameters(), *dec.parameters()], loss, self._shard,
                             epochs=int(self.layerwise_epochs), batch_size=int(self.batch_size), device=Xt.device,
                             generator=gen, lr=float(self.pretrain_lr),
                             desc=f"{type(self).__name__} pretrain layer {i + 1}/{depth}",
                             mixed_precision=self.mixed_precision)
            history.extend({**r, "layer": i + 1} for r in h)
            if h.interrupted:
                history.interrupted = True
                break
            h_all = batched(lambda t, enc=enc, act=inner_act: act(enc(t)), h_all,
                            mixed_precision=self.mixed_precision)
        return history

    # ------------------------------------------------------------------ shared fit helpers
    def _schedule_on(self, device: torch.device | None) -> str:
        """The schedule in force: "budget" is a CPU's compute budget; a GPU, which does tens of times
        the work per second, runs the paper's lengths instead."""
        return "paper" if self.schedule == "budget" and device is not None and device.type == "cuda" else self.schedule

    def _resolve_schedule(self, n_samples: int, device: torch.device | None = None) -> dict[str, int]:
        """The lengths that the fit uses: explicit parameters, else those of ``schedule``."""
        if self.pretrain_epochs is not None:
            epochs = int(self.pretrain_epochs)
        elif self._schedule_on(device) == "paper":
            epochs = self._paper_pretrain_epochs
        else:
            epochs = epochs_for_steps(BUDGET_PRETRAIN_STEPS, n_samples, int(self.batch_size))
        return {"pretrain_epochs": epochs}

    def _start_fit(self, X: np.ndarray) -> tuple[torch.device, int, torch.Generator, torch.Tensor]:
        """Check, scale and pretrain; returns (device, seed, generator, scaled inputs). Under torchrun
        a data-parallel subclass gets this rank's shard of the inputs (``self._shard``)."""
        self._check_ae_params()
        self._check_params()
        dev = resolve_device(self.device)
        seed, gen = seeded_generator(self.random_state)
        self.history_, self.timings_, self.interrupted_ = {}, {}, False
        self.schedule_ = self._resolve_schedule(len(X), dev)
        self.architecture_ = self._resolve_architecture(tuple(X.shape[1:]))
        self._fit_scaling(X)
        self._shard = distributed.shard(len(X)) if self._data_parallel else distributed.Shard(len(X))
        Xt = self._scale(X[self._shard.rows], dev)
        self.autoencoder_ = self._pretrained_autoencoder(X, Xt, seed, gen)
        # what follows draws from a fresh stream, so a cached autoencoder gives the same fit (as DEPICT)
        seed_everything(seed + 1)
        return dev, seed, torch.Generator().manual_seed(seed + 1), Xt

    def pretrained_embedding(self, X: Any) -> np.ndarray:
        """Pretrain the autoencoder on ``X`` (or load it from the cache) and return the embedding of
        ``X``, without clustering: the ``autoencoder`` encoder (N2D's first step)."""
        X = self._validate_input(X)
        self.n_features_in_ = int(np.prod(X.shape[1:]))
        self.input_shape_ = tuple(int(s) for s in X.shape[1:])
        *_, Xt = self._start_fit(X)
        return self._embed_scaled(Xt).float().cpu().numpy()

    def _check_params(self) -> None:
        """Method-specific checks (subclasses)."""

    def _net_device(self) -> torch.device:
        return next(self.autoencoder_.parameters()).device

    def _embed_scaled(self, Xt: torch.Tensor) -> torch.Tensor:
        self.autoencoder_.eval()
        return batched(self.autoencoder_.encode, Xt, mixed_precision=self.mixed_precision)

    def _transform(self, X: np.ndarray) -> np.ndarray:
        """The autoencoder's embedding of ``X``."""
        return self._embed_scaled(self._scale(X, self._net_device())).cpu().numpy()

    # ------------------------------------------------------------------ save / load
    _networks = ("autoencoder_",)

    def _build_networks(self, input_shape: tuple[int, ...]) -> None:
        self.autoencoder_ = self._build_autoencoder(input_shape)


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise DeepclustError(f"{name} must be one of {list(choices)}, got {value!r}")
