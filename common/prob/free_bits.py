"""Free bits (Maaloe et al. 2019) as LOM App. A.4.2 Eq. 26 applies them."""
from __future__ import annotations

from torch import Tensor


def free_bits(kl_per_sample: Tensor, threshold: float | None) -> Tensor:
    """max(lambda, KL_i) per sample [B] (Eq. 26 before its batch mean): kl_per_sample [B] already summed over
    slots and dims, so a slot-factorised KL is summed over K before the max. Below lambda the gradient is 0.
    threshold None: off, the KL unchanged."""
    return kl_per_sample if threshold is None else kl_per_sample.clamp(min=threshold)
