"""Semantic Vector Quantization (SVQ; Wu, Lee and Ahn, `../shared/seeds/svq.txt` §3, App. B): block slot attention
(SysBinder) whose M blocks per slot snap to the prototypes of M shared codebooks after every iteration, a
transformer decoder that reads the quantised blocks by cross-attention and predicts a jointly trained dVAE's tokens
autoregressively, and the dVAE's decoder for images. Loss: the dVAE's MSE + the tokens' cross-entropy + beta x the
commitment (beta = 50); codebooks by EMA with dead-code restarts (papers/svq/quantiser.py).

Beyond the paper, the official code's details come from `implementation-checked.md` §7.1 ("checked 7.1");
every deviation is listed in papers/svq/README.md. `quantise: false` is SysBinder (Singh et al. 2023), SVQ's
parent without quantisation (issue 18's baseline).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.hub import HubModel
from common.models.dvae import DVAE, gumbel_temperature
from common.nn import ConvEncoder, PositionEmbed, SlotAttention, TransformerBlock, flatten_spatial
from common.output import ModelOutput
from papers.svq.blocks import BlockGRU, BlockLayerNorm, BlockLinear, BlockMLP
from papers.svq.quantiser import BlockCodebooks


CITATION = """@article{wu2023svq,
  title={Object-Centric Semantic Vector Quantization},
  author={Wu, Yi-Fu and Lee, Minseung and Ahn, Sungjin}, journal={arXiv preprint arXiv:2308.00390}, year={2023}}"""


@dataclass
class SVQConfig:
    """Defaults: 2D Sprites (Table 6): 64 px, 6 slots, M = 8 blocks of d_c = 256, 64 codes per block, 3 iterations,
    beta 50, encoder lr 1e-4 (train.lr); the dVAE and decoder as SysBinder's CLEVR-Easy (App. B.2, checked 7.1):
    vocabulary 4096, CNN 512, d 192, 8 decoder layers of 4 heads, dropout 0.1, dVAE lr 3e-4, decoder lr 3e-4."""

    resolution: tuple[int, int] = (64, 64)
    num_slots: int = 6
    blocks: int = 8  # M
    block_dim: int = 256  # d_c, Table 6's "codebook dimension"; d_s = M d_c
    codebook_size: int = 64  # K prototypes per block
    iters: int = 3
    quantise: bool = True  # False: SysBinder
    beta: float = 50.0  # commitment weight
    vq_decay: float = 0.99
    vq_threshold: float = 1.0  # dead below this smoothed usage (EMA assignments per call)
    cnn_hidden: int = 512
    feature_dim: int = 192  # d_F, slot attention's input
    mlp_hidden: int = 192  # the block MLP's hidden units over all blocks (mlp_hidden / M per block)
    vocab: int = 4096  # dVAE tokens
    dvae_hidden: int = 64
    d_model: int = 192
    decoder_layers: int = 8
    heads: int = 4
    dropout: float = 0.1
    tau_start: float = 1.0  # Gumbel-softmax temperature, cosine to tau_final over tau_steps
    tau_final: float = 0.1
    tau_steps: int = 30_000
    lr_dvae: float = 3e-4  # constant
    lr_decoder: float = 3e-4  # on the schedule, as the encoder's train.lr

    @property
    def slot_dim(self) -> int:
        return self.blocks * self.block_dim

    @property
    def tokens(self) -> int:
        """(H/4) x (W/4) dVAE tokens per image."""
        return (self.resolution[0] // 4) * (self.resolution[1] // 4)


class ImageEncoder(nn.Module):
    """Four 5x5 convs (3 -> C, stride 2 at 128 px; C -> C; C -> C; C -> d_F, the last linear), a position
    embedding of the (x, y, 1-x, 1-y) grid added, LayerNorm + MLP per position (checked 7.1): a 64x64 map of
    inputs for 64 or 128 px images."""

    def __init__(self, c: SVQConfig):
        super().__init__()
        stride = 2 if c.resolution[0] > 64 else 1
        self.cnn = ConvEncoder(3, (c.cnn_hidden, c.cnn_hidden, c.cnn_hidden, c.feature_dim), kernel_size=5,
                               strides=(stride, 1, 1, 1), last_act=False)
        convs = [m for m in self.cnn if isinstance(m, nn.Conv2d)]
        for layer in convs:
            nn.init.zeros_(layer.bias)
            if layer is convs[-1]:
                nn.init.xavier_uniform_(layer.weight)
            else:
                nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
        self.grid = (c.resolution[0] // stride, c.resolution[1] // stride)  # the input map slot attention reads
        self.position = PositionEmbed(c.feature_dim, *self.grid, mode="add")
        self.mlp = nn.Sequential(nn.LayerNorm(c.feature_dim), nn.Linear(c.feature_dim, c.feature_dim), nn.ReLU(),
                                 nn.Linear(c.feature_dim, c.feature_dim))

    def forward(self, images: Tensor) -> Tensor:
        """images [B,3,H,W] in [0,1] -> inputs [B,hw,d_F]."""
        return self.mlp(flatten_spatial(self.position(self.cnn(images))))


class BlockSlotAttention(SlotAttention):
    """SysBinder's block slot attention (SVQ §3): dense k, q, v and slot LayerNorm, block-wise GRU, LayerNorm and
    residual MLP; with codebooks, each block quantised after every iteration, the quantised slots feeding the
    next (checked 7.1). Returns the slots, the last attention, the last iteration's indices and commitment."""

    def __init__(self, c: SVQConfig, codebooks: BlockCodebooks | None):
        d = c.slot_dim
        super().__init__(c.feature_dim, d, c.iters, gru=BlockGRU(d, c.blocks), mlp=BlockMLP(d, c.mlp_hidden, c.blocks),
                         norm_mlp=BlockLayerNorm(c.blocks))
        self.blocks, self.codebooks = c.blocks, codebooks

    def forward(self, inputs: Tensor, num_slots: int, noise: Tensor | None = None) -> dict[str, Tensor | None]:
        k, v = self.keys_values(self.norm_inputs(inputs))  # the inputs themselves: d_s > d_F folds (common.nn)
        slots = self.init_slots(inputs.shape[0], num_slots, noise)  # [B,N,d_s]
        indices = commitment = None
        for _ in range(self.iters):
            slots, attn = self.step(slots, k, v)
            if self.codebooks is not None:
                z_q, indices, commitment = self.codebooks(slots.unflatten(-1, (self.blocks, -1)))  # [B,N,M,dc]
                slots = z_q.flatten(-2)  # [B,N,d_s]
        return {"slots": slots, "attn": attn, "indices": indices, "commitment": commitment}


class BlockCoupler(nn.Module):
    """Slots [B,N,d_s] -> cross-attention memory [B,N*M,d], slot-major: each block projected to d by its own
    weights, the blocks of each slot through a one-layer transformer (dropout 0), then a learned block
    position added (§3: "let the blocks within a slot interact ... and then add a block-level positional
    encoding"), and a final LayerNorm."""

    def __init__(self, c: SVQConfig):
        super().__init__()
        self.blocks = c.blocks
        self.project = BlockLinear(c.slot_dim, c.blocks * c.d_model, c.blocks)
        self.coupler = TransformerBlock(c.d_model, c.heads)
        self.position = nn.Parameter(torch.zeros(c.blocks, c.d_model))
        self.norm = nn.LayerNorm(c.d_model)

    def forward(self, slots: Tensor) -> Tensor:
        b, n, _ = slots.shape
        x = self.project(slots).view(b * n, self.blocks, -1)  # [B*N,M,d]
        x = self.coupler(x) + self.position  # [B*N,M,d]
        return self.norm(x.reshape(b, n * self.blocks, -1))  # [B,N*M,d]


class TokenDecoder(nn.Module):
    """The autoregressive transformer decoder over dVAE tokens (SLATE, SVQ §2.2): [BOS, e(t_1), ..., e(t_{L-1})] +
    learned positions, dropout, pre-LN blocks of causal self-attention, cross-attention to the memory and a 4x
    FFN, a final LayerNorm and Linear(d -> V, no bias): logits of t_1..t_L."""

    def __init__(self, vocab: int, length: int, d: int, layers: int, heads: int, dropout: float):
        super().__init__()
        self.embed = nn.Embedding(vocab + 1, d)  # the last index is BOS
        self.bos = vocab
        self.position = nn.Parameter(nn.init.trunc_normal_(torch.empty(1, length, d)))
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(TransformerBlock(d, heads, dropout=dropout, causal=True, cross_attention=True)
                                    for _ in range(layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)

    def logits(self, inputs: Tensor, memory: Tensor) -> Tensor:
        """input tokens [B,T] (BOS first), memory [B,S,d] -> next-token logits [B,T,V]."""
        x = self.drop(self.embed(inputs) + self.position[:, :inputs.shape[1]])  # [B,T,d]
        for layer in self.layers:
            x = layer(x, memory)
        return self.head(self.norm(x))

    def forward(self, tokens: Tensor, memory: Tensor) -> Tensor:
        """Teacher forcing: tokens [B,L] -> logits [B,L,V], position i predicted from tokens < i."""
        bos = torch.full_like(tokens[:, :1], self.bos)
        return self.logits(torch.cat([bos, tokens[:, :-1]], 1), memory)

    @torch.no_grad()
    def generate(self, memory: Tensor, length: int, cache: bool = True) -> Tensor:
        """Greedy (argmax) decoding of `length` tokens [B,L] given the memory (checked 7.1); with `cache`, each
        step runs only the new position against cached keys and values (the same tokens, tested)."""
        seq = torch.full((len(memory), 1), self.bos, dtype=torch.long, device=memory.device)
        caches = [{} for _ in self.layers] if cache else None
        for t in range(length):
            if caches is None:
                logits = self.logits(seq, memory)[:, -1]  # [B,V], every position recomputed
            else:
                x = self.drop(self.embed(seq[:, -1:]) + self.position[:, t:t + 1])  # [B,1,d]
                for layer, c in zip(self.layers, caches):
                    x = layer(x, memory, cache=c)
                logits = self.head(self.norm(x))[:, -1]  # [B,V]
            seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], 1)
        return seq[:, 1:]


class SVQ(HubModel):
    """forward(images [B,3,H,W] in [0,1], step) -> ModelOutput: loss = MSE + CE + beta commitment; recon the dVAE's
    reconstruction (soft tokens); masks the slots' attention; slots the quantised slots [B,N,d_s]."""

    config_class = SVQConfig
    citation = CITATION

    def __init__(self, config: SVQConfig):
        super().__init__()
        self.config = c = config
        if c.resolution[0] % 4 or c.resolution[1] % 4:
            raise ValueError(f"SVQ's dVAE downsamples by 4: resolution {c.resolution} is not divisible by 4")
        self.dvae = DVAE(c.vocab, c.dvae_hidden)
        self.encoder = ImageEncoder(c)
        codebooks = BlockCodebooks(c.blocks, c.codebook_size, c.block_dim, c.vq_decay, threshold=c.vq_threshold)
        self.slot_attention = BlockSlotAttention(c, codebooks if c.quantise else None)
        self.coupler = BlockCoupler(c)
        self.decoder = TokenDecoder(c.vocab, c.tokens, c.d_model, c.decoder_layers, c.heads, c.dropout)

    @property
    def codebooks(self) -> BlockCodebooks | None:
        return self.slot_attention.codebooks

    def param_groups(self, lr: float) -> list[dict]:
        """Adam groups (checked 7.1): the dVAE at a constant lr_dvae; the encoder at lr and the decoder at
        lr_decoder, both on the schedule (warm-up 30K, half-life 250K from step 0)."""
        c = self.config
        encoder = [*self.encoder.parameters(), *self.slot_attention.parameters()]
        decoder = [*self.coupler.parameters(), *self.decoder.parameters()]
        return [{"params": self.dvae.parameters(), "lr": c.lr_dvae, "scheduled": False},
                {"params": encoder, "lr": lr}, {"params": decoder, "lr": c.lr_decoder}]

    def encode(self, images: Tensor) -> dict[str, Tensor | None]:
        """images [B,3,H,W] -> slots [B,N,d_s] (quantised), attention [B,hw,N], indices [B,N,M], commitment."""
        return self.slot_attention(self.encoder(images), self.config.num_slots)

    def masks(self, attn: Tensor) -> Tensor:
        """Attention [B,hw,N] over the encoder's input map -> masks [B,N,1,H,W] at the image size."""
        b, _, n = attn.shape
        m = attn.transpose(1, 2).reshape(b * n, 1, *self.encoder.grid)
        m = F.interpolate(m, size=self.config.resolution, mode="bilinear", align_corners=False)
        return m.view(b, n, 1, *self.config.resolution)

    def forward(self, images: Tensor, step: int | None = None) -> ModelOutput:
        c = self.config
        tau = gumbel_temperature(step, c.tau_start, c.tau_final, c.tau_steps)
        d = self.dvae(images, tau)
        e = self.encode(images)
        tokens = d["tokens"].flatten(1)  # [B,L]
        logits = self.decoder(tokens, self.coupler(e["slots"]))  # [B,L,V]
        ce = F.cross_entropy(logits.flatten(0, 1).float(), tokens.flatten(), reduction="sum") / len(images)
        commitment = e["commitment"] if e["commitment"] is not None else ce.new_zeros(())
        loss = d["mse"] + ce + c.beta * commitment
        logs = {"mse": d["mse"].detach(), "ce": ce.detach(), "commitment": commitment.detach(), "tau": tau}
        if e["indices"] is not None:
            health = self.codebooks.health(e["indices"])
            logs.update(perplexity=health["perplexity"].mean(), perplexity_min=health["perplexity"].min(),
                        dead_codes=health["dead"].sum().float())
            for m in range(c.blocks):  # codebook health per block (§3), plotted by the evaluation
                logs.update({f"perplexity_{m}": health["perplexity"][m], f"dead_{m}": health["dead"][m].float()})
        return ModelOutput(loss=loss, recon=d["recon"].clamp(0, 1), masks=self.masks(e["attn"]), slots=e["slots"],
                           logs=logs)

    # -- generation ------------------------------------------------------------------------------------
    def slots_from_indices(self, indices: Tensor) -> Tensor:
        """Code indices [B,N,M] -> quantised slots [B,N,d_s]."""
        return self.codebooks.lookup(indices).flatten(-2)

    @torch.no_grad()
    def decode(self, slots: Tensor) -> Tensor:
        """Slots [B,N,d_s] -> images [B,3,H,W] in [0,1]: greedy autoregressive tokens, then the dVAE decoder."""
        h, w = self.config.resolution
        tokens = self.decoder.generate(self.coupler(slots), self.config.tokens)  # [B,L]
        return self.dvae.decode_tokens(tokens.view(-1, h // 4, w // 4))

    @torch.no_grad()
    def reconstruct(self, images: Tensor) -> Tensor:
        """images -> slots -> tokens -> images through the transformer (App. A.1's reconstructions)."""
        return self.decode(self.encode(images)["slots"])
