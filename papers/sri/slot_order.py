"""SRI-SA*'s encoder (SRI §5.2, Table 1): Slot Attention with K learned per-slot initialisations (mu_k,
sigma_k^2), loosely after SloTTAr, meant to learn a left-to-right *ordered* posterior q(z_pi_1:K | x) in
one step instead of Segregate-Relate-Imagine. "We map each slot to a mean and variance with a linear layer
during inference. All else about the SRI-SA* model is the same as SRI-MoG": the decoder and likelihood are
GENESIS-v2's (`common.models.genesis_v2`), and the model trains on L_SRI alone, without the cross-order KL.

It offers the segregation interface (`common.models.segregation`) so that SRI uses it as a backbone; its
slot order *is* the generation order, so SRI neither aligns it nor stops its gradient.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from common.models.genesis_v2 import GenesisV2Config, broadcast_decoder, decode_slots, slot_nll
from common.models.segregation import Segregation
from common.nn import SlotAttention, SlotFeatures
from common.output import ModelOutput
from common.prob import DiagonalGaussian


@dataclass
class SlotOrderConfig:
    """The paper gives no sizes for the modified encoder; ours are Slot Attention's own (Locatello et al.
    2020: four 5x5 convolutions of 64 channels at full resolution, 3 iterations, MLP 128)."""

    encoder_channels: tuple[int, ...] = (64, 64, 64, 64)
    iters: int = 3
    mlp_hidden: int = 128


class OrderedSlotAttention(nn.Module):
    """q(z_k | x) = N(mu_k, sigma_k^2) from slot k of Slot Attention with per-slot inits; decode and nll as
    GENESIS-v2 with `config` (resolution, K, |z|, likelihood); `encoder` sizes the Slot Attention side."""

    def __init__(self, config: GenesisV2Config, encoder: SlotOrderConfig):
        super().__init__()
        self.config, self.encoder_config = config, encoder
        width, z = encoder.encoder_channels[-1], config.feat_dim
        self.features = SlotFeatures(config.resolution, encoder.encoder_channels)
        self.slot_attention = SlotAttention(width, z, encoder.iters, encoder.mlp_hidden, num_inits=config.num_slots)
        self.head = nn.Linear(z, 2 * z)  # "a linear layer" to the mean and variance
        self.decoder = broadcast_decoder(config)

    @property
    def num_slots(self) -> int:
        return self.config.num_slots

    @property
    def slot_dim(self) -> int:
        return self.config.feat_dim

    def posterior(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """images [B,3,H,W] in [0,1] -> mean, std [B,K,z] in slot order, attention [B,HW,K]."""
        slots, attn = self.slot_attention(self.features(images), self.num_slots)  # [B,K,z], [B,HW,K]
        q = DiagonalGaussian.from_params(*self.head(slots).chunk(2, -1))  # variance as SRI's posteriors
        return q.mean, q.std, attn  # [B,K,z], [B,K,z], [B,HW,K]

    def segregate(self, images: Tensor, step: int | None = None) -> Segregation:
        """The ordered posterior and one reparameterised sample. No loss of its own: L_SRI trains it."""
        mean, std, attn = self.posterior(images)
        h, w = images.shape[2:]
        masks = attn.transpose(1, 2).reshape(len(images), self.num_slots, 1, h, w)  # [B,K,1,H,W]
        out = ModelOutput(loss=images.new_zeros(()), recon=None, masks=masks, slots=mean)  # recon: none decoded
        return Segregation(mean, std, mean + std * torch.randn_like(std), out)

    @torch.no_grad()
    def encoder_masks(self, images: Tensor) -> Tensor:
        """Slot Attention's last attention [B,K,1,H,W] (sums to 1 over K at each pixel)."""
        return self.segregate(images).output.masks

    def decode(self, z: Tensor, decoder: nn.Module | None = None) -> tuple[Tensor, Tensor]:
        """z [B,K,z] -> RGB [B,K,3,H,W], log masks [B,K,1,H,W], GENESIS-v2's decoder."""
        return decode_slots(self.decoder if decoder is None else decoder, z)

    def nll(self, images: Tensor, rgb: Tensor, log_masks: Tensor) -> Tensor:
        """Per image [B]: GENESIS-v2's likelihood (MoG for SRI-MoG's setting)."""
        return slot_nll(self.config, images, rgb, log_masks)

    def after_step(self, out: ModelOutput, ok: Tensor | bool = True) -> None:
        """No training state of its own (SRI's GECO is the only one)."""
