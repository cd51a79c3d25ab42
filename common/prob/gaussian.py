"""Diagonal Gaussians as the papers parametrise them, with the analytic KL."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


def softplus_variance(o: Tensor, max_logit: float = 80.0, eps: float = 1e-5) -> Tensor:
    """Variance from a linear output, EMORL App. F.1 Eqs. 10-11: sigma^2 = log(1 + exp(min(o, 80)) + eps)."""
    return torch.log1p(torch.exp(o.clamp(max=max_logit)) + eps)


def at_least_fp32(x: Tensor) -> Tensor:
    """x in float32, or in its own dtype when that is wider (float64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


@dataclass
class DiagonalGaussian:
    """N(mean, diag(var)); every reduction is left to the caller (shapes are elementwise)."""

    mean: Tensor
    var: Tensor

    @classmethod
    def from_params(cls, mean: Tensor, pre_var: Tensor) -> "DiagonalGaussian":
        """Posterior/prior head output (mean, pre-softplus variance) -> distribution, in fp32 at least
        (heads run in bf16 under autocast; the KL and samples stay full precision)."""
        return cls(at_least_fp32(mean), softplus_variance(at_least_fp32(pre_var)))

    @classmethod
    def standard(cls, like: Tensor) -> "DiagonalGaussian":
        return cls(torch.zeros_like(like), torch.ones_like(like))

    @property
    def std(self) -> Tensor:
        return self.var.sqrt()

    def rsample(self, temperature: float = 1.0) -> Tensor:
        """Reparameterised sample; temperature scales the standard deviation."""
        return self.mean + temperature * self.std * torch.randn_like(self.mean)

    def log_prob(self, x: Tensor) -> Tensor:
        return -0.5 * ((x - self.mean) ** 2 / self.var + self.var.log() + math.log(2 * math.pi))

    def kl(self, other: "DiagonalGaussian") -> Tensor:
        """Elementwise analytic KL(self || other)."""
        ratio = self.var / other.var
        return 0.5 * (ratio + (self.mean - other.mean) ** 2 / other.var - 1.0 - ratio.log())

    def detach(self) -> "DiagonalGaussian":
        return DiagonalGaussian(self.mean.detach(), self.var.detach())


def kl_standard_normal(mean: Tensor, var: Tensor) -> Tensor:
    """Elementwise KL(N(mean, var) || N(0, 1))."""
    return 0.5 * (var + mean**2 - 1.0 - var.log())


def split_params(params: Tensor) -> tuple[Tensor, Tensor]:
    """[..., 2D] -> ([..., D] mean, [..., D] pre-variance): the lambda = (mu, s) layout."""
    return params.chunk(2, dim=-1)
