"""Self-supervised pretext: SimCLR-style instance contrast on the user's own images.

SimCLR (Chen, Kornblith, Norouzi & Hinton, ICML 2020): two random augmentations of each image
go through a backbone and a small projection MLP; the NT-Xent loss
(:func:`deepclust.losses.nt_xent`) makes each view pick out its partner among the batch. The
backbone's pooled features are the embedding (the projection is dropped, as in the paper and
in SCAN's first step, Van Gansbeke et al., ECCV 2020), L2-normalised.

Augmentations are :func:`deepclust.augment.standard_view`, batched on the device with a fresh draw
per sample: random resized crop (scale 0.35–1, aspect 3/4–4/3) with a small rotation (±10°) in one
affine warp, horizontal flip (``flip=False`` for digits or text-like images), brightness and
contrast jitter, and for colour images a random grayscale. Training uses the shared loop,
:func:`deepclust.training.train_epochs` (Adam; bf16 autocast on CUDA).

Backbones: ``conv`` (default; five 3×3 conv–BN–ReLU layers, widths w, w, 2w, 2w, 4w with two
2×2 max-pools, global average pool → 4w-d, w = ``width``), small enough for the CPU on
28×28 images, or ``resnet18`` from timm with no pretrained weights (the ImageNet stem).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepclust import distributed
from deepclust.augment import standard_view
from deepclust.encoders.base import Encoder, missing_extra
from deepclust.errors import DeepclustError
from deepclust.losses import nt_xent
from deepclust.runtime import seed_everything
from deepclust.training import batched, train_epochs


class ConvBackbone(nn.Module):
    """Five conv–BN–ReLU layers with two max-pools and global average pooling."""

    def __init__(self, in_channels: int = 1, width: int = 32) -> None:
        super().__init__()
        w = width

        def block(i: int, o: int) -> list[nn.Module]:
            return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(*block(in_channels, w), *block(w, w), nn.MaxPool2d(2),
                                      *block(w, 2 * w), *block(2 * w, 2 * w), nn.MaxPool2d(2),
                                      *block(2 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_dim = 4 * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def make_backbone(name: str, in_channels: int, width: int) -> nn.Module:
    if name == "conv":
        return ConvBackbone(in_channels, width)
    if name == "resnet18":
        try:
            import timm
        except ImportError as exc:
            raise missing_extra("pretext (resnet18 backbone)", "timm", "images") from exc
        net = timm.create_model("resnet18", pretrained=False, num_classes=0, in_chans=in_channels)
        net.out_dim = net.num_features
        return net
    raise DeepclustError(f"unknown pretext backbone {name!r}: use 'conv' or 'resnet18'")


def as_image_tensor(X: Any, device: torch.device, image_size: int | None) -> torch.Tensor:
    """N×C×H×W float32 in [0, 1] on ``device``; larger images shrunk to ``image_size``."""
    t = X if isinstance(X, torch.Tensor) else torch.from_numpy(np.array(X))
    if t.ndim == 3:
        t = t.unsqueeze(1)
    if t.ndim != 4:
        raise DeepclustError(f"the pretext encoder needs images (N×H×W or N×C×H×W), got shape {tuple(t.shape)}")
    t = (t.float() / 255.0) if t.dtype == torch.uint8 else t.float()
    t = t.to(device)
    if image_size and max(t.shape[-2:]) > image_size:
        t = F.interpolate(t, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    return t.contiguous()


class SimCLR:
    """Learn an image embedding by instance contrast; ``fit(X)`` then ``transform(X)``.

    Hyper-parameters follow SimCLR where they fit small data on one device: NT-Xent with
    τ = 0.5 (the paper's CIFAR-10 setting), a 2-layer projection MLP to 128 dimensions, batch
    256, Adam 1e-3 (instead of LARS, which pays off only for very large batches).
    """

    def __init__(self, epochs: int = 50, batch_size: int = 256, lr: float = 1e-3, temperature: float = 0.5,
                 backbone: str = "conv", width: int = 32, proj_dim: int = 128, image_size: int | None = 64,
                 flip: bool = True, normalize: bool = True, device: str | torch.device = "auto",
                 random_state: int | None = 0, mixed_precision: bool = True) -> None:
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.temperature = temperature
        self.backbone = backbone
        self.width = width
        self.proj_dim = proj_dim
        self.image_size = image_size
        self.flip = flip
        self.normalize = normalize
        self.device = device
        self.random_state = random_state
        self.mixed_precision = mixed_precision

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("epochs", "batch_size", "lr", "temperature", "backbone", "width",
                                              "proj_dim", "image_size", "flip", "normalize", "random_state")}

    def fit(self, X: Any) -> "SimCLR":
        from deepclust.device import resolve_device

        if int(self.epochs) < 1 or int(self.batch_size) < 2:
            raise DeepclustError("pretext: epochs must be ≥ 1 and batch_size ≥ 2")
        dev = resolve_device(self.device)
        x = as_image_tensor(X, dev, self.image_size)
        n = x.shape[0]
        if n < 2:
            raise DeepclustError("the pretext encoder needs at least 2 images")
        seed_everything(self.random_state)
        gen = torch.Generator(device=dev)
        gen.manual_seed(0 if self.random_state is None else int(self.random_state))
        net = make_backbone(self.backbone, x.shape[1], int(self.width)).to(dev)
        d = net.out_dim
        head = nn.Sequential(nn.Linear(d, d), nn.ReLU(inplace=True), nn.Linear(d, int(self.proj_dim))).to(dev)
        net.train()
        head.train()
        # torchrun: each rank takes the steps' images from its own rows (negatives: its part of the batch)
        part = distributed.shard(n)
        mine = x[part.rows]

        def loss_fn(idx: torch.Tensor) -> dict[str, torch.Tensor]:
            if idx.numel() < 2:  # a last batch of one has no negatives: pair it with another image
                idx = torch.cat([idx, (idx + 1) % len(mine)])
            xb = mine[idx]
            v1 = standard_view(xb, gen, flip=self.flip)
            v2 = standard_view(xb, gen, flip=self.flip)
            z = head(net(torch.cat([v1, v2])))
            return {"loss": nt_xent(z[:idx.numel()], z[idx.numel():], self.temperature)}

        self.history_ = train_epochs(list(net.parameters()) + list(head.parameters()), loss_fn, part,
                                     epochs=int(self.epochs), batch_size=int(self.batch_size), device=dev,
                                     generator=gen, lr=self.lr, desc="pretext (SimCLR)",
                                     mixed_precision=self.mixed_precision)
        distributed.average_buffers(net, head)  # batch-norm statistics of every rank's rows
        self.backbone_ = net.eval()
        self.projection_ = head.eval()
        self.device_ = dev
        return self

    def transform(self, X: Any, batch_size: int = 1024) -> np.ndarray:
        if not hasattr(self, "backbone_"):
            raise DeepclustError("this SimCLR encoder is not fitted yet: call fit(X) first")
        x = as_image_tensor(X, self.device_, self.image_size)
        Z = batched(self.backbone_, x, batch_size=batch_size, mixed_precision=self.mixed_precision)
        if self.normalize:
            Z = F.normalize(Z, dim=1)
        return Z.cpu().numpy()

    def fit_transform(self, X: Any) -> np.ndarray:
        return self.fit(X).transform(X)


class PretextEncoder(Encoder):
    """The ``pretext`` encoder: trains :class:`SimCLR` on the data it is asked to encode."""

    name = "pretext"
    modality = "image"
    default_batch_size = 1024

    def __init__(self, random_state: int | None = 0, **params: Any) -> None:
        try:
            self.model = SimCLR(random_state=random_state, **params)
        except TypeError as exc:
            raise DeepclustError(f"the pretext encoder does not take these settings: {exc}") from exc

    def identity(self) -> dict[str, Any]:
        from deepclust import __version__

        return {"name": self.name, "kind": "simclr", "params": self.model.get_params(), "deepclust": __version__}

    def _encode(self, X: Any, device: torch.device, batch_size: int) -> np.ndarray:
        self.model.device = device
        return self.model.fit(X).transform(X, batch_size=batch_size)
