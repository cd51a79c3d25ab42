"""SVQ's semantic prior (§3.1, App. B.3): with SVQ frozen, its code indices [N slots, M blocks] flattened slot-major
(token t = n M + m, checked 7.1) with a learned position over all N M positions, and a causal transformer
predicting the code of the next block: 8 layers, 4 heads, d 192, FFN 768, dropout 0.1, trained by the
cross-entropy summed over positions and averaged over the batch (Adam 3e-4, warm-up 30K).

As the official code: block-offset tokens (block m's code k is m K + k, vocabulary M K), a BOS token,
embeddings x sqrt(d) plus the learned position, PyTorch's post-LN `nn.TransformerEncoder` with a causal mask,
ReLU, no final LayerNorm. Where the official softmax covers all M K codes at every position (so a sample can
draw another block's code), ours by default covers only the next block's own K codes (§3.1 "predicting the
discrete code of the next block"); `block_vocab: false` gives the official behaviour.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.hub import HubModel
from common.nn.transformer import encoder_layer_step
from common.output import ModelOutput
from papers.svq.model import CITATION


@dataclass
class PriorConfig:
    num_slots: int = 6  # N, M and K: those of the SVQ whose codes it models
    blocks: int = 8
    codebook_size: int = 64
    d_model: int = 192
    layers: int = 8
    heads: int = 4
    ffn: int = 768
    dropout: float = 0.1
    block_vocab: bool = True  # each position's softmax over its block's K codes only (False: all M K, official)

    @property
    def length(self) -> int:
        return self.num_slots * self.blocks

    @property
    def vocab(self) -> int:
        return self.blocks * self.codebook_size


class SemanticPrior(HubModel):
    """forward(codes [B,N,M] long) -> ModelOutput whose loss is the summed next-code cross-entropy per scene;
    `sample(n, temperature, top_k, generator)` -> codes [n,N,M]."""

    config_class = PriorConfig
    citation = CITATION

    def __init__(self, config: PriorConfig):
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.vocab + 1, c.d_model)  # the last token is BOS
        self.position = nn.Parameter(torch.zeros(1, c.length, c.d_model))
        nn.init.trunc_normal_(self.position, std=0.02)
        self.drop = nn.Dropout(c.dropout)
        layer = nn.TransformerEncoderLayer(c.d_model, c.heads, c.ffn, c.dropout, activation="relu", batch_first=True,
                                           norm_first=False)
        self.transformer = nn.TransformerEncoder(layer, c.layers, enable_nested_tensor=False)
        self.head = nn.Linear(c.d_model, c.vocab)
        block = torch.arange(c.length) % c.blocks  # [NM] the block each position holds
        allowed = block.unsqueeze(1) == torch.arange(c.vocab) // c.codebook_size  # [NM,V]
        self.register_buffer("allowed", allowed, persistent=False)

    def to_tokens(self, codes: Tensor) -> Tensor:
        """codes [B,N,M] (0..K-1 per block) -> block-offset tokens [B,N*M], slot-major."""
        offset = torch.arange(self.config.blocks, device=codes.device) * self.config.codebook_size  # [M]
        return (codes + offset).flatten(1)

    def to_codes(self, tokens: Tensor) -> Tensor:
        """tokens [B,N*M] -> codes [B,N,M], each the token's index within its codebook."""
        return (tokens % self.config.codebook_size).view(len(tokens), self.config.num_slots, self.config.blocks)

    def logits(self, inputs: Tensor) -> Tensor:
        """inputs [B,T] (BOS first, T <= N M) -> logits [B,T,V] of the tokens at positions 0..T-1."""
        c, t = self.config, inputs.shape[1]
        x = self.drop(self.embed(inputs) * math.sqrt(c.d_model) + self.position[:, :t])  # [B,T,d]
        mask = nn.Transformer.generate_square_subsequent_mask(t, device=inputs.device, dtype=x.dtype)
        logits = self.head(self.transformer(x, mask=mask, is_causal=True))  # [B,T,V]
        if c.block_vocab:
            logits = logits.masked_fill(~self.allowed[:t], float("-inf"))
        return logits

    def forward(self, codes: Tensor, step: int | None = None) -> ModelOutput:
        tokens = self.to_tokens(codes)  # [B,NM]
        bos = torch.full_like(tokens[:, :1], self.config.vocab)
        logits = self.logits(torch.cat([bos, tokens[:, :-1]], 1))  # [B,NM,V]
        ce = F.cross_entropy(logits.flatten(0, 1).float(), tokens.flatten(), reduction="sum") / len(codes)
        empty = codes.new_zeros(0).float()
        return ModelOutput(loss=ce, recon=empty, masks=empty, slots=empty, logs={"ce": ce.detach()})

    def next_logits(self, token: Tensor, t: int, caches: list[dict]) -> Tensor:
        """Logits [B,V] of position t from its input token [B,1] (BOS at t = 0), the earlier positions' keys
        and values in `caches` (one dict per layer, extended in place): `logits(inputs)[:, t]` in eval mode."""
        c = self.config
        if self.transformer.norm is not None:
            raise ValueError("next_logits does not apply a final LayerNorm (the prior has none)")
        x = self.embed(token) * math.sqrt(c.d_model) + self.position[:, t:t + 1]  # [B,1,d]
        for layer, cache in zip(self.transformer.layers, caches):
            x = encoder_layer_step(layer, x, cache)
        logits = self.head(x[:, 0])  # [B,V]
        return logits.masked_fill(~self.allowed[t], float("-inf")) if c.block_vocab else logits

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, top_k: int | None = None,
               generator: torch.Generator | None = None, cache: bool = True) -> Tensor:
        """n scenes of codes [n,N,M] by ancestral sampling, logits / temperature, optionally the top k only.
        With `cache`, in eval mode, each position runs alone against cached keys and values (`next_logits`: N M
        positions' work instead of (N M)^2 / 2; the same draws on CPU, tested); otherwise (or in training mode, with
        dropout) the whole prefix runs again at every position."""
        device = self.position.device
        seq = torch.full((n, 1), self.config.vocab, dtype=torch.long, device=device)
        caches = [{} for _ in self.transformer.layers] if cache and not self.training else None
        for t in range(self.config.length):
            logits = self.logits(seq)[:, -1] if caches is None else self.next_logits(seq[:, -1:], t, caches)
            logits = logits.float() / temperature  # [n,V]
            if top_k is not None:
                kth = logits.topk(top_k, dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            nxt = torch.multinomial(logits.softmax(-1), 1, generator=generator)  # [n,1]
            seq = torch.cat([seq, nxt], 1)
        return self.to_codes(seq[:, 1:])
