"""Semantic vector quantisation (SVQ §3): M codebooks of K prototypes of d_c dimensions, one per block and shared
by every slot; each block of each slot snaps to the nearest prototype of its own codebook, straight-through.
The codebooks are learned by exponential moving averages, not by gradient, and a code whose smoothed usage falls
below a threshold restarts near a current encoder output (§3, after Dhariwal et al.'s random restarts).

As the official code does it (implementation-checked §7.1): squared-L2 nearest code; commitment
mean((sg[e] - z)^2); every training call quantises with the codebook as it was before that call's update, then
updates: cluster sizes cs <- 0.99 cs + 0.01 counts, Laplace-smoothed (eps 1e-5) over all M*K codes jointly,
ema_w <- 0.99 ema_w + 0.01 onehot^T z; live codes (cs >= threshold) become ema_w / cs, dead ones random current
queries of the same block plus N(0, (0.01 / sqrt(d_c))^2) noise. Initial codebook N(0, 1), cluster sizes 0.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from common.ranks import sum_over_ranks


def one_hot(indices: Tensor, size: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """indices [...] -> [..., size]: F.one_hot without its class-range check, which reads the device twice on the
    CPU (the training step never waits for the device; the indices are argmins, in range by construction)."""
    return torch.zeros(*indices.shape, size, dtype=dtype, device=indices.device).scatter_(-1, indices.unsqueeze(-1), 1)


def usage(indices: Tensor, size: int) -> Tensor:
    """indices [..., M] -> each block's share of uses per code [M,K]."""
    return one_hot(indices.reshape(-1, indices.shape[-1]), size).mean(0)


def perplexity(p: Tensor) -> Tensor:
    """exp(entropy) of each block's code usage p [M,K] -> [M]: K when every code is used equally, 1 for one code."""
    return torch.exp(-(p * (p + 1e-10).log()).sum(-1))


class BlockCodebooks(nn.Module):
    """quantise(z [..., M, d_c]) -> (z_q straight-through [..., M, d_c], indices [..., M], commitment scalar)."""

    def __init__(self, blocks: int, size: int, dim: int, decay: float = 0.99, eps: float = 1e-5,
                 threshold: float = 1.0):
        super().__init__()
        self.blocks, self.size, self.dim = blocks, size, dim
        self.decay, self.eps, self.threshold = decay, eps, threshold
        self.register_buffer("codebook", torch.randn(blocks, size, dim))  # [M,K,dc]
        self.register_buffer("cluster_size", torch.zeros(blocks, size))  # [M,K]
        self.register_buffer("ema_w", torch.randn(blocks, size, dim))  # [M,K,dc]

    def nearest(self, z: Tensor) -> Tensor:
        """z [N,M,dc] -> index [N,M] of each block's nearest prototype in its own codebook (squared L2)."""
        d = (z.pow(2).sum(-1, keepdim=True) - 2 * torch.einsum("nmd,mkd->nmk", z, self.codebook)
             + self.codebook.pow(2).sum(-1).unsqueeze(0))  # [N,M,K]
        return d.argmin(-1)

    def lookup(self, indices: Tensor) -> Tensor:
        """indices [..., M] -> prototypes [..., M, dc]."""
        m = torch.arange(self.blocks, device=indices.device)
        return self.codebook[m, indices]

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        shape = z.shape
        flat = z.reshape(-1, self.blocks, self.dim)  # [N,M,dc]
        with torch.autocast(device_type=z.device.type, enabled=False):
            flat32 = flat.float()
            indices = self.nearest(flat32.detach())  # [N,M]
            e = self.lookup(indices)  # [N,M,dc], the codebook before this call's update
            commitment = (e - flat32).pow(2).mean()  # mean((sg[e] - z)^2): e is a buffer, no gradient
            if self.training:
                self.update(flat32.detach(), indices)
        z_q = flat + (e.to(flat.dtype) - flat).detach()  # straight-through: value e, gradient to z
        return z_q.view(shape), indices.view(shape[:-1]), commitment

    @torch.no_grad()
    def update(self, z: Tensor, indices: Tensor) -> None:
        """One EMA step and the dead-code restart from queries z [N,M,dc] and their codes [N,M]. Under data
        parallelism the counts and sums are those of the global batch, so every rank takes the same EMA step
        (the restarts are rank 0's: DistributedDataParallel broadcasts its buffers before each forward)."""
        onehot = one_hot(indices, self.size, z.dtype)  # [N,M,K]
        counts = sum_over_ranks(onehot.sum(0))  # [M,K] over the global batch (data-parallel ranks)
        cs = self.decay * self.cluster_size + (1 - self.decay) * counts
        total = cs.sum()  # Laplace smoothing over all M*K codes jointly (checked 7.1)
        cs = (cs + self.eps) / (total + self.blocks * self.size * self.eps) * total
        self.cluster_size.copy_(cs)
        sums = sum_over_ranks(torch.einsum("nmk,nmd->mkd", onehot, z))  # [M,K,dc]
        self.ema_w.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        live = cs >= self.threshold  # [M,K]
        restart = self.restarts(z)  # [M,K,dc]
        self.codebook.copy_(torch.where(live.unsqueeze(-1), self.ema_w / cs.unsqueeze(-1), restart))

    def restarts(self, z: Tensor) -> Tensor:
        """For every code, a random current query of its block plus small noise [M,K,dc]: the batch's
        slot-blocks repeated to at least K candidates and shuffled (checked 7.1)."""
        n = z.shape[0]
        reps = math.ceil(self.size / n)
        candidates = z.repeat(reps, 1, 1)  # [n*reps,M,dc]
        pick = torch.stack([torch.randperm(len(candidates), device=z.device)[:self.size] for _ in range(self.blocks)])
        chosen = candidates[pick, torch.arange(self.blocks, device=z.device).unsqueeze(1)]  # [M,K,dc]
        return chosen + torch.randn_like(chosen) * 0.01 / math.sqrt(self.dim)

    @torch.no_grad()
    def health(self, indices: Tensor) -> dict[str, Tensor]:
        """Codebook health of a batch: each block's perplexity of code usage and the dead codes (cluster size
        under the threshold) per block [M]."""
        p = usage(indices.reshape(-1, self.blocks), self.size)  # [M,K]
        return {"perplexity": perplexity(p), "dead": (self.cluster_size < self.threshold).sum(-1)}
