"""An LSTM slot prior conditioned on a scene variable: SRI's autoregressive prior p(z_pi_k | z_pi_<k, s)
(`sri.txt` Eq. 2) and posterior variance model (Eq. 7), and LOM's App. A.5 Models 7-8 (an RNN-based
autoregressive slot prior, with and without s)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from common.prob import DiagonalGaussian


class SlotLSTM(nn.Module):
    """An LSTM over [W_s^T s (GELU), z_1, ..., z_{K-1}] with linear heads: the autoregressive prior
    p(z_pi_k | z_pi_<k, s) (Eq. 2, heads for mean and variance) or the posterior's variance model
    (Eq. 7, a variance head only). Without a scene variable (Table 3a) the first input is zero."""

    def __init__(self, z: int, s: int | None, hidden: int, heads: tuple[str, ...]):
        super().__init__()
        self.project = nn.Sequential(nn.Linear(s, z), nn.GELU()) if s else None  # W_s (none without a scene variable)
        self.lstm = nn.LSTM(z, hidden, batch_first=True)
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, z) for name in heads})

    def first_input(self, s: Tensor | None, batch: int, like: Tensor) -> Tensor:
        if s is None:
            return like.new_zeros(batch, 1, self.lstm.input_size)
        return self.project(s).unsqueeze(1)  # [B,1,z]

    def forward(self, s: Tensor | None, z: Tensor) -> dict[str, Tensor]:
        """Teacher forcing: z [B,K,z] -> each head's output [B,K,z] for slot k given s and z_<k."""
        inputs = torch.cat([self.first_input(s, len(z), z), z[:, :-1]], 1)  # [B,K,z]
        h, _ = self.lstm(inputs)  # [B,K,hidden]
        return {name: head(h) for name, head in self.heads.items()}

    def rollout(self, s: Tensor | None, k: int, temperature: float = 1.0, standard_first: bool = False,
                batch: int | None = None, generator: torch.Generator | None = None) -> tuple[Tensor, DiagonalGaussian]:
        """The free-running prior (Eq. 6): each step samples z_pi_k (reparameterised) and feeds it back.
        Returns the samples [B,K,z] and the K conditionals (mean, var [B,K,z]); temperature scales every
        std. With `standard_first` the first slot is N(0, I) (Table 3a, no scene variable)."""
        weight = self.lstm.weight_ih_l0
        x, state, zs, ps = self.first_input(s, batch if s is None else len(s), weight), None, [], []
        for step in range(k):
            h, state = self.lstm(x, state)  # [B,1,hidden]
            p = DiagonalGaussian.from_params(self.heads["mean"](h), self.heads["pre_var"](h))  # [B,1,z]
            if step == 0 and standard_first:
                p = DiagonalGaussian.standard(p.mean)
            noise = torch.randn(p.mean.shape, generator=generator, device=weight.device, dtype=p.mean.dtype)
            z = p.mean + temperature * p.std * noise  # [B,1,z]
            zs.append(z), ps.append(p)
            x = z.to(weight.dtype)
        return torch.cat(zs, 1), DiagonalGaussian(torch.cat([p.mean for p in ps], 1), torch.cat([p.var for p in ps], 1))
    def conditionals(self, s: Tensor | None, z: Tensor) -> DiagonalGaussian:
        """Teacher-forced prior (heads "mean", "pre_var") on z [B,K,z]: p(z_k | z_<k, s) [B,K,z]; without a
        scene variable p(z_1) = N(0, I) (SRI Table 3a, LOM A.5 Model 7)."""
        out = self(s, z)
        p = DiagonalGaussian.from_params(out["mean"], out["pre_var"])  # [B,K,z]
        if s is not None:
            return p
        first = DiagonalGaussian.standard(p.mean[:, :1])
        return DiagonalGaussian(torch.cat([first.mean, p.mean[:, 1:]], 1), torch.cat([first.var, p.var[:, 1:]], 1))
