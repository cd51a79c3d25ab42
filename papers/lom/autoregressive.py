"""LOM App. A.5 Models 7 and 8: the alternative LOM argues against. EMORL with an RNN-based autoregressive slot
prior fitted to EMORL's orderless slot posterior by the KL between them, added to EMORL's ELBO as an auxiliary
loss with the posterior's gradient stopped (Model 7); Model 8 also has a scene latent s that conditions the
prior's first slot, with its own KL to N(0, I). No alignment, no multi-step LOM inference: the prior is
teacher-forced on the posterior's slots in EMORL's own (arbitrary) order, which is why it cannot learn a
coherent order (Fig. 6c).

Choices the paper leaves open (papers/lom/README.md): the RNN is SRI's LSTM(256) slot prior
(`common.nn.SlotLSTM`, both papers by the same authors; p(z_1) = N(0, I) without s), q(s | x) is LOM's g_phi
over the detached orderless means, the scene KL gets LOM's free bits (Eq. 26), the slot KL none.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from common.hub import HubModel
from common.models.segregation import OnBackbone, Segregation
from common.nn.slot_lstm import SlotLSTM
from common.output import ModelOutput
from common.prob import DiagonalGaussian, free_bits
from papers.emorl.model import EfficientMORL, EMORLConfig
from papers.lom.model import SceneEncoder, annealed_free_bits, lom_emorl_config, xavier


@dataclass
class AutoregressiveConfig:
    """Defaults: Model 7 on LOM-EMORL's ShapeStacks EMORL; `scene: true` is Model 8."""

    emorl: EMORLConfig = field(default_factory=lom_emorl_config)
    scene: bool = False  # Model 8: s ~ q(s | x) conditions the first slot
    scene_dim: int = 128  # D_s, as LOM
    scene_blocks: int = 2  # g_phi's residual SA blocks, as Model 0
    hidden: int = 256  # the LSTM's units (SRI's)
    scene_free_bits: float = 0.25  # x D_s, LOM's Eq. 26 on the scene KL ...
    scene_free_bits_final: float = 0.167  # ... annealed to this x D_s
    free_bits_anneal: tuple[int, int] | None = (375_000, 400_000)
    temperature: float = 0.8  # tau for sampling, as every LOM result


class AutoregressiveEMORL(OnBackbone, HubModel):
    """EMORL's ELBO + KL(q(z | x) || p(z_k | z_<k, s)) (+ KL(q(s | x) || N(0, I)) for Model 8), q(z | x) EMORL's
    posterior with its gradient stopped. forward(images) -> EMORL's own output, the prior's KLs in the loss."""

    config_class = AutoregressiveConfig
    geco = None  # EMORL's GECO balances EMORL's ELBO; the auxiliary KLs are added unweighted

    def __init__(self, config: AutoregressiveConfig):
        super().__init__()
        self.config = c = config
        self.backbone = EfficientMORL(c.emorl)
        z = self.backbone.slot_dim
        self.scene_encoder = SceneEncoder(z, c.scene_dim, c.scene_blocks) if c.scene else None  # g_phi
        self.prior = SlotLSTM(z, c.scene_dim if c.scene else None, c.hidden, ("mean", "pre_var"))
        xavier(self.scene_encoder), xavier(self.prior)

    @property
    def num_slots(self) -> int:
        return self.backbone.num_slots

    def decode(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """z [B,K,D_z] -> RGB [B,K,3,H,W], log masks [B,K,1,H,W] with EMORL's own decoder."""
        return self.backbone.decode(z)

    def infer(self, images: Tensor, step: int | None = None) -> dict:
        """EMORL's posterior (detached) and, teacher-forced on its sample in EMORL's slot order, the prior."""
        seg: Segregation = self.backbone.segregate(images, step)
        mean, std, z = seg.mean.detach().float(), seg.std.detach().float(), seg.sample.detach().float()  # [B,K,D_z]
        q_s = self.scene_encoder(mean) if self.scene_encoder is not None else None
        s = q_s.rsample() if q_s is not None else None  # [B,D_s]
        return {"segregation": seg, "q_s": q_s, "s": s, "q_z": DiagonalGaussian(mean, std**2), "z": z,
                "p_z": self.prior.conditionals(s, z)}

    def kl_terms(self, t: dict) -> dict[str, Tensor]:
        """Per image [B]: the slot KL summed over K and D (analytic in z_k, single-sample in z_<k) and the
        scene KL (zero for Model 7)."""
        slot_kl = t["q_z"].kl(t["p_z"]).flatten(1).sum(1)
        q_s = t["q_s"]
        scene_kl = q_s.kl(DiagonalGaussian.standard(q_s.mean)).sum(1) if q_s is not None else torch.zeros_like(slot_kl)
        return {"scene_kl": scene_kl, "slot_kl": slot_kl}

    def scene_free_bits(self, step: int | None) -> float:
        c = self.config
        return annealed_free_bits(c.scene_free_bits * c.scene_dim, c.scene_free_bits_final * c.scene_dim,
                                  c.free_bits_anneal, step)

    def forward(self, images: Tensor, step: int | None = None) -> ModelOutput:
        t = self.infer(images, step)
        kls = self.kl_terms(t)
        aux = kls["slot_kl"].mean() + free_bits(kls["scene_kl"], self.scene_free_bits(step)).mean()
        seg = t["segregation"].output
        logs = {f"seg_{n}": v for n, v in seg.logs.items()}
        logs.update(slot_kl=kls["slot_kl"].mean().detach(), scene_kl=kls["scene_kl"].mean().detach())
        return ModelOutput(loss=seg.loss + aux, recon=seg.recon, masks=seg.masks, slots=seg.slots, logs=logs)

    @torch.no_grad()
    def sample(self, n: int, temperature: float | None = None, generator: torch.Generator | None = None,
               num_slots: int | None = None, s: Tensor | None = None) -> dict[str, Tensor]:
        """s ~ N(0, tau^2 I) unless given [n,D_s] (Model 8), the LSTM's rollout with every std scaled by tau,
        decoded by EMORL. images [n,3,H,W], masks [n,K,1,H,W], slots [n,K,D_z] in generation order."""
        tau = self.config.temperature if temperature is None else temperature
        device = self.prior.lstm.weight_ih_l0.device
        if not self.config.scene:
            s = None
        elif s is None:
            s = tau * torch.randn(n, self.config.scene_dim, generator=generator, device=device)
        z, _ = self.prior.rollout(None if s is None else s.to(device), num_slots or self.num_slots, tau,
                                  standard_first=s is None, batch=n,
                                  generator=generator)
        rgb, log_m = self.decode(z)
        masks = log_m.exp()
        return {"images": (masks * rgb).sum(1), "masks": masks, "slots": z}

