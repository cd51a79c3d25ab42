"""Pre-LayerNorm transformer blocks on `F.scaled_dot_product_attention` (causal or not)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class MultiHeadAttention(nn.Module):
    """Multi-head attention; `causal=True` masks future positions (query i sees keys <= i)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if dim % heads:
            raise ValueError(f"model dim {dim} is not divisible by {heads} heads")
        self.heads, self.dropout = heads, dropout
        self.q, self.k, self.v = (nn.Linear(dim, dim, bias=bias) for _ in range(3))
        self.out = nn.Linear(dim, dim, bias=bias)

    def _split(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.heads, d // self.heads).transpose(1, 2)  # [B,h,N,d/h]

    def forward(self, x: Tensor, memory: Tensor | None = None, causal: bool = False) -> Tensor:
        """x [B,N,D], memory [B,M,D] (keys/values; x itself if None) -> [B,N,D]."""
        memory = x if memory is None else memory
        q, k, v = self._split(self.q(x)), self._split(self.k(memory)), self._split(self.v(memory))
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=causal)  # [B,h,N,d/h]
        return self.out(y.transpose(1, 2).flatten(2))  # [B,N,D]


class TransformerBlock(nn.Module):
    """x += SelfAttn(LN x); [x += CrossAttn(LN x, memory)]; x += MLP(LN x)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0,
                 causal: bool = False, cross_attention: bool = False):
        super().__init__()
        self.causal = causal
        self.norm1, self.attn = nn.LayerNorm(dim), MultiHeadAttention(dim, heads, dropout)
        self.cross = MultiHeadAttention(dim, heads, dropout) if cross_attention else None
        self.norm_cross = nn.LayerNorm(dim) if cross_attention else None
        hidden = int(dim * mlp_ratio)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim), nn.Dropout(dropout))

    def forward(self, x: Tensor, memory: Tensor | None = None) -> Tensor:
        """x [B,N,D] (memory [B,M,D] with cross-attention) -> [B,N,D]."""
        x = x + self.attn(self.norm1(x), causal=self.causal)
        if self.cross is not None:
            if memory is None:
                raise ValueError("this block has cross-attention and needs `memory`")
            x = x + self.cross(self.norm_cross(x), memory)
        return x + self.mlp(self.norm2(x))
