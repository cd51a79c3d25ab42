"""Segregate-Relate-Imagine (Emami et al.): a scene variable s and an autoregressive slot prior
p(z_pi | s) on top of a segregation backbone's orderless slot posterior, whose learned generation order
is imposed on inference by matching (`../shared/seeds/sri.txt` §3-4, App. A.1-A.4).

Beyond the paper, the official code's choices come from `../shared/reference/implementation-checked.md` §5
("checked 5.1"); where the two disagree the paper is the default and a config switch gives the code's.
Every deviation is listed in papers/sri/README.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import Tensor, nn

from common.hub import HubModel
from common.matching import greedy_matching, hungarian_permutation, pairwise_distance
from common.models.genesis_v2 import GenesisV2, GenesisV2Config
from common.models.segregation import OnBackbone, Segregation, fresh_copy
from common.nn.slot_lstm import SlotLSTM
from common.output import ModelOutput
from common.prob import DiagonalGaussian, geco_for
from papers.emorl.model import EfficientMORL, EMORLConfig
from papers.sri.slot_order import OrderedSlotAttention, SlotOrderConfig


def _sri_genesis() -> GenesisV2Config:
    """GENv2-MoG as SRI trains it (App. A.4): the slot-wise independent prior, GECO step 1e-6."""
    return GenesisV2Config(prior="independent", geco_step=1e-6)


@dataclass
class SRIConfig:
    """Defaults: SRI-MoG on ShapeStacks (§5, App. A.4): GENv2-MoG backbone with K = 9, |z| = 64,
    |s| = 128, L = 3, LSTMs of 256 units, GECO goal 0.5655 per pixel-channel with step 1e-6, speed-up 10."""

    # genesis_v2: Segregate with GENv2 (SRI-G, SRI-MoG); emorl: SRI-EMORL (CLEVR6); slot_attention: SRI-SA*
    # (Table 1), an ordered Slot Attention posterior with GENv2's decoder and likelihood, no alignment
    backbone: Literal["genesis_v2", "emorl", "slot_attention"] = "genesis_v2"
    genesis_v2: GenesisV2Config = field(default_factory=_sri_genesis)
    emorl: EMORLConfig | None = None  # SRI-EMORL: EMORL with I = 2
    slot_attention: SlotOrderConfig | None = None  # SRI-SA*'s encoder (defaults when None)
    scene_dim: int = 128  # |s|
    hidden: int = 256  # LSTM units of the prior and the posterior (App. A.4.1)
    relate_layers: int = 3  # L set-embedding layers (Eqs. 30-31)
    relate_values: Literal["paper", "official"] = "paper"  # W_v [z_j; z_i - z_j] (Eq. 30), or MLP [z_i; z_i - z_j]
    # Table 3's ablations: a) scene_variable false, b) order_alignment false (no cross-order KL either),
    # c) cross_order_kl false
    scene_variable: bool = True
    order_alignment: bool = True
    cross_order_kl: bool = True
    matching: Literal["greedy", "hungarian"] = "greedy"  # Algorithm 1, or Munkres (§4.2's alternative)
    match_on: Literal["means", "samples"] = "means"  # rollout means (Algorithm 1, official), or samples z_pi
    decoder: Literal["shared", "separate"] = "shared"  # §4.3 "the same SBD decoder"; official: own weights
    # App. A.4.1: Xavier on SRI's own layers (Relate, LSTMs); official: Xavier-normal gain 0.02 on its Linear layers
    init: Literal["xavier", "official"] = "xavier"
    geco: Literal["genesis", "emorl", "none"] = "genesis"  # the backbone's GECO flavour (App. A.4.2)
    geco_goal: float = 0.5655  # per pixel-channel, the backbone likelihood's convention
    geco_step: float = 1e-6
    # none: 1e-6 as App. A.4.2 states it; genesis: x 64^2 / (H W) as the official code (both GECOs of a GENv2 backbone)
    geco_step_scaling: Literal["none", "genesis"] = "none"
    geco_alpha: float = 0.99
    geco_speedup: float = 10.0
    geco_warm_start: int = 1000  # EMORL flavour only
    geco_floor: float = 0.55  # EMORL flavour only


class SceneEncoder(nn.Module):
    """Relate (§4.1, App. A.4.1): L residual set-attention layers (Eqs. 30-31) without positional
    encoding, a DeepSets MLP with sum pooling, and linear heads of q(s | f_phi(z_o)) (Eq. 5)."""

    def __init__(self, z: int, s: int, layers: int, values: str = "paper"):
        super().__init__()
        self.layers = nn.ModuleList(RelateLayer(z, values) for _ in range(layers))
        self.pool = nn.Sequential(nn.Linear(z, s), nn.GELU())  # checked 5.1: sum -> Linear(64,128) + GELU
        self.mean, self.pre_var = nn.Linear(s, s), nn.Linear(s, s)

    def forward(self, z_o: Tensor) -> DiagonalGaussian:
        """z_o [B,K,z] in any slot order -> q(s | x) with mean, var [B,s]; invariant to the order."""
        for layer in self.layers:
            z_o = layer(z_o)
        h = self.pool(z_o.sum(1))  # [B,s]
        return DiagonalGaussian.from_params(self.mean(h), self.pre_var(h))


class RelateLayer(nn.Module):
    """Eq. 30: alpha = softmax((z W_k)(z W_q)^T / sqrt(z)), z^_i = sum_j alpha_ij W_v^T [z_j; z_i - z_j] with
    W_v in R^{2z x z}; Eq. 31: z'_i = z_i + MLP(LayerNorm(z_i + z^_i)), GELU in the MLP (App. A.4.1).
    `values="official"`: the official code's MLP(Linear, GELU, Linear) on [z_i; z_i - z_j] instead (checked 5.1)."""

    def __init__(self, z: int, values: str = "paper"):
        super().__init__()
        if values not in ("paper", "official"):
            raise ValueError(f"unknown relate_values {values!r} (choose from paper, official)")
        self.values, self.scale = values, z ** -0.5
        self.w_k, self.w_q = nn.Linear(z, z, bias=False), nn.Linear(z, z, bias=False)
        self.w_v = (nn.Linear(2 * z, z, bias=False) if values == "paper"
                    else nn.Sequential(nn.Linear(2 * z, z), nn.GELU(), nn.Linear(z, z)))
        self.norm = nn.LayerNorm(z)
        self.mlp = nn.Sequential(nn.Linear(z, z), nn.GELU(), nn.Linear(z, z))

    def forward(self, z: Tensor) -> Tensor:
        k = z.shape[1]
        logits = self.w_q(z) @ self.w_k(z).transpose(1, 2) * self.scale  # [B,K,K], row i: query of slot i
        alpha = logits.softmax(-1)
        z_i, z_j = z.unsqueeze(2).expand(-1, -1, k, -1), z.unsqueeze(1).expand(-1, k, -1, -1)  # [B,K,K,z]
        first = z_j if self.values == "paper" else z_i
        v = self.w_v(torch.cat([first, z_i - z_j], -1))  # [B,K,K,z]: message from j to i
        z_hat = (alpha.unsqueeze(-1) * v).sum(2)  # [B,K,z]
        return z + self.mlp(self.norm(z + z_hat))


def initialise(module: nn.Module, scheme: str) -> None:
    """App. A.4.1: Xavier (uniform, gain 1) on every Linear and LSTM weight, zero biases; `official`:
    Xavier-normal with gain 0.02 on Linear layers only, zero biases, LSTMs left at PyTorch's default
    (checked 5.1)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            if scheme == "xavier":
                nn.init.xavier_uniform_(m.weight)
            else:
                nn.init.xavier_normal_(m.weight, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LSTM) and scheme == "xavier":
            for name, p in m.named_parameters():
                if name.startswith("weight"):
                    nn.init.xavier_uniform_(p)
                else:
                    nn.init.zeros_(p)


def _build_backbone(c: SRIConfig) -> nn.Module:
    if c.backbone == "slot_attention":
        if c.order_alignment or c.decoder == "separate":
            raise ValueError("SRI-SA* orders slots by its encoder and decodes with its one decoder (Table 1): "
                             "set order_alignment: false, cross_order_kl: false, decoder: shared")
        return OrderedSlotAttention(c.genesis_v2, c.slot_attention or SlotOrderConfig())
    if c.backbone == "genesis_v2":
        if c.genesis_v2.prior != "independent":
            raise ValueError("SRI trains GENESIS-v2 with the slot-wise independent prior (App. A.4.1): "
                             "set genesis_v2.prior: independent")
        return GenesisV2(c.genesis_v2)
    if c.emorl is None:
        raise ValueError("backbone emorl needs an `emorl` config (EMORLConfig)")
    return EfficientMORL(c.emorl)


class SRI(OnBackbone, HubModel, paper_url="https://github.com/pemami4911/segregate-relate-imagine"):
    """The scene-slot generative model (Eqs. 1-4) trained with SRI inference (Algorithm 2) and
    L = L_seg + L_SRI (Eqs. 11-12). forward(images) -> ModelOutput of the aligned posterior's decoding."""

    config_class = SRIConfig
    citation = """@misc{emami2023sri,
  title={Towards Improving the Generation Quality of Autoregressive Slot VAEs},
  author={Emami, Patrick and He, Pan and Ranka, Sanjay and Rangarajan, Anand},
  note={Code: https://github.com/pemami4911/segregate-relate-imagine}}"""

    def __init__(self, config: SRIConfig):
        super().__init__()
        # the backbone's GECO takes SRI's step scaling, and the saved config says so
        self.config = c = replace(config, genesis_v2=replace(config.genesis_v2,
                                                             geco_step_scaling=config.geco_step_scaling))
        if not c.order_alignment and c.cross_order_kl:
            raise ValueError("cross_order_kl needs order_alignment (Table 3b removes both)")
        self.backbone = _build_backbone(c)
        z, s = self.backbone.slot_dim, c.scene_dim
        self.relate = SceneEncoder(z, s, c.relate_layers, c.relate_values) if c.scene_variable else None
        s = s if c.scene_variable else None
        self.prior = SlotLSTM(z, s, c.hidden, ("mean", "pre_var"))  # LSTM_theta
        self.posterior = None if self.ordered else SlotLSTM(z, s, c.hidden, ("pre_var",))  # LSTM_phi
        for module in (self.relate, self.prior, self.posterior):
            if module is not None:
                initialise(module, c.init)
        # the official code's own SBD: same architecture, its own weights
        self.decoder = fresh_copy(self.backbone.decoder) if c.decoder == "separate" else None
        self.geco = geco_for(c.geco, c.geco_goal, self.backbone.config.resolution, c.geco_step, c.geco_alpha,
                             c.geco_speedup, c.geco_floor, c.geco_warm_start, c.geco_step_scaling)  # L_SRI's (A.4.2)

    @property
    def num_slots(self) -> int:
        return self.backbone.num_slots

    @property
    def ordered(self) -> bool:
        """SRI-SA*: the backbone's posterior is already in generation order and is the slot posterior."""
        return self.config.backbone == "slot_attention"

    # -- the generative model ---------------------------------------------------------------------
    def decode(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """z [B,K,z] -> RGB [B,K,3,H,W], log masks [B,K,1,H,W] (softmax over K, §3) with SRI's decoder."""
        return self.backbone.decode(z, decoder=self.decoder)

    def slot_prior(self, s: Tensor | None, z: Tensor) -> DiagonalGaussian:
        """Eq. 2 teacher-forced on z [B,K,z]: p(z_k | z_<k, s) [B,K,z]; without a scene variable
        (Table 3a) p(z_1) = N(0, I)."""
        return self.prior.conditionals(s, z)

    def match(self, rollout: Tensor, mu_o: Tensor) -> Tensor:
        """Algorithm 1 (or Hungarian): perm [B,K] with perm[b, i] the segregation slot put at position i."""
        cost = pairwise_distance(rollout.detach(), mu_o)  # [B,K,K]
        return greedy_matching(cost) if self.config.matching == "greedy" else hungarian_permutation(cost)

    # -- inference (Algorithm 2) ------------------------------------------------------------------
    def infer(self, images: Tensor, step: int | None = None) -> dict:
        """Segregate, Relate, Imagine. No gradient reaches the segregation means and samples (§4.2)."""
        c, k = self.config, self.num_slots
        seg: Segregation = self.backbone.segregate(images, step)
        if self.ordered:
            return self._infer_ordered(seg)
        mu_o, z_o = seg.mean.detach().float(), seg.sample.detach().float()  # [B,K,z], order o
        q_s = self.relate(z_o) if self.relate is not None else None  # Relate: q(s | x), Eq. 5
        s = q_s.rsample() if q_s is not None else None  # [B,s]
        perm = torch.arange(k, device=images.device).expand(len(images), k)
        z_pi = rollout = None
        if c.order_alignment:  # Imagine: rollout (Eq. 6), matching, permuted means
            z_pi, rollout = self.prior.rollout(s, k, standard_first=s is None, batch=len(images))
            perm = self.match(rollout.mean if c.match_on == "means" else z_pi, mu_o)
        mu = mu_o.gather(1, perm.unsqueeze(-1).expand_as(mu_o))  # [B,K,z] mu_pi^
        q_z = DiagonalGaussian.from_params(mu, self.posterior(s, mu)["pre_var"])  # Eq. 7, Algorithm 2 l. 8-10
        z = q_z.rsample()  # [B,K,z]
        return {"segregation": seg, "q_s": q_s, "s": s, "perm": perm, "q_z": q_z, "z": z, "rollout": rollout,
                "z_pi": z_pi, "p_z": self.slot_prior(s, z)}

    def _infer_ordered(self, seg: Segregation) -> dict:
        """SRI-SA* (§5.2): q(z_k | x) is slot k of the encoder, trained by L_SRI through z (no stop-gradient,
        no alignment); q(s | x) relates the same samples."""
        z = seg.sample  # [B,K,z]
        q_s = self.relate(z) if self.relate is not None else None
        s = q_s.rsample() if q_s is not None else None
        perm = torch.arange(self.num_slots, device=z.device).expand(len(z), -1)
        return {"segregation": seg, "q_s": q_s, "s": s, "perm": perm, "q_z": DiagonalGaussian(seg.mean, seg.std**2),
                "z": z, "rollout": None, "z_pi": None, "p_z": self.slot_prior(s, z)}

    def kl_terms(self, t: dict) -> dict[str, Tensor]:
        """Per image [B], analytic (checked 5.1): scene KL (Eq. 10), slot KL (Eqs. 22-23, the prior
        teacher-forced on the posterior's samples), cross-order KL (Eq. 8, against the free-running rollout)."""
        q_z, zero = t["q_z"], t["z"].new_zeros(len(t["z"]))
        scene = t["q_s"].kl(DiagonalGaussian.standard(t["q_s"].mean)).sum(1) if t["q_s"] is not None else zero
        slot = q_z.kl(t["p_z"]).flatten(1).sum(1)
        cross = q_z.kl(t["rollout"]).flatten(1).sum(1) if self.config.cross_order_kl else zero
        return {"scene_kl": scene, "slot_kl": slot, "cross_order_kl": cross}

    def sri_loss(self, images: Tensor, t: dict) -> tuple[Tensor, Tensor, Tensor, dict]:
        """L_SRI (Eq. 11) of an inference `t` under its own GECO (App. A.4.2) on the batch means: the loss,
        the decoding (RGB [B,K,3,H,W], log masks [B,K,1,H,W]) of the aligned posterior sample, and logs."""
        rgb, log_m = self.decode(t["z"])
        err = self.backbone.nll(images, rgb, log_m).mean()  # Eq. 9 with the backbone's likelihood (Eqs. 3-4)
        kls = {name: v.mean() for name, v in self.kl_terms(t).items()}
        kl = sum(kls.values())
        loss = err + kl if self.geco is None else self.geco.loss(err, kl)
        logs = {"err": err.detach(), **{n: v.detach() for n, v in kls.items()}}
        logs.update(self.geco_logs())
        return loss, rgb, log_m, logs

    def forward(self, images: Tensor, step: int | None = None) -> ModelOutput:
        """L = L_seg + L_SRI (Eq. 12); recon and masks of the aligned posterior, slots its means in order."""
        t = self.infer(images, step)
        loss, rgb, log_m, logs = self.sri_loss(images, t)
        seg = t["segregation"].output
        masks = log_m.exp()
        logs.update({f"seg_{n}": v for n, v in seg.logs.items()})
        return ModelOutput(loss=seg.loss + loss, recon=(masks * rgb).sum(1), masks=masks, slots=t["q_z"].mean,
                           logs=logs)

    # -- evaluation -------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None,
               num_slots: int | None = None) -> dict[str, Tensor]:
        """s ~ N(0, tau^2 I), then the slot prior's rollout with every std scaled by tau (Fig. 13), decoded:
        images [n,3,H,W], masks [n,K,1,H,W] and slots [n,K,z] in generation order. `num_slots` rolls out
        another K than training used (Fig. 12)."""
        device = self.prior.lstm.weight_ih_l0.device
        s = None
        if self.config.scene_variable:
            s = temperature * torch.randn(n, self.config.scene_dim, generator=generator, device=device)
        z, _ = self.prior.rollout(s, num_slots or self.num_slots, temperature, standard_first=s is None, batch=n,
                                  generator=generator)
        rgb, log_m = self.decode(z)
        masks = log_m.exp()
        return {"images": (masks * rgb).sum(1), "masks": masks, "slots": z}
