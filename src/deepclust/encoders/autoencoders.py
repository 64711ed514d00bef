"""Denoising autoencoders whose decoder reconstructs every layer of the clean encoder.

The layout follows DEPICT (Ghasedi Dizaji et al., ICCV 2017, arXiv 1704.06327): a corrupted
(dropout) pathway and a clean pathway share the weights; the decoder, fed with the corrupted
embedding, reconstructs the input *and* each hidden activation of the clean encoder, which acts
as a data-dependent regulariser (see :func:`deepclust.losses.layerwise_reconstruction_loss`).

``forward(x, corrupt)`` returns :class:`AEOutput`: the embedding, the encoder activations
``[x, h1, h2, ...]`` and the decoder outputs aligned with them ``[x̂, ĥ1, ĥ2, ...]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from deepclust.errors import DeepclustError


@dataclass
class AEOutput:
    embedding: torch.Tensor
    encoded: list[torch.Tensor]  # [input, hidden 1, hidden 2, ...] of this pathway
    decoded: list[torch.Tensor]  # reconstructions aligned with ``encoded``


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class _LayerwiseAutoencoder(nn.Module):
    """What both autoencoders share: Glorot initialisation (as the authors' Lasagne layers) and
    ``encode``; subclasses implement ``forward(x, corrupt, decode) -> AEOutput``."""

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Clean embedding (no corruption, no decoding)."""
        return self.forward(x, corrupt=False, decode=False).embedding


class ConvAutoencoder(_LayerwiseAutoencoder):
    """DEPICT's convolutional autoencoder, for any (C, H, W).

    Encoder: dropout(p) → conv(c1, k1, s1, p1) → LeakyReLU(0.01) → dropout(p) → conv(c2, k2, s2, p2)
    → LeakyReLU → fully connected to ``embedding_dim`` → tanh. Decoder: fully connected →
    LeakyReLU → transposed convs → tanh output (inputs are scaled to [-1, 1]). The defaults are the
    authors' settings for 28×28 and 16×16 digits (kernels 4, 5; strides 2, 2; paddings 0, 2);
    each transposed conv gets the ``output_size`` of the conv it mirrors, so any H, W >= the first
    kernel works.
    """

    def __init__(self, input_shape: Sequence[int], embedding_dim: int, *, channels: Sequence[int] = (50, 50),
                 kernel_sizes: Sequence[int] = (4, 5), strides: Sequence[int] = (2, 2),
                 paddings: Sequence[int] = (0, 2), dropout: float = 0.1, negative_slope: float = 0.01):
        super().__init__()
        c, h, w = (int(s) for s in input_shape)
        self.input_shape = (c, h, w)
        self.dropout = float(dropout)
        self.negative_slope = float(negative_slope)
        self.sizes = [(h, w)]
        convs, deconvs = [], []
        in_ch = c
        for out_ch, k, s, p in zip(channels, kernel_sizes, strides, paddings):
            ph, pw = self.sizes[-1]
            nh, nw = _conv_out(ph, k, s, p), _conv_out(pw, k, s, p)
            if nh < 1 or nw < 1:
                raise DeepclustError(f"images of size {h}×{w} are too small for this autoencoder "
                                     f"(kernels {list(kernel_sizes)}); use images of at least {kernel_sizes[0]}×"
                                     f"{kernel_sizes[0]} pixels or flatten them to vectors")
            self.sizes.append((nh, nw))
            convs.append(nn.Conv2d(in_ch, out_ch, k, s, p))
            deconvs.append(nn.ConvTranspose2d(out_ch, in_ch, k, s, p))
            in_ch = out_ch
        self.convs = nn.ModuleList(convs)
        self.deconvs = nn.ModuleList(deconvs[::-1])  # deepest first
        self.flat_shape = (in_ch, *self.sizes[-1])
        flat = in_ch * self.sizes[-1][0] * self.sizes[-1][1]
        self.fc = nn.Linear(flat, embedding_dim)
        self.fc_dec = nn.Linear(embedding_dim, flat)
        self._init_weights()

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, self.negative_slope)

    def forward(self, x: torch.Tensor, corrupt: bool = True, decode: bool = True) -> AEOutput:
        p = self.dropout if corrupt else 0.0
        encoded = [x]
        h = F.dropout(x, p, training=corrupt)
        for i, conv in enumerate(self.convs):
            h = self._act(conv(h))
            encoded.append(h)
            if i < len(self.convs) - 1:  # the authors drop out after every conv but the last
                h = F.dropout(h, p, training=corrupt)
        z = torch.tanh(self.fc(h.flatten(1)))
        if not decode:
            return AEOutput(z, encoded, [])
        d = self._act(self.fc_dec(z)).view(-1, *self.flat_shape)
        decoded = [d]
        for i, deconv in enumerate(self.deconvs):
            target = self.sizes[len(self.deconvs) - 1 - i]
            d = deconv(d, output_size=list(target))
            d = torch.tanh(d) if i == len(self.deconvs) - 1 else self._act(d)
            decoded.append(d)
        return AEOutput(z, encoded, decoded[::-1])


class MLPAutoencoder(_LayerwiseAutoencoder):
    """Fully connected autoencoder ``d → hidden… → embedding_dim`` with the mirrored decoder.

    DEPICT's layout on flat vectors (dropout corruption, LeakyReLU, tanh embedding and output) by
    default; ``activation="relu"``, ``embedding_activation=None``, ``output_activation=None`` and
    ``dropout=0`` give the plain d-500-500-2000-10 autoencoder of DEC/IDEC.
    """

    def __init__(self, input_dim: int, embedding_dim: int, *, hidden_dims: Sequence[int] = (500, 500, 2000),
                 dropout: float = 0.1, activation: str = "leaky_relu", embedding_activation: str | None = "tanh",
                 output_activation: str | None = "tanh", negative_slope: float = 0.01):
        super().__init__()
        dims = [int(input_dim), *[int(h) for h in hidden_dims], int(embedding_dim)]
        self.dropout = float(dropout)
        self.negative_slope = float(negative_slope)
        self.activation = activation
        self.embedding_activation = embedding_activation
        self.output_activation = output_activation
        self.enc = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.dec = nn.ModuleList(nn.Linear(b, a) for a, b in reversed(list(zip(dims[:-1], dims[1:]))))
        self._init_weights()

    def _hidden(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x) if self.activation == "relu" else F.leaky_relu(x, self.negative_slope)

    @staticmethod
    def _final(x: torch.Tensor, name: str | None) -> torch.Tensor:
        return torch.tanh(x) if name == "tanh" else x

    def forward(self, x: torch.Tensor, corrupt: bool = True, decode: bool = True) -> AEOutput:
        p = self.dropout if corrupt else 0.0
        encoded = [x]
        h = F.dropout(x, p, training=corrupt)
        for layer in self.enc[:-1]:
            h = self._hidden(layer(h))
            encoded.append(h)
            h = F.dropout(h, p, training=corrupt)
        z = self._final(self.enc[-1](h), self.embedding_activation)
        if not decode:
            return AEOutput(z, encoded, [])
        d = z
        decoded = []
        for i, layer in enumerate(self.dec):
            last = i == len(self.dec) - 1
            d = self._final(layer(d), self.output_activation) if last else self._hidden(layer(d))
            decoded.append(d)
        return AEOutput(z, encoded, decoded[::-1])
