"""Free bits (Maaloe et al. 2019) as LOM App. A.4.2 Eq. 26 applies them."""
from __future__ import annotations

from torch import Tensor


def free_bits(kl_per_sample: Tensor, threshold: float) -> Tensor:
    """mean_i max(lambda, KL_i). kl_per_sample [B] (already summed over slots and dims) -> scalar."""
    return kl_per_sample.clamp(min=threshold).mean()
