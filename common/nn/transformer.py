"""Pre-LayerNorm transformer blocks on `F.scaled_dot_product_attention` (causal or not), with an optional
key/value cache for autoregressive decoding one position at a time; `encoder_layer_step`, the same cache for
PyTorch's own `nn.TransformerEncoderLayer` (post-LN, as SVQ's prior)."""
from __future__ import annotations

import torch
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

    def forward(self, x: Tensor, memory: Tensor | None = None, causal: bool = False,
                cache: dict | None = None) -> Tensor:
        """x [B,N,D], memory [B,M,D] (keys/values; x itself if None) -> [B,N,D].

        `cache` (a dict, empty at the first call) keeps keys and values between calls: for self-attention
        the new positions' are appended (x then holds only positions not seen before; after the first call,
        one at a time), for cross-attention the memory's are computed once."""
        q = self._split(self.q(x))  # [B,h,N,d/h]
        if cache is not None and memory is not None and "k" in cache:  # cross-attention, memory seen
            k, v = cache["k"], cache["v"]
        else:
            source = x if memory is None else memory
            k, v = self._split(self.k(source)), self._split(self.v(source))
            if cache is not None and memory is None and "k" in cache:  # self-attention: extend the past
                if x.shape[1] != 1:
                    raise ValueError(f"a cached self-attention step takes one new position, got {x.shape[1]}")
                k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
                causal = False  # the one query sees every cached position and itself
            if cache is not None:
                cache.update(k=k, v=v)
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

    def forward(self, x: Tensor, memory: Tensor | None = None, cache: dict | None = None) -> Tensor:
        """x [B,N,D] (memory [B,M,D] with cross-attention) -> [B,N,D]. `cache`: a dict kept between calls
        of autoregressive decoding (MultiHeadAttention's), one entry per attention."""
        own = None if cache is None else cache.setdefault("self", {})
        x = x + self.attn(self.norm1(x), causal=self.causal, cache=own)
        if self.cross is not None:
            if memory is None:
                raise ValueError("this block has cross-attention and needs `memory`")
            cross = None if cache is None else cache.setdefault("cross", {})
            x = x + self.cross(self.norm_cross(x), memory, cache=cross)
        return x + self.mlp(self.norm2(x))


def encoder_layer_step(layer: nn.TransformerEncoderLayer, x: Tensor, cache: dict) -> Tensor:
    """One new position x [B,1,D] through a causal, batch-first, post-LN `nn.TransformerEncoderLayer` in eval
    mode (no dropout), attending to the keys and values of the earlier positions in `cache` (a dict, empty
    at the first position, extended in place) and itself: the layer's output at that position [B,1,D], as the
    full causal forward gives it."""
    if layer.norm_first or not layer.self_attn.batch_first or layer.training:
        raise ValueError("encoder_layer_step takes a batch-first post-LN nn.TransformerEncoderLayer in eval mode")
    attn, (b, _, d) = layer.self_attn, x.shape
    split = lambda y: y.view(b, 1, attn.num_heads, d // attn.num_heads).transpose(1, 2)  # noqa: E731  [B,h,1,d/h]
    q, k, v = map(split, F.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, -1))
    if "k" in cache:
        k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)  # [B,h,T,d/h]
    cache.update(k=k, v=v)
    y = attn.out_proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, 1, d))  # [B,1,D]
    x = layer.norm1(x + y)
    return layer.norm2(x + layer.linear2(layer.activation(layer.linear1(x))))
