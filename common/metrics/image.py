"""Pixel metrics."""
from __future__ import annotations

from torch import Tensor


def mse(x: Tensor, recon: Tensor) -> Tensor:
    """Mean squared error per image over pixels and channels: [B,C,H,W] (values in [0,1]) -> [B]."""
    if x.shape != recon.shape:
        raise ValueError(f"image and reconstruction differ in shape: {tuple(x.shape)} vs {tuple(recon.shape)}")
    return ((x.float() - recon.float()) ** 2).flatten(1).mean(1)
