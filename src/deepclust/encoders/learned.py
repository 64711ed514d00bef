"""The ``autoencoder`` encoder: an embedding learned from the data it encodes, by reconstruction.

DEC's fully connected d-500-500-2000-10 autoencoder (Xie et al., ICML 2016), pretrained end to end
on the data with the budget schedule of :mod:`deepclust.methods._autoencoder` (1,110 Adam steps at
batch 256), and its 10-D embedding returned. This is N2D's first step (McConville et al., ICPR
2020: "an autoencoder embedding, then a manifold learner, then a clusterer"): on pixels of small
images, where an ImageNet encoder does not apply, it separates classes that pixel distances mix.
Cost: fixed in gradient steps, not in samples (about a minute on two CPU cores, seconds on a GPU).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from deepclust.encoders.base import Encoder
from deepclust.errors import DeepclustError


class AutoencoderEncoder(Encoder):
    """``autoencoder``: trains :class:`~deepclust.methods.ae_kmeans.AEKMeans`'s autoencoder on the data
    (``architecture="mlp"`` unless given) and returns its embedding; settings go to that class."""

    name = "autoencoder"
    modality = "any"

    def __init__(self, random_state: int | None = 0, **params: Any) -> None:
        from deepclust.methods.ae_kmeans import AEKMeans

        params.setdefault("architecture", "mlp")
        try:
            self.model = AEKMeans(random_state=random_state, **params)
        except TypeError as exc:
            raise DeepclustError(f"the autoencoder encoder does not take these settings: {exc}") from exc

    def identity(self) -> dict[str, Any]:
        from deepclust import __version__

        params = {k: v for k, v in self.model.get_params().items()
                  if k not in ("n_clusters", "kmeans_n_init", "device", "cache_dir")}
        return {"name": self.name, "kind": "dec-autoencoder", "params": params, "deepclust": __version__}

    def check_input(self, X: Any, modality: str | None = None) -> str:
        got = super().check_input(X, modality)
        if got == "text":
            raise DeepclustError("the autoencoder encoder reads vectors or images; embed texts with tfidf or minilm")
        return got

    def _encode(self, X: Any, device: torch.device, batch_size: int) -> np.ndarray:
        self.model.device = device
        return self.model.pretrained_embedding(np.asarray(X, dtype=np.float32))

    def estimate_seconds(self, n_samples: int, n_features: int, device: torch.device) -> float:
        """Seconds its pretraining will take here: a few timed Adam steps on random data × the steps of
        its schedule (``deepclust run`` skips it when that would overrun ``--budget``)."""
        import math
        import time

        from deepclust.encoders.autoencoders import MLPAutoencoder

        m = self.model
        epochs = m.pretrain_epochs if m.pretrain_epochs is not None else \
            m._resolve_schedule(n_samples, device)["pretrain_epochs"]
        steps = int(epochs) * math.ceil(n_samples / int(m.batch_size))
        net = MLPAutoencoder(n_features, m._embedding_size(), hidden_dims=tuple(m.hidden_dims)).to(device)
        opt = torch.optim.Adam(net.parameters())
        xb = torch.rand(min(int(m.batch_size), n_samples), n_features, device=device)
        times = []
        for _ in range(4):  # the first step warms up
            t0 = time.perf_counter()
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(xb, corrupt=False).decoded[0], xb).backward()
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t0)
        return steps * min(times[1:])
