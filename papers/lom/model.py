"""Latent Object Models (LOM; ICLR 2022 submission, `../shared/seeds/lom.txt`): a scene latent s, a deterministic
causal sequence h_k = f_theta(h_<k, s) and conditionally independent slot priors p(z_k | h_k) (Eqs. 1-3), inferred
through an orderless backbone's posterior, greedy alignment to the prior means and order-aware posterior scales
from a second causal Transformer f'_phi (§3.2 steps 1-5), trained with Eq. 9 under GECO and free bits (App. A.4.2).

No official code exists (implementation-notes §6): every constant the paper leaves open is a choice listed in
papers/lom/README.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.hub import HubModel
from common.matching import greedy_matching, hungarian_permutation, pairwise_distance
from common.models.genesis_v2 import GenesisV2, GenesisV2Config
from common.models.segregation import OnBackbone, Segregation, fresh_copy
from common.output import ModelOutput
from common.prob import DiagonalGaussian, free_bits, geco_for
from papers.emorl.model import EfficientMORL, EMORLConfig


def lom_emorl_config() -> EMORLConfig:
    """EMORL as LOM-EMORL trains it (App. A.4.1-2) on ShapeStacks: I = 2, Gaussian sigma 0.7, K = 9, |z| = 64,
    free bits 0.75 D_z on each KL term, GECO -0.351 per pixel-channel with step 1e-6 and acceleration 50, the
    encoder reading inputs in [-1, 1]."""
    return EMORLConfig(resolution=(64, 64), num_slots=9, slot_dim=64, decoder="iodine", likelihood="gaussian",
                       sigma=0.7, refinement_steps=2, geco_target=-0.351, geco_step=1e-6, geco_acceleration=50.0,
                       free_bits=0.75 * 64, encoder_input="signed")


@dataclass
class LOMConfig:
    """Defaults: LOM-EMORL on ShapeStacks (Table 2): D_z = 64, D_s = 128, 2 residual SA blocks in g_phi and
    in both causal Transformers (App. A.5's Model 0), sum pooling, order-aware scales, GECO in EMORL's flavour."""

    backbone: Literal["emorl", "genesis_v2"] = "emorl"
    emorl: EMORLConfig | None = field(default_factory=lom_emorl_config)
    genesis_v2: GenesisV2Config | None = None  # LOM-GENv2-G: the independent prior, Gaussian likelihood
    scene_dim: int = 128  # D_s = 2 D_z (App. A.4.1)
    scene_blocks: int = 2  # residual SA blocks in g_phi (A.5 Models 1-2: 1, 3)
    causal_blocks: int = 2  # in f_theta and f'_phi (A.5 Models 3-4: 1, 3)
    sum_pooling: bool = True  # False: g_phi reads its (K+1)-th output (App. A.1 Fig. 5b, "n.s.p.")
    order_aware_scales: bool = True  # False: the backbone's own scales, permuted (A.5 Model 5)
    share_causal: bool = False  # f'_phi is f_theta's Transformer (A.5 Model 6)
    matching: Literal["greedy", "hungarian"] = "greedy"  # Algorithm 1, or App. A.2's alternative
    scene_free_bits: float = 0.25  # lambda of the scene KL, x D_s (Eq. 26)
    scene_free_bits_final: float = 0.167  # ... annealed linearly to this x D_s over `free_bits_anneal`
    free_bits_anneal: tuple[int, int] | None = (375_000, 400_000)  # (first, last) step: the last 25K of 400K
    geco: Literal["emorl", "genesis", "none"] = "emorl"  # the backbone's flavour (App. A.4.2)
    geco_goal: float = -0.351  # per pixel-channel, unnormalised Gaussian
    geco_step: float = 1e-6
    # none: the step as App. A.4.2 states it; genesis: x 64^2 / (H W) as GENESIS-v2's code (both GECOs of LOM-GENv2)
    geco_step_scaling: Literal["none", "genesis"] = "none"
    geco_alpha: float = 0.99
    geco_speedup: float = 50.0  # EMORL's acceleration factor once the target is met
    geco_warm_start: int = 1000
    geco_floor: float = 0.55
    temperature: float = 0.8  # tau for sampling (§4.1)


def causal_mask(n: int, device=None) -> Tensor:
    """bool [n,n], True where token i may not attend to token j (j > i)."""
    return torch.ones(n, n, dtype=torch.bool, device=device).triu(1)


class ResidualSA(nn.Module):
    """Eqs. 10-11: alpha = softmax(k(x) q(x)^T / sqrt(D_z)) v(x) (single head), x' = x + MLP(LayerNorm(x + alpha)).
    k, q, v are D x D_z maps; the MLP is D_z -> D_z -> D_z with GELU (App. A.1)."""

    def __init__(self, dim: int):
        super().__init__()
        self.q, self.k, self.v = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x [B,N,D] -> [B,N,D]; mask [N,N] True where attention is not allowed."""
        logits = self.q(x) @ self.k(x).transpose(1, 2) / math.sqrt(x.shape[-1])  # [B,N,N], row i: query i
        if mask is not None:
            logits = logits.masked_fill(mask, float("-inf"))
        return x + self.mlp(self.norm(x + logits.softmax(-1) @ self.v(x)))


class CausalTransformer(nn.Module):
    """f_theta and f'_phi (App. A.1): the sequence [MLP(s), x_1, ..., x_T] plus a linear positional encoding of
    k / (K + 1), through residual SA blocks with causal masks. f_theta feeds K copies of a shared embedding
    initialised to zero and reads outputs 1..K as h_1:K; f'_phi feeds the permuted orderless means o_pi(1:K-1)
    and reads outputs 0..K-1, so h'_pi(k) sees s and o_pi(<k) (§3.2 step 5)."""

    def __init__(self, z: int, s: int, blocks: int):
        super().__init__()
        self.project = nn.Sequential(nn.Linear(s, z), nn.GELU())  # "a single layer MLP"
        self.position = nn.Linear(1, z)
        self.blocks = nn.ModuleList(ResidualSA(z) for _ in range(blocks))

    def forward(self, s: Tensor, tokens: Tensor, num_slots: int) -> Tensor:
        """s [B,D_s], tokens [B,T,D_z] -> outputs [B,T+1,D_z], output i a function of s and tokens < i only."""
        x = torch.cat([self.project(s).unsqueeze(1), tokens], 1)  # [B,T+1,D_z]
        pos = torch.arange(x.shape[1], device=x.device, dtype=x.dtype).unsqueeze(-1) / (num_slots + 1)  # [T+1,1]
        x = x + self.position(pos)
        mask = causal_mask(x.shape[1], x.device)
        for block in self.blocks:
            x = block(x, mask)
        return x


class SceneEncoder(nn.Module):
    """g_phi (App. A.1 Fig. 5a): residual SA blocks without positional encoding or mask over the orderless
    means and a trainable scene token o_s, global sum pooling, an MLP to D_s, linear mean and softplus std of
    q(s | g_phi(o)) (Eq. 4). Without sum pooling (Fig. 5b) the token o_s's output is read instead."""

    def __init__(self, z: int, s: int, blocks: int, sum_pooling: bool = True):
        super().__init__()
        self.sum_pooling = sum_pooling
        self.token = nn.Parameter(torch.zeros(1, 1, z))  # o_s
        self.blocks = nn.ModuleList(ResidualSA(z) for _ in range(blocks))
        self.mlp = nn.Sequential(nn.Linear(z, s), nn.GELU(), nn.Linear(s, s))
        self.mean, self.pre_std = nn.Linear(s, s), nn.Linear(s, s)

    def forward(self, o: Tensor) -> DiagonalGaussian:
        """o [B,K,D_z] in any order -> q(s | x), mean and var [B,D_s]; with sum pooling invariant to the order."""
        x = torch.cat([o, self.token.expand(len(o), -1, -1)], 1)  # [B,K+1,D_z]
        for block in self.blocks:
            x = block(x)
        h = self.mlp(x.sum(1) if self.sum_pooling else x[:, -1])  # [B,D_s]
        return _gaussian(self.mean(h), self.pre_std(h))


def _gaussian(mean: Tensor, pre_std: Tensor) -> DiagonalGaussian:
    """N(mean, softplus(pre_std)^2), the softplus-activated standard deviations of App. A.1."""
    return DiagonalGaussian(mean, (F.softplus(pre_std) + 1e-4) ** 2)


def slerp(s0: Tensor, s1: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation (App. A.7): s0, s1 [D] normalised and scaled to sqrt(D) first, t [T] in [0,1] ->
    [T,D]; t = 0 and 1 give the scaled endpoints."""
    r = math.sqrt(s0.numel())
    a, b = s0 / s0.norm() * r, s1 / s1.norm() * r
    omega = torch.arccos((a @ b / r**2).clamp(-1 + 1e-7, 1 - 1e-7))
    t = t.to(a.dtype).unsqueeze(-1)  # [T,1]
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def annealed_free_bits(start: float, final: float, anneal: tuple[int, int] | None, step: int | None) -> float:
    """Eq. 26's lambda at `step`: `start` until anneal's first step, then linearly to `final` at its last."""
    if anneal is None or step is None:
        return start
    first, last = anneal
    return start + (final - start) * min(max((step - first) / max(last - first, 1), 0.0), 1.0)


def build_backbone(c: LOMConfig) -> nn.Module:
    """The auxiliary orderless model (App. A.4.1): EMORL, or GENESIS-v2 with its independent prior."""
    if c.backbone == "emorl":
        if c.emorl is None:
            raise ValueError("backbone emorl needs an `emorl` config (EMORLConfig)")
        return EfficientMORL(c.emorl)
    if c.genesis_v2 is None or c.genesis_v2.prior != "independent":
        raise ValueError("LOM-GENv2 disables GENESIS-v2's autoregressive prior (App. A.4.1): give a genesis_v2 "
                         "config with prior: independent")
    return GenesisV2(c.genesis_v2)


class LOM(OnBackbone, HubModel):
    """Eq. 9: the orderless backbone's ELBO + the LOM likelihood, slot KL and scene KL. forward(images) ->
    ModelOutput of the ordered posterior's decoding (slots: its means in generation order)."""

    config_class = LOMConfig
    citation = """@misc{lom2022,
  title={Generating Scenes with Latent Object Models},
  author={Anonymous}, note={ICLR 2022 submission}}"""

    def __init__(self, config: LOMConfig):
        super().__init__()
        if config.genesis_v2 is not None:  # the backbone's GECO takes LOM's step scaling; the saved config says so
            config = replace(config, genesis_v2=replace(config.genesis_v2, geco_step_scaling=config.geco_step_scaling))
        self.config = c = config
        self.backbone = build_backbone(c)
        z, s = self.backbone.slot_dim, c.scene_dim
        self.scene_encoder = SceneEncoder(z, s, c.scene_blocks, c.sum_pooling)  # g_phi
        self.f_theta = CausalTransformer(z, s, c.causal_blocks)
        self.embedding = nn.Parameter(torch.zeros(z))  # the shared trainable token, initialised to zero
        self.prior_mean, self.prior_pre_std = nn.Linear(z, z), nn.Linear(z, z)
        self.f_phi = self.w_phi = None
        if c.order_aware_scales:
            self.f_phi = self.f_theta if c.share_causal else CausalTransformer(z, s, c.causal_blocks)  # f'_phi
            self.w_phi = nn.Linear(z, z)
        for m in (self.scene_encoder, self.f_theta, self.prior_mean, self.prior_pre_std, self.f_phi, self.w_phi):
            xavier(m)  # LOM's own layers (App. A.1); the backbone keeps its own initialisation
        self.decoder = fresh_copy(self.backbone.decoder)  # the backbone's architecture, LOM's own weights (§3.3)
        self.geco = geco_for(c.geco, c.geco_goal, self.backbone.config.resolution, c.geco_step, c.geco_alpha,
                             c.geco_speedup, c.geco_floor, c.geco_warm_start, c.geco_step_scaling)

    @property
    def num_slots(self) -> int:
        return self.backbone.num_slots

    # -- the generative model (Eqs. 1-3) ------------------------------------------------------------
    def slot_prior(self, s: Tensor, num_slots: int | None = None) -> DiagonalGaussian:
        """p(z_k | h_k), h_1:K = f_theta(s) (Eq. 2): mean, var [B,K,D_z]."""
        k = num_slots or self.num_slots
        tokens = self.embedding.expand(len(s), k, -1)  # [B,K,D_z]
        h = self.f_theta(s, tokens, k)[:, 1:]  # [B,K,D_z]
        return _gaussian(self.prior_mean(h), self.prior_pre_std(h))

    def decode(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """z [B,K,D_z] -> RGB [B,K,3,H,W], log masks [B,K,1,H,W] with LOM's decoder."""
        return self.backbone.decode(z, decoder=self.decoder)

    # -- inference (§3.2) -----------------------------------------------------------------------------
    def match(self, prior_means: Tensor, mu_o: Tensor) -> Tensor:
        """Step 4: perm [B,K], perm[b, k] the orderless slot put at position k (Algorithm 1 on L2 distances)."""
        cost = pairwise_distance(prior_means.detach(), mu_o)  # [B,K,K]
        return greedy_matching(cost) if self.config.matching == "greedy" else hungarian_permutation(cost)

    def infer(self, images: Tensor, step: int | None = None) -> dict:
        """Steps 1-5. The orderless posterior enters only through stop_grad (§3.3)."""
        seg: Segregation = self.backbone.segregate(images, step)  # step 1
        mu_o, std_o = seg.mean.detach().float(), seg.std.detach().float()  # [B,K,D_z]
        q_s = self.scene_encoder(mu_o)  # step 2: g_phi reads the means (App. A.1)
        s = q_s.rsample()  # [B,D_s]
        p_z = self.slot_prior(s)  # step 3
        perm = self.match(p_z.mean, mu_o)  # step 4
        index = perm.unsqueeze(-1).expand_as(mu_o)
        mu = mu_o.gather(1, index)  # [B,K,D_z] mu_pi(k), fixed
        if self.f_phi is None:  # A.5 Model 5: the backbone's scales, permuted
            q_z = DiagonalGaussian(mu, std_o.gather(1, index) ** 2)
        else:  # step 5, Eq. 5: sigma' = softplus(w_phi(h'_pi(k)))
            h = self.f_phi(s, mu[:, :-1], self.num_slots)  # [B,K,D_z]
            q_z = _gaussian(mu, self.w_phi(h))
        return {"segregation": seg, "q_s": q_s, "s": s, "p_z": p_z, "perm": perm, "q_z": q_z, "z": q_z.rsample()}

    def kl_terms(self, t: dict) -> dict[str, Tensor]:
        """Per image [B], analytic: the scene KL (Eq. 8) and the slot KL summed over K after alignment (Eq. 7)."""
        q_s = t["q_s"]
        return {"scene_kl": q_s.kl(DiagonalGaussian.standard(q_s.mean)).sum(1),
                "slot_kl": t["q_z"].kl(t["p_z"]).flatten(1).sum(1)}

    def scene_free_bits(self, step: int | None) -> float:
        """lambda of Eq. 26 for the scene KL at `step`: 0.25 D_s, linearly down to 0.167 D_s over the anneal."""
        c = self.config
        return annealed_free_bits(c.scene_free_bits * c.scene_dim, c.scene_free_bits_final * c.scene_dim,
                                  c.free_bits_anneal, step)

    def lom_loss(self, images: Tensor, t: dict, step: int | None = None) -> tuple[Tensor, Tensor, Tensor, dict]:
        """LL + slot KL + scene KL (Eqs. 6-8) on batch means, the scene KL under free bits (Eq. 26, not the slot
        KL: App. A.4.2), under LOM's own GECO. Returns the loss, RGB, log masks and logs."""
        rgb, log_m = self.decode(t["z"])
        err = self.backbone.nll(images, rgb, log_m).mean()  # -LL, the backbone's Gaussian likelihood (Eq. 3)
        kls = self.kl_terms(t)
        scene = free_bits(kls["scene_kl"], self.scene_free_bits(step)).mean()
        kl = kls["slot_kl"].mean() + scene
        loss = err + kl if self.geco is None else self.geco.loss(err, kl)
        logs = {"err": err.detach(), "slot_kl": kls["slot_kl"].mean().detach(), "scene_kl": kls["scene_kl"].mean().detach()}
        logs.update(self.geco_logs())
        return loss, rgb, log_m, logs

    def forward(self, images: Tensor, step: int | None = None) -> ModelOutput:
        """Eq. 9: L_orderless + the LOM terms (as losses to minimise)."""
        t = self.infer(images, step)
        loss, rgb, log_m, logs = self.lom_loss(images, t, step)
        seg = t["segregation"].output
        logs.update({f"seg_{n}": v for n, v in seg.logs.items()})
        masks = log_m.exp()
        return ModelOutput(loss=seg.loss + loss, recon=(masks * rgb).sum(1), masks=masks, slots=t["q_z"].mean,
                           logs=logs)

    # -- evaluation -----------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, temperature: float | None = None, generator: torch.Generator | None = None,
               num_slots: int | None = None, s: Tensor | None = None) -> dict[str, Tensor]:
        """§3.1's four steps with every std scaled by tau (0.8 by default, §4.1): s ~ N(0, tau^2 I) unless
        given [n,D_s], h_1:K = f_theta(s), z_k ~ N(mu_k, (tau sigma_k)^2), decoded. images [n,3,H,W], masks
        [n,K,1,H,W], slots [n,K,D_z] in generation order, and s."""
        tau = self.config.temperature if temperature is None else temperature
        device = self.embedding.device
        if s is None:
            s = tau * torch.randn(n, self.config.scene_dim, generator=generator, device=device)
        p = self.slot_prior(s.to(device), num_slots)
        z = p.mean + tau * p.std * torch.randn(p.mean.shape, generator=generator, device=device)
        rgb, log_m = self.decode(z)
        masks = log_m.exp()
        return {"images": (masks * rgb).sum(1), "masks": masks, "slots": z, "s": s}


def xavier(module: nn.Module | None) -> None:
    """Xavier-uniform weights and zero biases on every Linear layer of `module`."""
    for m in module.modules() if module is not None else ():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
