"""Table 4's "GENv2 + scene variable" (SRI §5.4): GENESIS-v2 "leaving all else ... the same", except that its
autoregressive slot prior (its own LSTM(4F) and tanh / sigmoid heads, `AutoregressivePrior`) is conditioned on a
scene variable s ~ q(s | x) through its first input GELU(W_s s), as SRI's prior is (Eq. 2); s is inferred from
GENESIS-v2's own (IC-SBP ordered) posterior samples as SRI's Relate stage does. No order alignment, no rollout,
no cross-order KL: it isolates the scene variable from SRI's learned order.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from common.hub import HubModel
from common.models.genesis_v2 import AutoregressivePrior, GenesisV2, GenesisV2Config
from common.output import ModelOutput
from common.prob import DiagonalGaussian, GECOMultiplicativeKL
from common.prob.likelihood import HALF_LOG_2PI, gaussian_log_density
from papers.sri.model import SceneEncoder, initialise


def _independent() -> GenesisV2Config:
    return GenesisV2Config(prior="independent")


@dataclass
class GenesisV2SceneConfig:
    """GENv2-MoG on ShapeStacks (Table 4) with SRI's |s| = 128 and L = 3. `genesis_v2` gives the encoder,
    decoder, likelihood and GECO (set its prior to independent: this model owns the scene-conditioned one,
    GENESIS-v2's LSTM(4F) = 256 units at F = 64); `relate_values` and `init` are SRI's, for Relate (Eq. 30,
    App. A.4.1)."""

    genesis_v2: GenesisV2Config = field(default_factory=_independent)
    scene_dim: int = 128
    relate_layers: int = 3
    relate_values: str = "paper"  # SRI's Relate (Eq. 30), or "official" (SRIConfig.relate_values)
    init: str = "xavier"


class GenesisV2Scene(HubModel, paper_url="https://github.com/pemami4911/segregate-relate-imagine"):
    config_class = GenesisV2SceneConfig

    def __init__(self, config: GenesisV2SceneConfig):
        super().__init__()
        self.config = c = config
        if c.genesis_v2.prior != "independent":
            raise ValueError("GENv2 + scene variable replaces GENESIS-v2's prior: set genesis_v2.prior: independent")
        self.genesis = GenesisV2(c.genesis_v2)  # encoder, decoder, likelihood; its GECO balances the whole loss
        z = c.genesis_v2.feat_dim
        self.relate = SceneEncoder(z, c.scene_dim, c.relate_layers, c.relate_values)
        self.prior = AutoregressivePrior(z, c.scene_dim)  # GENESIS-v2's, conditioned on s; its own initialisation
        initialise(self.relate, c.init)

    @property
    def num_slots(self) -> int:
        return self.genesis.num_slots

    def terms(self, images: Tensor) -> dict[str, Tensor]:
        """GENESIS-v2's pass with the scene-conditioned prior: per image [B] the NLL, the single-sample slot
        KL log q(z | x) - log p(z | z_<k, s) (GENESIS-v2's estimator) and the analytic scene KL."""
        g = self.genesis
        post = g.encode(images)
        z = post["mean"] + post["std"] * torch.randn_like(post["std"])  # [B,K,F] in IC-SBP order
        rgb, log_m = g.decode(z)
        q_s = self.relate(z.detach().float())  # Relate on the posterior samples, as SRI (§4.1, Eq. 5)
        s = q_s.rsample()  # [B,s]
        p_mean, p_std = self.prior(z.float(), s)  # [B,K,F]: p(z_k | z_<k, s)
        log_q = gaussian_log_density(z.float(), post["mean"].float(), post["std"].float(), normalised=True)
        log_p = gaussian_log_density(z.float(), p_mean, p_std, normalised=True)
        return {"z": z, "rgb": rgb, "log_masks": log_m, "nll": g.nll(images, rgb, log_m),
                "slot_kl": (log_q - log_p).flatten(1).sum(1),
                "scene_kl": q_s.kl(DiagonalGaussian.standard(q_s.mean)).sum(1)}

    def forward(self, images: Tensor, step: int | None = None) -> ModelOutput:
        t = self.terms(images)
        err, slot_kl, scene_kl = t["nll"].mean(), t["slot_kl"].mean(), t["scene_kl"].mean()
        kl = slot_kl + scene_kl
        geco = self.genesis.geco
        loss = err + kl if geco is None else geco.loss(err, kl)
        masks = t["log_masks"].exp()
        logs = {"err": err.detach(), "kl": kl.detach(), "slot_kl": slot_kl.detach(), "scene_kl": scene_kl.detach()}
        if isinstance(geco, GECOMultiplicativeKL):
            logs["geco_beta"] = geco.beta.detach()
        return ModelOutput(loss=loss, recon=(masks * t["rgb"]).sum(1), masks=masks, slots=t["z"], logs=logs)

    def after_step(self, out: ModelOutput, ok: Tensor | bool = True) -> None:
        self.genesis.after_step(out, ok)  # GECO from the batch-mean error

    @torch.no_grad()
    def negative_elbo(self, images: Tensor) -> Tensor:
        """Single-sample -ELBO per image [B] in nats under the normalised density (Table 4's bits/dim)."""
        t = self.terms(images)
        constant = 0.0 if self.config.genesis_v2.normalised else HALF_LOG_2PI * images[0].numel()
        return t["nll"] + constant + t["slot_kl"] + t["scene_kl"]

    @torch.no_grad()
    def encoder_masks(self, images: Tensor) -> Tensor:
        return self.genesis.encoder_masks(images)

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """s ~ N(0, tau^2 I), then the prior's rollout with every std scaled by tau, decoded."""
        device = self.prior.lstm.weight_ih_l0.device
        s = temperature * torch.randn(n, self.config.scene_dim, generator=generator, device=device)
        z = self.prior.sample(n, self.num_slots, self.config.genesis_v2.feat_dim, temperature, generator, device, s)
        rgb, log_m = self.genesis.decode(z)
        masks = log_m.exp()
        return {"images": (masks * rgb).sum(1), "masks": masks, "slots": z}
