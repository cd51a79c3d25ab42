"""EfficientMORL building blocks (Emami et al. 2021, §3 and App. F.1)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from common.nn import MLP, ConvEncoder, PositionEmbed, attend, flatten_spatial
from common.prob import DiagonalGaussian


class DualGRU(nn.Module):
    """Two GRUs (one for the mean, one for the variance parameter) fused into one GRU cell whose
    weight matrices are block-diagonal (App. F.1, Eq. 9): input [Theta; Theta] [N,2D], hidden
    lambda = [mu; s] [N,2D]. Parameters are those of the two GRUs; the fused matrices are built per call.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.gru_mu, self.gru_s = nn.GRUCell(dim, dim), nn.GRUCell(dim, dim)

    def _fuse(self, a: Tensor, b: Tensor) -> Tensor:
        """Per gate (r, z, n): block_diag(a_g, b_g); [3D,D] x 2 -> [6D,2D] (biases: [3D] x 2 -> [6D])."""
        if a.dim() == 1:
            return torch.cat([torch.cat(p) for p in zip(a.chunk(3), b.chunk(3))])
        return torch.cat([torch.block_diag(p, q) for p, q in zip(a.chunk(3), b.chunk(3))])

    def forward(self, theta: Tensor, lam: Tensor) -> Tensor:
        """theta [N,D], lam [N,2D] -> new lam [N,2D]."""
        m, s = self.gru_mu, self.gru_s
        return torch.gru_cell(torch.cat([theta, theta], -1), lam,
                              self._fuse(m.weight_ih, s.weight_ih), self._fuse(m.weight_hh, s.weight_hh),
                              self._fuse(m.bias_ih, s.bias_ih), self._fuse(m.bias_hh, s.bias_hh))


class ImageEncoder(nn.Module):
    """Algorithm 1 lines 2-3 and App. F.1: 4 x [Conv 5x5, 64, ReLU], four-ramp position encoding
    projected and added, then LayerNorm -> Linear -> ReLU -> Linear per pixel. [B,3,H,W] -> [B,HW,C]."""

    def __init__(self, resolution: tuple[int, int], channels: tuple[int, ...]):
        super().__init__()
        width = channels[-1]
        self.cnn = ConvEncoder(3, channels, kernel_size=5)
        self.position = PositionEmbed(width, *resolution, mode="add")
        self.mlp = nn.Sequential(nn.LayerNorm(width), MLP([width, width, width]))

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(flatten_spatial(self.position(self.cnn(x))))


class StochasticLayer(nn.Module):
    """One bottom-up layer (Algorithm 1 lines 8-16), shared by all L layers (App. F.1).

    lambda = (mu, s) with variance SP(s) (Eqs. 10-11); the query is the LayerNorm'd sample z^{l-1}.
    """

    def __init__(self, feature_dim: int, dim: int, eps: float = 1e-8):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.norm_z = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(feature_dim, dim, bias=False)
        self.v = nn.Linear(feature_dim, dim, bias=False)
        self.dual_gru = DualGRU(dim)
        self.norm_mu, self.norm_s = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.mlp_mu, self.mlp_s = MLP([dim, 2 * dim, dim]), MLP([dim, 2 * dim, dim])

    def forward(self, features: Tensor, z: Tensor, lam: Tensor) -> tuple[Tensor, Tensor]:
        """features [B,N,C], z [B,K,D], lam [B,K,2D] -> new lam [B,K,2D], attention [B,N,K]."""
        b, k, d = z.shape
        theta, attn = attend(self.q(self.norm_z(z)), self.k(features), self.v(features), self.eps)  # [B,K,D]
        lam = self.dual_gru(theta.reshape(b * k, d).to(lam.dtype), lam.reshape(b * k, 2 * d)).view(b, k, 2 * d)
        mu, s = lam.chunk(2, -1)
        mu = mu + self.mlp_mu(self.norm_mu(mu))
        s = s + self.mlp_s(self.norm_s(s))
        return torch.cat([mu, s], -1), attn


class PriorLayer(nn.Module):
    """p(z^l | z^{l+-1}) (App. F.1): MLP D -> 128 ELU, linear mean, softplus variance; shared over layers."""

    def __init__(self, dim: int, hidden: int = 128):
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(dim, hidden), nn.ELU())
        self.mean, self.pre_var = nn.Linear(hidden, dim), nn.Linear(hidden, dim)

    def forward(self, z: Tensor) -> DiagonalGaussian:
        h = self.hidden(z)
        return DiagonalGaussian.from_params(self.mean(h), self.pre_var(h))


class RefinementNetwork(nn.Module):
    """f_phi (§3.2, Eqs. 6-7, App. F.1): trainable LayerNorms on lambda and on the stopped-gradient
    loss gradient, MLP 4D -> 128 -> D (ELU), GRU D -> D, linear heads for delta mu and delta s."""

    def __init__(self, dim: int, hidden: int = 128):
        super().__init__()
        self.norm_lam, self.norm_grad = nn.LayerNorm(2 * dim), nn.LayerNorm(2 * dim)
        self.mlp = MLP([4 * dim, hidden, dim], act="elu")
        self.gru = nn.GRUCell(dim, dim)
        self.delta_mu, self.delta_s = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, lam: Tensor, grad: Tensor, h: Tensor | None) -> tuple[Tensor, Tensor]:
        """lam, grad [B,K,2D]; h [B*K,D] or None -> (delta lambda [B,K,2D], new h)."""
        b, k, two_d = lam.shape
        x = torch.cat([self.norm_lam(lam), self.norm_grad(grad)], -1).reshape(b * k, 2 * two_d)  # [BK,4D]
        h = self.gru(torch.nn.functional.elu(self.mlp(x)), h)
        delta = torch.cat([self.delta_mu(h), self.delta_s(h)], -1).view(b, k, two_d)
        return delta, h
