"""Small convolutional encoders and MLPs."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU}


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r} (choose from {', '.join(ACTIVATIONS)})")
    return ACTIVATIONS[name]()


class ConvEncoder(nn.Sequential):
    """Conv stack with an activation after every layer (Slot Attention / EMORL image encoder:
    4 x [Conv 5x5, 64, stride 1, padding 2, ReLU])."""

    def __init__(self, in_channels: int, channels: Sequence[int], kernel_size: int = 5,
                 strides: Sequence[int] | None = None, padding: int | None = None,
                 act: str = "relu", last_act: bool = True):
        strides = strides or [1] * len(channels)
        padding = kernel_size // 2 if padding is None else padding
        layers: list[nn.Module] = []
        for i, (c, s) in enumerate(zip(channels, strides, strict=True)):
            layers.append(nn.Conv2d(in_channels, c, kernel_size, stride=s, padding=padding))
            if last_act or i < len(channels) - 1:
                layers.append(activation(act))
            in_channels = c
        super().__init__(*layers)
        self.to(memory_format=torch.channels_last)  # ~1.8x faster convs on CPU (oneDNN), and on GPU AMP

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.contiguous(memory_format=torch.channels_last))


class MLP(nn.Sequential):
    """Linear layers with an activation between them (none after the last)."""

    def __init__(self, sizes: Sequence[int], act: str = "relu"):
        layers: list[nn.Module] = []
        for i in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[i], sizes[i + 1]))
            if i < len(sizes) - 2:
                layers.append(activation(act))
        super().__init__(*layers)


def flatten_spatial(x: Tensor) -> Tensor:
    """[B,C,H,W] -> [B,H*W,C]."""
    return x.flatten(2).transpose(1, 2)
