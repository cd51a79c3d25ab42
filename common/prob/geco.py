"""GECO (Rezende & Viola 2018) in the two published flavours.

State lives in buffers, so it is saved with the model and restored on resume. The reconstruction
error fed to `update` is averaged over data-parallel ranks so every rank takes the same step.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.ranks import mean_over_ranks


class GECOLagrangeNLL(nn.Module):
    """EMORL App. F.2: a Lagrange weight softplus(zeta) on the NLL constraint.

    loss = KL - softplus(zeta) * (C_t + sg(C_ema - C_t)), C_t = C - NLL  (the constraint, < 0 while
    the NLL is above target). After a warm start of plain ELBO steps, C_ema is initialised to C_t and
    tracked with an EMA (alpha 0.99); every step zeta <- max(floor, zeta - step * C_ema), the step
    multiplied by `acceleration` once the target is met (C_ema > 0). Target C is a total over C*H*W.
    """

    def __init__(self, target: float, step_size: float = 1e-6, alpha: float = 0.99,
                 floor: float = 0.55, warm_start: int = 1000, acceleration: float = 1.0):
        super().__init__()
        self.target, self.step_size, self.alpha = target, step_size, alpha
        self.floor, self.warm_start, self.acceleration = floor, warm_start, acceleration
        self.register_buffer("zeta", torch.tensor(floor))
        self.register_buffer("c_ema", torch.tensor(0.0))
        self.register_buffer("steps", torch.tensor(0, dtype=torch.long))

    @property
    def active(self) -> Tensor:
        """Whether the warm start is over (a bool tensor: deciding it never syncs with the host)."""
        return self.steps >= self.warm_start

    @property
    def weight(self) -> Tensor:
        return F.softplus(self.zeta)

    def nll_weight(self) -> Tensor:
        """The NLL's weight in the loss: softplus(zeta) once active, 1 during the warm start."""
        return torch.where(self.active, self.weight, torch.ones_like(self.zeta))

    def loss(self, nll: Tensor, kl: Tensor) -> Tensor:
        """nll, kl: batch means. Plain ELBO during warm start, the GECO objective afterwards."""
        c_t = self.target - nll
        geco = kl - self.weight.detach() * (c_t + (self.c_ema - c_t).detach())
        return torch.where(self.active, geco, nll + kl)

    @torch.no_grad()
    def update(self, nll: Tensor, ok: Tensor | bool = True) -> None:
        """One training step's update from the batch-mean NLL (call once per optimiser step); a step
        with `ok` false (skipped by the loop) changes nothing. Device arithmetic only: no host sync."""
        ok = torch.as_tensor(ok, device=self.steps.device)
        c_t = self.target - mean_over_ranks(nll)
        steps = self.steps + ok.long()
        ema = torch.where(steps == self.warm_start, c_t, self.alpha * self.c_ema + (1 - self.alpha) * c_t)
        ema = torch.where(ok & (steps >= self.warm_start), ema, self.c_ema)
        rate = self.step_size * torch.where(ema > 0, self.acceleration, 1.0)
        zeta = torch.clamp(self.zeta - rate * ema, min=self.floor)
        self.zeta.copy_(torch.where(ok & (steps > self.warm_start), zeta, self.zeta))
        self.c_ema.copy_(ema)
        self.steps.copy_(steps)


class GECOMultiplicativeKL(nn.Module):
    """GENESIS-v2 flavour (used by SRI, LOM-GENv2): loss = err + beta * KL, beta updated multiplicatively.

    err_ema starts at the first error and follows an EMA (alpha); constraint = goal - err_ema;
    beta <- clamp(beta * exp(step * constraint * (speedup if constraint > 0 else 1))). The goal is a
    total over C*H*W; GENESIS-v2 scales the step by 64^2 / (H W) (pass it in `step_size`).
    """

    def __init__(self, goal: float, step_size: float = 1e-5, alpha: float = 0.99, beta_init: float = 1.0,
                 beta_min: float = 1e-10, beta_max: float = 1e10, speedup: float | None = 10.0):
        super().__init__()
        self.goal, self.step_size, self.alpha = goal, step_size, alpha
        self.beta_min, self.beta_max, self.speedup = beta_min, beta_max, speedup
        self.register_buffer("beta", torch.tensor(beta_init))
        self.register_buffer("err_ema", torch.tensor(0.0))
        self.register_buffer("steps", torch.tensor(0, dtype=torch.long))

    def loss(self, err: Tensor, kl: Tensor) -> Tensor:
        return err + self.beta.detach() * kl

    @torch.no_grad()
    def update(self, err: Tensor, ok: Tensor | bool = True) -> None:
        """One step's update; a step with `ok` false changes nothing. No host sync."""
        ok = torch.as_tensor(ok, device=self.steps.device)
        err = mean_over_ranks(err)
        ema = torch.where(self.steps == 0, err, self.alpha * self.err_ema + (1 - self.alpha) * err)
        constraint = self.goal - ema
        speedup = self.speedup or 1.0
        rate = self.step_size * torch.where(constraint > 0, speedup, 1.0)
        beta = (self.beta * torch.exp(rate * constraint)).clamp(self.beta_min, self.beta_max)
        self.err_ema.copy_(torch.where(ok, ema, self.err_ema))
        self.beta.copy_(torch.where(ok, beta, self.beta))
        self.steps += ok.long()


def geco_for(flavour: str, goal: float, resolution: tuple[int, int], step: float = 1e-6, alpha: float = 0.99,
             speedup: float = 10.0, floor: float = 0.55, warm_start: int = 1000,
             step_scaling: str = "none") -> nn.Module | None:
    """The GECO of a model built on a backbone, in the backbone's flavour (SRI, LOM App. A.4.2): `genesis`
    (GECOMultiplicativeKL), `emorl` (GECOLagrangeNLL, `speedup` its acceleration once the target is met) or
    `none`. `goal` is per pixel-channel, in the likelihood's convention. `step_scaling`: `none` uses `step`
    as the papers state it, `genesis` multiplies it by 64^2 / (H W) as GENESIS-v2's code does."""
    h, w = resolution
    if flavour == "genesis":
        return GECOMultiplicativeKL(goal * 3 * h * w, step * geco_step_scale(step_scaling, resolution), alpha,
                                    speedup=speedup)
    if flavour == "emorl":
        return GECOLagrangeNLL(goal * 3 * h * w, step, alpha, floor, warm_start, speedup)
    if flavour == "none":
        return None
    raise ValueError(f"unknown GECO flavour {flavour!r} (choose from genesis, emorl, none)")


def geco_step_scale(scaling: str, resolution: tuple[int, int]) -> float:
    """The factor on a GENESIS-flavour GECO step: 1 (`none`, the step as SRI and LOM App. A.4.2 state it) or
    64^2 / (H W) (`genesis`, GENESIS-v2's code, which SRI's official code inherits; checked 4.2, 5.1)."""
    if scaling == "none":
        return 1.0
    if scaling == "genesis":
        h, w = resolution
        return 64**2 / (h * w)
    raise ValueError(f"unknown GECO step scaling {scaling!r} (choose from none, genesis)")
