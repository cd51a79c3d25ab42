"""Position encodings: the four-ramp grid of Slot Attention / EMORL, and linear coordinates."""
from __future__ import annotations

import torch
from torch import Tensor, nn


def ramp_grid(height: int, width: int, device=None) -> Tensor:
    """[H,W,4] ramps (y, x, 1-y, 1-x) in [0,1]: the four cardinal directions (Locatello et al. 2020)."""
    ys = torch.linspace(0.0, 1.0, height, device=device)
    xs = torch.linspace(0.0, 1.0, width, device=device)
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1)  # [H,W,2]
    return torch.cat([grid, 1.0 - grid], dim=-1)  # [H,W,4]


def linear_grid(height: int, width: int, device=None) -> Tensor:
    """[H,W,2] coordinates (y, x) in [-1,1]: IODINE's coordinate channels."""
    ys = torch.linspace(-1.0, 1.0, height, device=device)
    xs = torch.linspace(-1.0, 1.0, width, device=device)
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1)  # [H,W,2]


class PositionEmbed(nn.Module):
    """Adds or concatenates a position encoding to a channel-first feature map.

    mode="add": ramp grid projected by Linear(4, C) and added (Slot Attention, EMORL App. F.1).
    mode="concat": linear coordinates appended as 2 extra channels (IODINE App. B).
    """

    def __init__(self, channels: int, height: int, width: int, mode: str = "add"):
        super().__init__()
        if mode not in ("add", "concat"):
            raise ValueError(f"position mode must be 'add' or 'concat', got {mode!r}")
        self.mode = mode
        grid = ramp_grid(height, width) if mode == "add" else linear_grid(height, width)
        self.register_buffer("grid", grid, persistent=False)
        self.proj = nn.Linear(4, channels) if mode == "add" else None

    @property
    def extra_channels(self) -> int:
        return 2 if self.mode == "concat" else 0

    def forward(self, x: Tensor) -> Tensor:
        """x [B,C,H,W] -> [B,C,H,W] (add) or [B,C+2,H,W] (concat)."""
        if self.proj is not None:
            return x + self.proj(self.grid).permute(2, 0, 1).unsqueeze(0)  # [B,C,H,W]
        coords = self.grid.permute(2, 0, 1).unsqueeze(0).expand(x.shape[0], -1, -1, -1)  # [B,2,H,W]
        return torch.cat([x, coords.to(x.dtype)], dim=1)
