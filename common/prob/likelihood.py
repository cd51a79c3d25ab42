"""Image likelihoods for slot decoders, as negative log-likelihoods summed over C, H, W per image.

`normalised=False` drops the -1/2 log(2 pi) term as EMORL does; GENESIS-v2 / SRI keep it
(`../shared/reference/implementation-notes.md` §1). GECO targets are only valid for the matching choice.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def gaussian_log_density(x: Tensor, mean: Tensor, sigma: float | Tensor, normalised: bool) -> Tensor:
    """Elementwise log N(x; mean, sigma^2) (sigma a number or a broadcastable tensor), optionally without
    the 1/2 log 2pi constant."""
    log_sigma = sigma.log() if isinstance(sigma, Tensor) else math.log(sigma)
    log_p = -0.5 * ((x - mean) / sigma) ** 2 - log_sigma
    return log_p - HALF_LOG_2PI if normalised else log_p


def gaussian_nll(x: Tensor, mean_image: Tensor, sigma: float, normalised: bool = False) -> Tensor:
    """EMORL Eq. 12: x ~ N(sum_k m_k y_k, sigma^2) per pixel-channel. x, mean_image [B,C,H,W] -> [B]."""
    return -gaussian_log_density(x, mean_image, sigma, normalised).flatten(1).sum(1)


def mixture_nll(
    x: Tensor,
    means: Tensor,
    log_masks: Tensor,
    sigma: float,
    normalised: bool = False,
    joint_channels: bool = False,
) -> Tensor:
    """Spatial mixture of Gaussians (EMORL Eq. 13, IODINE Eq. 1) -> [B].

    x [B,C,H,W], means [B,K,C,H,W], log_masks [B,K,1,H,W] (log-softmax over K).
    joint_channels=False: one mixture per pixel *and* channel (EMORL, GENESIS-v2).
    joint_channels=True: one mixture per pixel over the C-channel product density (IODINE).
    """
    log_p = gaussian_log_density(x.unsqueeze(1), means, sigma, normalised)  # [B,K,C,H,W]
    if joint_channels:
        log_p = log_p.sum(2, keepdim=True)  # [B,K,1,H,W]
    return -torch.logsumexp(log_masks + log_p, dim=1).flatten(1).sum(1)


def masked_mean_image(means: Tensor, masks: Tensor) -> Tensor:
    """sum_k m_k y_k: [B,K,C,H,W] x [B,K,1,H,W] -> [B,C,H,W]."""
    return (masks * means).sum(1)
