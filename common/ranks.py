"""Reductions over data-parallel ranks for state kept outside the gradients (GECO's constraint, EMA codebooks):
identities in a single process."""
from __future__ import annotations

import torch.distributed as dist
from torch import Tensor


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def sum_over_ranks(x: Tensor) -> Tensor:
    """The sum of x over every rank (a detached copy; x itself is left as it is)."""
    x = x.detach().clone()
    if world_size() > 1:
        dist.all_reduce(x)
    return x


def mean_over_ranks(x: Tensor) -> Tensor:
    """The mean of x over every rank, in float32 or wider."""
    return sum_over_ranks(x.float()) / world_size()
