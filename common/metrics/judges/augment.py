"""Degradations that imitate what generative models produce: blur, colour shifts, noise, small artefacts.
Used to train the judges and, at fixed strength, to measure them on degraded held-out scenes."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def gaussian_blur(x: Tensor, sigma: Tensor) -> Tensor:
    """x [B,3,H,W], sigma [B] px (0: unchanged) -> blurred per image, separable 7-tap kernel."""
    taps = torch.arange(-3, 4, dtype=x.dtype, device=x.device)  # [7]
    k = torch.exp(-taps[None] ** 2 / (2 * sigma.clamp(min=1e-3)[:, None] ** 2))  # [B,7]
    k = k / k.sum(1, keepdim=True)
    b, c, h, w = x.shape
    y = x.reshape(1, b * c, h, w)
    kx = k.repeat_interleave(c, 0)[:, None, None, :]  # [B*C,1,1,7]
    y = F.conv2d(F.pad(y, (3, 3, 0, 0), mode="replicate"), kx, groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, 3, 3), mode="replicate"), kx.transpose(2, 3), groups=b * c)
    return y.view(b, c, h, w)


def degrade(x: Tensor, generator: torch.Generator, blur: float = 1.2, shift: float = 0.08, noise: float = 0.04,
            artefacts: float = 0.3) -> Tensor:
    """Random degradations up to the given strengths, per image: blur sigma ~ U(0, blur) px, per-channel
    gain 1 +- shift and offset +- shift, Gaussian noise std ~ U(0, noise), and with probability `artefacts`
    a few 2-4 px patches of random colour. x [B,3,H,W] in [0,1]."""
    b, _, h, w = x.shape
    u = lambda *shape: torch.rand(*shape, generator=generator, device=x.device)
    x = gaussian_blur(x, blur * u(b))
    x = x * (1 + shift * (2 * u(b, 3, 1, 1) - 1)) + shift * (2 * u(b, 3, 1, 1) - 1)
    x = x + noise * u(b, 1, 1, 1) * torch.randn(x.shape, generator=generator, device=x.device)
    for i in torch.nonzero(u(b) < artefacts).flatten().tolist():
        for _ in range(int(u(1) * 3) + 1):
            s = int(u(1) * 3) + 2
            y0, x0 = int(u(1) * (h - s)), int(u(1) * (w - s))
            x[i, :, y0:y0 + s, x0:x0 + s] = u(3, 1, 1)
    return x.clamp(0, 1)


def fixed_degradation(x: Tensor, seed: int = 0) -> Tensor:
    """The held-out test's degraded copy: blur sigma 1 px and noise std 0.03 on every image."""
    g = torch.Generator(device=x.device).manual_seed(seed)
    x = gaussian_blur(x, torch.ones(len(x), device=x.device))
    return (x + 0.03 * torch.randn(x.shape, generator=g, device=x.device)).clamp(0, 1)
