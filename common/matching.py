"""Matching two sets: the greedy alignment of SRI/LOM Algorithm 1, and Hungarian (scipy)."""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor


@torch.no_grad()
def greedy_matching(cost: Tensor) -> Tensor:
    """SRI App. A.1 / LOM App. A.2, Algorithm 1, batched. O(K) steps, O(K^2) memory.

    cost [B,K,K] with C[i, j] = ||mu_pi_i - mu_o_j|| (row i: ordered prior slot, column j: orderless
    posterior slot). For i = 1..K in order: j* = argmin_j C[i, j], then column j* is set to +inf.
    Returns perm [B,K]: perm[b, i] = j*, so `posterior[b, perm[b]]` is the posterior in prior order.
    """
    cost = cost.clone().float()
    batch, k, _ = cost.shape
    perm = torch.empty(batch, k, dtype=torch.long, device=cost.device)
    rows = torch.arange(batch, device=cost.device)
    for i in range(k):
        j = cost[:, i].argmin(dim=-1)  # [B]
        perm[:, i] = j
        cost[rows, :, j] = float("inf")
    return perm


def hungarian_matching(cost: Tensor | np.ndarray, maximize: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """Optimal assignment per batch element: cost [B,N,M] -> [(rows, cols)] with len min(N, M)."""
    cost = cost.detach().cpu().numpy() if isinstance(cost, Tensor) else np.asarray(cost)
    return [linear_sum_assignment(c, maximize=maximize) for c in cost]


def hungarian_permutation(cost: Tensor, maximize: bool = False) -> Tensor:
    """Square case: cost [B,K,K] -> perm [B,K] with perm[b, i] = column matched to row i."""
    perm = [cols[np.argsort(rows)] for rows, cols in hungarian_matching(cost, maximize)]
    return torch.as_tensor(np.stack(perm), dtype=torch.long, device=cost.device)


def pairwise_distance(a: Tensor, b: Tensor) -> Tensor:
    """a [B,K,D], b [B,M,D] -> Euclidean distances [B,K,M] (the cost of Algorithm 1, line 2)."""
    return torch.cdist(a.float(), b.float())
