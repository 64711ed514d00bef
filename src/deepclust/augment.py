"""Random image augmentations, batched on the device: a fresh draw per image, no loop over samples.

Images are N×C×H×W float tensors in [0, 1].

- :func:`standard_view`: SimCLR's views (Chen et al., ICML 2020), used by the pretext step and by
  SCAN's clustering step: random resized crop with a small rotation in one affine warp, optional
  horizontal flip, brightness and contrast jitter, random grayscale for colour images.
- :func:`strong_view`: SCAN's strong augmentation for self-labelling (Van Gansbeke et al., ECCV
  2020, §3.3; their "ours" strategy, after RandAugment, Cubuk et al. 2020, as in FixMatch): a
  random crop with flip, then ``n_ops`` operations drawn per image from the RandAugment list, each
  with a random magnitude, then Cutout (DeVries & Taylor 2017) of one square hole.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: RandAugment operations of :func:`strong_view`, with their magnitude ranges (SCAN's list)
STRONG_OPS: dict[str, tuple[float, float]] = {
    "identity": (0.0, 0.0),
    "autocontrast": (0.0, 0.0),
    "equalize": (0.0, 0.0),
    "brightness": (0.05, 0.95),   # blend factor with black: 1 - v is the darkening
    "color": (0.05, 0.95),        # blend with the grayscale image (no effect on grayscale images)
    "contrast": (0.05, 0.95),     # blend with the mean gray level
    "sharpness": (0.05, 0.95),    # blend with a smoothed image
    "posterize": (4.0, 8.0),      # bits kept
    "solarize": (0.0, 1.0),       # threshold above which pixels are inverted
    "rotate": (-30.0, 30.0),      # degrees
    "shear_x": (-0.3, 0.3),
    "shear_y": (-0.3, 0.3),
    "translate_x": (-0.3, 0.3),   # fraction of the width
    "translate_y": (-0.3, 0.3),
}


def _uniform(n: int, lo: float, hi: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=generator, device=device)


def _warp(x: torch.Tensor, theta: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def _gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] != 3:
        return x.mean(1, keepdim=True).expand_as(x)
    w = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True).expand_as(x)


def standard_view(x: torch.Tensor, generator: torch.Generator, *, crop_scale: tuple[float, float] = (0.35, 1.0),
                  max_rotation: float = 10.0, flip: bool = True, brightness: float = 0.4, contrast: float = 0.4,
                  grayscale_p: float = 0.2) -> torch.Tensor:
    """One SimCLR-style random view per image of ``x``."""
    n, c = x.shape[:2]
    dev = x.device

    def u(lo: float, hi: float) -> torch.Tensor:
        return _uniform(n, lo, hi, generator, dev)

    area = u(*crop_scale)
    ratio = torch.exp(u(math.log(3 / 4), math.log(4 / 3)))
    sw = torch.sqrt(area * ratio).clamp(max=1.0)  # crop width and height as fractions of the image
    sh = torch.sqrt(area / ratio).clamp(max=1.0)
    tx = u(-1.0, 1.0) * (1 - sw)  # crop centre, kept inside the image
    ty = u(-1.0, 1.0) * (1 - sh)
    angle = u(-max_rotation, max_rotation) * (math.pi / 180)
    sx = torch.where(torch.rand(n, generator=generator, device=dev) < 0.5, -1.0, 1.0) if flip else torch.ones_like(sw)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([sw * cos * sx, -sh * sin, tx], 1),
                         torch.stack([sw * sin * sx, sh * cos, ty], 1)], 1)
    out = _warp(x, theta)
    b = u(1 - brightness, 1 + brightness).view(n, 1, 1, 1)
    k = u(1 - contrast, 1 + contrast).view(n, 1, 1, 1)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = ((out - mean) * k + mean) * b
    if c == 3 and grayscale_p > 0:
        to_gray = (torch.rand(n, generator=generator, device=dev) < grayscale_p).view(n, 1, 1, 1)
        out = torch.where(to_gray, _gray(out), out)
    return out.clamp(0.0, 1.0)


def _equalize(x: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation per image and channel, as PIL's: a pixel becomes the number of pixels
    darker than it over the number not at the brightest level (the darkest level stays black)."""
    flat = x.flatten(2).contiguous()
    ordered = flat.sort(-1).values.contiguous()
    darker = torch.searchsorted(ordered, flat, right=False).to(x.dtype)
    at_max = (flat == ordered[..., -1:]).sum(-1, keepdim=True).to(x.dtype)
    spread = flat.shape[-1] - at_max
    out = torch.where(spread > 0, darker / spread.clamp_min(1), flat)
    return out.clamp(0.0, 1.0).view_as(x)


def _smooth(x: torch.Tensor) -> torch.Tensor:
    """PIL's SMOOTH filter (3×3, centre weight 5, others 1), per channel, edges kept."""
    c = x.shape[1]
    kernel = torch.ones(3, 3, device=x.device, dtype=x.dtype)
    kernel[1, 1] = 5.0
    kernel = (kernel / kernel.sum()).expand(c, 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=c)


def _apply_op(name: str, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Operation ``name`` with per-image magnitude ``v`` (N,) on the whole batch."""
    n = x.shape[0]
    vv = v.view(n, 1, 1, 1).to(x.dtype)
    if name == "identity":
        return x
    if name == "autocontrast":
        lo = x.amin(dim=(2, 3), keepdim=True)
        hi = x.amax(dim=(2, 3), keepdim=True)
        return torch.where(hi > lo, (x - lo) / (hi - lo).clamp_min(1e-6), x)
    if name == "equalize":
        return _equalize(x)
    if name == "brightness":
        return x * vv
    if name in ("color", "sharpness"):  # blend with a degenerate image: grayscale, smoothed
        degenerate = _gray(x) if name == "color" else _smooth(x)
        return degenerate + (x - degenerate) * vv
    if name == "contrast":
        mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
        return mean + (x - mean) * vv
    if name == "posterize":
        levels = torch.pow(2.0, torch.round(vv)).clamp(min=2.0)  # 2^bits grey levels
        return torch.floor(x * (levels - 1e-6)) / (levels - 1)
    if name == "solarize":
        return torch.where(x >= vv, 1.0 - x, x)
    one, zero = torch.ones(n, device=x.device), torch.zeros(n, device=x.device)
    if name == "rotate":
        a = v * (math.pi / 180)
        theta = torch.stack([torch.stack([torch.cos(a), -torch.sin(a), zero], 1),
                             torch.stack([torch.sin(a), torch.cos(a), zero], 1)], 1)
    elif name == "shear_x":
        theta = torch.stack([torch.stack([one, v, zero], 1), torch.stack([zero, one, zero], 1)], 1)
    elif name == "shear_y":
        theta = torch.stack([torch.stack([one, zero, zero], 1), torch.stack([v, one, zero], 1)], 1)
    elif name == "translate_x":
        theta = torch.stack([torch.stack([one, zero, 2 * v], 1), torch.stack([zero, one, zero], 1)], 1)
    elif name == "translate_y":
        theta = torch.stack([torch.stack([one, zero, zero], 1), torch.stack([zero, one, 2 * v], 1)], 1)
    else:
        raise ValueError(f"unknown augmentation {name!r}")
    return _warp(x, theta, padding_mode="zeros")


def strong_view(x: torch.Tensor, generator: torch.Generator, *, n_ops: int = 4, cutout: float = 0.5,
                crop_scale: tuple[float, float] = (0.75, 1.0), flip: bool = True) -> torch.Tensor:
    """One strongly augmented view per image of ``x``: crop and flip, ``n_ops`` RandAugment
    operations drawn per image (:data:`STRONG_OPS`, random magnitudes), then a Cutout hole of side
    ``cutout`` × the image size filled with mid-grey (0.5)."""
    n = x.shape[0]
    dev = x.device
    out = standard_view(x, generator, crop_scale=crop_scale, max_rotation=0.0, flip=flip, brightness=0.0,
                        contrast=0.0, grayscale_p=0.0)
    names = list(STRONG_OPS)
    for _ in range(int(n_ops)):
        choice = torch.randint(len(names), (n,), generator=generator, device=dev)
        magnitude = torch.rand(n, generator=generator, device=dev)
        new = out.clone()
        for i, name in enumerate(names):  # a loop over the 14 operations; each runs on its images only
            idx = (choice == i).nonzero().squeeze(1)
            if idx.numel() == 0 or name == "identity":
                continue
            lo, hi = STRONG_OPS[name]
            new[idx] = _apply_op(name, out[idx], lo + (hi - lo) * magnitude[idx]).clamp(0.0, 1.0)
        out = new
    if cutout > 0:
        h, w = out.shape[-2:]
        cy = torch.randint(h, (n, 1, 1), generator=generator, device=dev)
        cx = torch.randint(w, (n, 1, 1), generator=generator, device=dev)
        half_h, half_w = max(1, int(round(cutout * h / 2))), max(1, int(round(cutout * w / 2)))
        rows = torch.arange(h, device=dev).view(1, h, 1)
        cols = torch.arange(w, device=dev).view(1, 1, w)
        hole = ((rows - cy).abs() < half_h) & ((cols - cx).abs() < half_w)
        out = torch.where(hole.unsqueeze(1), torch.full_like(out, 0.5), out)
    return out
