"""Slot Attention autoencoder (Locatello et al. 2020), the baseline of EMORL Table 3 and SVQ's base.

CNN encoder + position embedding -> LN + MLP -> Slot Attention -> per-slot spatial broadcast decoder
-> RGB and mask logits, masks softmax over slots, MSE reconstruction loss. Images enter in [0,1] and
are scaled to [-1,1] as in the original; `recon` is returned in [0,1].
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from common.hub import HubModel
from common.nn import SlotAttention, SlotFeatures, SpatialBroadcastDecoder
from common.nn.decoders import split_rgb_mask
from common.output import ModelOutput


@dataclass
class SlotAttentionConfig:
    """Defaults: the Multi-dSprites/Tetrominoes-sized model (full-resolution broadcast decoder)."""

    resolution: tuple[int, int] = (64, 64)
    num_slots: int = 6
    iters: int = 3
    slot_dim: int = 64
    mlp_hidden: int = 128
    encoder_channels: tuple[int, ...] = (64, 64, 64, 64)
    decoder_broadcast: tuple[int, int] = (64, 64)
    decoder_channels: tuple[int, ...] = (32, 32, 32, 4)
    decoder_kernels: tuple[int, ...] = (5, 5, 5, 3)
    decoder_paddings: tuple[int, ...] = (2, 2, 2, 1)
    decoder_strides: tuple[int, ...] = (1, 1, 1, 1)


class SlotAttentionAutoEncoder(HubModel, paper_url="https://arxiv.org/abs/2006.15055"):
    config_class = SlotAttentionConfig
    citation = """@inproceedings{locatello2020object,
  title={Object-Centric Learning with Slot Attention},
  author={Locatello, Francesco and Weissenborn, Dirk and Unterthiner, Thomas and Mahendran, Aravindh
          and Heigold, Georg and Uszkoreit, Jakob and Dosovitskiy, Alexey and Kipf, Thomas},
  booktitle={NeurIPS}, year={2020}}"""

    def __init__(self, config: SlotAttentionConfig):
        super().__init__()
        self.config = c = config
        h, w = c.resolution
        self.encoder = SlotFeatures((h, w), c.encoder_channels)
        self.slot_attention = SlotAttention(c.encoder_channels[-1], c.slot_dim, c.iters, c.mlp_hidden)
        self.decoder = SpatialBroadcastDecoder(
            c.slot_dim, (h, w), c.decoder_broadcast, c.decoder_channels, c.decoder_kernels,
            c.decoder_paddings, c.decoder_strides, position="add")

    def encode(self, images: Tensor, noise: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """images [B,3,H,W] in [0,1] -> slots [B,K,D], attention [B,HW,K]."""
        return self.slot_attention(self.encoder(images), self.config.num_slots, noise)  # [B,HW,C] inputs

    def decode(self, slots: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """slots [B,K,D] -> recon [B,3,H,W] in [0,1], RGB [B,K,3,H,W], masks [B,K,1,H,W]."""
        out = self.decoder(slots.flatten(0, 1))  # [B*K,4,H,W]
        rgb, mask_logits = split_rgb_mask(out, slots.shape[0])
        masks = mask_logits.softmax(dim=1)  # [B,K,1,H,W]
        recon = (masks * rgb).sum(1)  # [B,3,H,W] in the [-1,1] scale
        return (recon + 1) / 2, (rgb + 1) / 2, masks

    def forward(self, images: Tensor, step: int | None = None, noise: Tensor | None = None) -> ModelOutput:
        slots, attn = self.encode(images, noise)
        recon, _, masks = self.decode(slots)
        loss = F.mse_loss(recon * 2 - 1, images * 2 - 1)
        return ModelOutput(loss=loss, recon=recon, masks=masks, slots=slots, logs={"mse": loss.detach()})

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> Tensor:
        """Not a generative model: slots from the learned init distribution, decoded. [n,3,H,W]."""
        noise = temperature * torch.randn(n, self.config.num_slots, self.config.slot_dim, device=self.slot_attention.mu.device)
        return self.decode(self.slot_attention.init_slots(n, self.config.num_slots, noise))[0]
