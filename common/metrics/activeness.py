"""Activeness of latent dimensions (Peebles et al. 2020), as EMORL §4.3 / App. E.2 uses it.

For each test image one slot k is chosen uniformly; each latent dimension d of z_k is swept over
`steps` values between that dimension's min and max across the test latents, and the per-pixel
variance of the decoded images over the sweep is averaged over pixels and images.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


@torch.no_grad()
def activeness(decode: Callable[[Tensor], Tensor], latents: Tensor, steps: int = 10, seed: int = 0,
               batch: int = 64) -> Tensor:
    """decode: z [B,K,D] -> images [B,C,H,W]; latents [N,K,D] -> activeness per dimension [D].

    Decodes are batched `batch` scenes at a time (N * steps scenes per dimension).
    """
    n, k, d = latents.shape
    gen = torch.Generator().manual_seed(seed)
    slot = torch.randint(k, (n,), generator=gen)  # [N]
    lo = latents.reshape(-1, d).min(0).values  # [D]
    hi = latents.reshape(-1, d).max(0).values
    sweep = torch.linspace(0, 1, steps)  # [T]
    out = torch.zeros(d)
    for dim in range(d):
        values = lo[dim] + (hi[dim] - lo[dim]) * sweep  # [T]
        z = latents.unsqueeze(1).repeat(1, steps, 1, 1)  # [N,T,K,D]
        z[torch.arange(n), :, slot, dim] = values.to(z.dtype)
        flat = z.reshape(n * steps, k, d)
        images = torch.cat([decode(flat[i:i + batch]) for i in range(0, len(flat), batch)]).reshape(n, steps, -1)
        out[dim] = images.var(dim=1, unbiased=False).mean()
    return out
