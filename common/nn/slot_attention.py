"""Slot Attention (Locatello et al. 2020, Algorithm 1)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from common.nn.encoders import MLP, ConvEncoder, flatten_spatial
from common.nn.position import PositionEmbed


def attend(q: Tensor, k: Tensor, v: Tensor, eps: float = 1e-8, scale: float | None = None) -> tuple[Tensor, Tensor]:
    """Slots compete for inputs: softmax over slots, + eps, renormalise over inputs.

    q [B,K,D], k [B,N,D], v [B,N,Dv] -> updates [B,K,Dv], attention [B,N,K]; logits scaled by `scale`
    (default D^-1/2). Computed in fp32 even under autocast (fp16 softmax over dot products overflows).
    """
    with torch.autocast(device_type=q.device.type, enabled=False):
        q, k, v = q.float(), k.float(), v.float()
        logits = torch.einsum("bnd,bkd->bnk", k, q) * (q.shape[-1] ** -0.5 if scale is None else scale)  # [B,N,K]
        attn = logits.softmax(dim=-1) + eps  # [B,N,K]
        weights = attn / attn.sum(dim=1, keepdim=True)  # [B,N,K]
        updates = torch.einsum("bnk,bnd->bkd", weights, v)  # [B,K,D]
    return updates, attn


class SlotAttention(nn.Module):
    """Iterative attention from N inputs to K slots: learned Gaussian init, GRU + residual MLP.

    With one learned init (`num_inits=1`, Locatello et al.) it is permutation equivariant in the slots:
    the same init noise in another order gives the same slots in that order. With `num_inits=K` each slot
    has its own learned mean and std (SRI-SA*, SRI §5.2, after SloTTAr), which breaks that symmetry on
    purpose so that slot k can specialise.
    """

    def __init__(self, input_dim: int, slot_dim: int, iters: int = 3, mlp_hidden: int = 128,
                 eps: float = 1e-8, num_inits: int = 1, gru: nn.Module | None = None, mlp: nn.Module | None = None,
                 norm_mlp: nn.Module | None = None):
        super().__init__()
        self.slot_dim, self.iters, self.eps = slot_dim, iters, eps
        self.mu = nn.Parameter(torch.empty(1, num_inits, slot_dim))
        self.log_sigma = nn.Parameter(torch.empty(1, num_inits, slot_dim))
        bound = (3 / slot_dim) ** 0.5  # Xavier-uniform of a [1,1,D] tensor, for every init alike
        nn.init.uniform_(self.mu, -bound, bound)
        nn.init.uniform_(self.log_sigma, -bound, bound)
        self.norm_inputs = nn.LayerNorm(input_dim)
        self.norm_slots = nn.LayerNorm(slot_dim)
        self.norm_mlp = norm_mlp or nn.LayerNorm(slot_dim)  # SysBinder / SVQ: block-wise (papers/svq/blocks.py)
        self.to_q = nn.Linear(slot_dim, slot_dim, bias=False)
        self.to_k = nn.Linear(input_dim, slot_dim, bias=False)
        self.to_v = nn.Linear(input_dim, slot_dim, bias=False)
        self.fold = input_dim < slot_dim  # attend in the input space: see `step`
        self.gru = gru or nn.GRUCell(slot_dim, slot_dim)
        self.mlp = mlp or MLP([slot_dim, mlp_hidden, slot_dim])

    def init_slots(self, batch: int, num_slots: int, noise: Tensor | None = None) -> Tensor:
        """slots^0 = mu + sigma * noise, noise [B,K,D] ~ N(0, I) unless given (per-slot mu, sigma [1,K,D]
        when each slot has its own init)."""
        if self.mu.shape[1] not in (1, num_slots):
            raise ValueError(f"this SlotAttention learned {self.mu.shape[1]} slot inits; it cannot make {num_slots} slots")
        if noise is None:
            noise = torch.randn(batch, num_slots, self.slot_dim, device=self.mu.device)
        return self.mu + self.log_sigma.exp() * noise  # [B,K,D]

    def forward(self, inputs: Tensor, num_slots: int, noise: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """inputs [B,N,Din] -> slots [B,K,D], last attention [B,N,K]."""
        k, v = self.keys_values(self.norm_inputs(inputs))
        slots = self.init_slots(inputs.shape[0], num_slots, noise)  # [B,K,D]
        for _ in range(self.iters):
            slots, attn = self.step(slots, k, v)
        return slots, attn

    def keys_values(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The normalised inputs x [B,N,Din] -> keys and values for `step`: their projections [B,N,D], or x
        itself when the slots are wider than the inputs (`fold`)."""
        return (x, x) if self.fold else (self.to_k(x), self.to_v(x))

    def step(self, slots: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """One iteration: slots [B,K,D], keys and values from `keys_values` -> new slots [B,K,D], attention
        [B,N,K]. Folded (D > Din, SysBinder / SVQ: 2048 vs 192) it is the same arithmetic reassociated, with
        no [B,N,D] keys or values: q . (W_k x_n) = (q W_k) . x_n and sum_n w_n W_v x_n = W_v sum_n w_n x_n."""
        q = self.to_q(self.norm_slots(slots))  # [B,K,D]
        if self.fold:
            u, attn = attend(q @ self.to_k.weight, k, v, self.eps, scale=self.slot_dim ** -0.5)  # [B,K,Din]
            updates = self.to_v(u)  # [B,K,D]
        else:
            updates, attn = attend(q, k, v, self.eps)  # [B,K,D]
        new = self.gru(updates.reshape(-1, self.slot_dim).to(slots.dtype),
                       slots.reshape(-1, self.slot_dim)).view_as(slots)  # [B,K,D]
        return new + self.mlp(self.norm_mlp(new)), attn


class SlotFeatures(nn.Module):
    """Slot Attention's image encoder (Locatello et al. 2020, App. E): images [B,3,H,W] in [0,1], scaled to
    [-1,1] as in the original, through a CNN at full resolution, a learned ramp-grid position embedding
    added, then LayerNorm + MLP per position -> inputs [B,HW,C] for SlotAttention."""

    def __init__(self, resolution: tuple[int, int], channels: tuple[int, ...] = (64, 64, 64, 64), kernel_size: int = 5):
        super().__init__()
        width = channels[-1]
        self.cnn = ConvEncoder(3, channels, kernel_size=kernel_size)
        self.position = PositionEmbed(width, *resolution, mode="add")
        self.mlp = nn.Sequential(nn.LayerNorm(width), MLP([width, width, width]))

    def forward(self, images: Tensor) -> Tensor:
        x = self.position(self.cnn(images * 2 - 1))  # [B,C,H,W]
        return self.mlp(flatten_spatial(x))  # [B,HW,C]
