"""Block-wise layers of SysBinder's block slot attention (SVQ §3; implementation-checked §7.1): a slot of d_s
dimensions is M blocks of d_c = d_s / M, and each layer here acts on each block with its own weights, shared by
every slot (block-diagonal weights, never a dense d_s x d_s matrix)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class BlockLinear(nn.Module):
    """x [..., M*din] -> [..., M*dout], block m through its own din x dout weight. Weights xavier-uniform over
    the [M, din, dout] tensor as the official code initialises them (a bound several times smaller than a
    per-block xavier), zero biases (checked 7.1)."""

    def __init__(self, d_in: int, d_out: int, blocks: int):
        super().__init__()
        if d_in % blocks or d_out % blocks:
            raise ValueError(f"BlockLinear: {d_in} -> {d_out} is not divisible into {blocks} blocks")
        self.blocks = blocks
        self.weight = nn.Parameter(torch.empty(blocks, d_in // blocks, d_out // blocks))
        self.bias = nn.Parameter(torch.zeros(d_out))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        xb = x.unflatten(-1, (self.blocks, -1))  # [...,M,din]
        return torch.einsum("...mi,mio->...mo", xb, self.weight).flatten(-2) + self.bias  # [...,M*dout]


class BlockLayerNorm(nn.Module):
    """LayerNorm within each block, no affine parameters (checked 7.1)."""

    def __init__(self, blocks: int):
        super().__init__()
        self.blocks = blocks

    def forward(self, x: Tensor) -> Tensor:
        xb = x.unflatten(-1, (self.blocks, -1))  # [...,M,dc]
        return F.layer_norm(xb, xb.shape[-1:]).flatten(-2)


class BlockMLP(nn.Sequential):
    """BlockLinear -> ReLU -> BlockLinear: SysBinder's residual block MLP (hidden / M units per block)."""

    def __init__(self, dim: int, hidden: int, blocks: int):
        super().__init__(BlockLinear(dim, hidden, blocks), nn.ReLU(), BlockLinear(hidden, dim, blocks))


class BlockGRU(nn.Module):
    """A GRU cell over d_s = M * d_c whose input and hidden weights are block-diagonal: M independent GRU cells
    of d_c units (SVQ §3, "block-level GRUs"). Parameters init as nn.GRUCell(d_s, d_s)'s, U(-1/sqrt(d_s),
    1/sqrt(d_s)), as the official masked GRUCell has them (its biases are dense, ours per block alike)."""

    def __init__(self, dim: int, blocks: int):
        super().__init__()
        if dim % blocks:
            raise ValueError(f"BlockGRU: {dim} is not divisible into {blocks} blocks")
        self.blocks, dc = blocks, dim // blocks
        bound = 1 / math.sqrt(dim)
        self.weight_ih = nn.Parameter(torch.empty(blocks, 3 * dc, dc).uniform_(-bound, bound))  # rows r, z, n
        self.weight_hh = nn.Parameter(torch.empty(blocks, 3 * dc, dc).uniform_(-bound, bound))
        self.bias_ih = nn.Parameter(torch.empty(blocks, 3 * dc).uniform_(-bound, bound))
        self.bias_hh = nn.Parameter(torch.empty(blocks, 3 * dc).uniform_(-bound, bound))

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        """x, h [N, M*dc] -> h' [N, M*dc], nn.GRUCell's equations per block."""
        xb, hb = x.unflatten(-1, (self.blocks, -1)), h.unflatten(-1, (self.blocks, -1))  # [N,M,dc]
        gi = torch.einsum("nmi,mgi->nmg", xb, self.weight_ih) + self.bias_ih  # [N,M,3dc]
        gh = torch.einsum("nmi,mgi->nmg", hb, self.weight_hh) + self.bias_hh  # [N,M,3dc]
        i_r, i_z, i_n = gi.chunk(3, -1)
        h_r, h_z, h_n = gh.chunk(3, -1)
        r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        return ((1 - z) * n + z * hb).flatten(-2)  # [N,M*dc]
