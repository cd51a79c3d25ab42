"""Gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN Decoders"), the VQ-VAE
baseline's prior over its code grid (SVQ App. B.3: 20 layers). No maintained package provides one, so it is written
here; its causality is tested position by position (tests/test_svq_baselines.py).

Two stacks remove the blind spot of masked convolutions: the vertical stack at row i sees the rows <= i (a
(k//2 + 1) x k convolution padded from above) and reaches the horizontal stack shifted down by one row, so row i
only reads rows < i from it; the horizontal stack at (i, j) sees columns <= j of row i (a 1 x (k//2 + 1)
convolution padded from the left), shifted one column right in the first layer (mask A: not the pixel itself).
Each layer: v = Conv_v(v); h_pre = Conv_h(h) + Conv1x1(shift_down(v)) (the link before the gate, as the paper);
both gated tanh(a) * sigmoid(b); the horizontal output through a 1x1 convolution and, after the first layer, a
residual. Output: ReLU, 1x1, ReLU, 1x1 to K logits. First layer 7x7, the others 3x3.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.hub import HubModel
from common.output import ModelOutput
from papers.svq.model import CITATION


@dataclass
class PixelCNNConfig:
    grid: tuple[int, int] = (16, 16)  # h, w of the VQ-VAE's code grid
    codebook_size: int = 512
    channels: int = 128
    layers: int = 20  # App. B.3
    first_kernel: int = 7
    kernel: int = 3


def gate(x: Tensor) -> Tensor:
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


def shift_down(x: Tensor) -> Tensor:
    """[B,C,H,W] -> row i holds row i-1 (zeros in row 0)."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


def shift_right(x: Tensor) -> Tensor:
    """[B,C,H,W] -> column j holds column j-1 (zeros in column 0)."""
    return F.pad(x, (1, 0, 0, 0))[..., :-1]


class GatedLayer(nn.Module):
    def __init__(self, c: int, k: int, first: bool):
        super().__init__()
        self.k, self.first = k, first
        self.vertical = nn.Conv2d(c, 2 * c, (k // 2 + 1, k))
        self.horizontal = nn.Conv2d(c, 2 * c, (1, k // 2 + 1))
        self.link = nn.Conv2d(2 * c, 2 * c, 1)
        self.out = nn.Conv2d(c, c, 1)

    def forward(self, v: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """v, h [B,C,H,W] -> the next layer's v, h."""
        r = self.k // 2
        v_pre = self.vertical(F.pad(v, (r, r, r, 0)))  # [B,2C,H,W]: rows <= i
        h_pre = self.horizontal(F.pad(h, (r, 0, 0, 0)))  # [B,2C,H,W]: columns <= j of row i
        if self.first:
            h_pre = shift_right(h_pre)  # mask A: columns < j
        h_pre = h_pre + self.link(shift_down(v_pre))  # rows < i from the vertical stack
        h_out = self.out(gate(h_pre))
        return gate(v_pre), h_out if self.first else h + h_out


class GatedPixelCNN(HubModel):
    """forward(indices [B,h,w] long) -> ModelOutput whose loss is the cross-entropy summed over positions and
    averaged over the batch; `sample(n, temperature, generator)` -> indices [n,h,w] in raster order."""

    config_class = PixelCNNConfig
    citation = CITATION

    def __init__(self, config: PixelCNNConfig):
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.codebook_size, c.channels)
        self.layers = nn.ModuleList(GatedLayer(c.channels, c.first_kernel if i == 0 else c.kernel, i == 0)
                                    for i in range(c.layers))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(c.channels, c.channels, 1), nn.ReLU(),
                                  nn.Conv2d(c.channels, c.codebook_size, 1))

    def logits_from_embedding(self, x: Tensor) -> Tensor:
        """x [B,C,h,w] -> logits [B,K,h,w]; position (i, j) reads only positions before it in raster order."""
        v, h = x, x
        for layer in self.layers:
            v, h = layer(v, h)
        return self.head(h)

    def logits(self, indices: Tensor) -> Tensor:
        return self.logits_from_embedding(self.embed(indices).permute(0, 3, 1, 2))

    def forward(self, indices: Tensor, step: int | None = None) -> ModelOutput:
        ce = F.cross_entropy(self.logits(indices).float(), indices, reduction="sum") / len(indices)
        empty = ce.new_zeros(0)
        return ModelOutput(loss=ce, recon=empty, masks=empty, slots=empty, logs={"ce": ce.detach()})

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, top_k: int | None = None,
               generator: torch.Generator | None = None) -> Tensor:
        """n grids of indices [n,h,w], one position at a time in raster order."""
        h, w = self.config.grid
        device = self.embed.weight.device
        idx = torch.zeros(n, h, w, dtype=torch.long, device=device)
        for i in range(h):
            for j in range(w):
                logits = self.logits(idx)[:, :, i, j].float() / temperature  # [n,K]
                if top_k is not None:
                    kth = logits.topk(top_k, dim=-1).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                idx[:, i, j] = torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]
        return idx
