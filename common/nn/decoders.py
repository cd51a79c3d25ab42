"""Spatial broadcast decoder (Watters et al. 2019), as IODINE, EMORL and Slot Attention use it."""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from common.nn.encoders import activation
from common.nn.position import PositionEmbed


def _out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    if stride == 1:
        return size + 2 * padding - kernel + 1
    return size * stride  # transposed conv with padding k//2, output_padding stride-1


class SpatialBroadcastDecoder(nn.Module):
    """Decode each slot independently: tile z over a grid, add position, conv stack -> RGB + mask logit.

    `broadcast` is the grid size before the convs (EMORL: H+10 with 3x3 unpadded convs; Slot Attention
    CLEVR: 8x8 then stride-2 transposed convs). `position="add"` projects the four ramps and adds them
    (Slot Attention, EMORL); `"concat"` appends linear coordinates (IODINE). The layer lists include
    the output layer (`channels[-1]` = 4: RGB + mask logit), which has no activation. A layer with
    stride > 1 is a transposed conv that doubles the size. The output size is checked at build time.
    """

    def __init__(self, latent_dim: int, output_size: tuple[int, int], broadcast: tuple[int, int],
                 channels: Sequence[int], kernels: Sequence[int], paddings: Sequence[int],
                 strides: Sequence[int] | None = None, position: str = "add", act: str = "relu"):
        super().__init__()
        strides = strides or [1] * len(channels)
        self.broadcast = tuple(broadcast)
        self.position = PositionEmbed(latent_dim, *self.broadcast, mode=position)
        layers: list[nn.Module] = []
        c_in, size = latent_dim + self.position.extra_channels, list(self.broadcast)
        for i, (c, k, p, s) in enumerate(zip(channels, kernels, paddings, strides, strict=True)):
            if s == 1:
                layers.append(nn.Conv2d(c_in, c, k, padding=p))
            else:
                layers.append(nn.ConvTranspose2d(c_in, c, k, stride=s, padding=k // 2, output_padding=s - 1))
            if i < len(channels) - 1:
                layers.append(activation(act))
            size = [_out_size(n, k, s, p) for n in size]
            c_in = c
        self.net = nn.Sequential(*layers)
        if tuple(size) != tuple(output_size):
            raise ValueError(f"decoder grid {self.broadcast} with these layers gives {tuple(size)}, "
                             f"expected {tuple(output_size)}")

    def forward(self, z: Tensor) -> Tensor:
        """z [N,D] (N = B*K) -> [N,channels[-1],H,W]."""
        x = z[:, :, None, None].expand(-1, -1, *self.broadcast)  # [N,D,h,w]
        return self.net(self.position(x))


def split_rgb_mask(out: Tensor, batch: int) -> tuple[Tensor, Tensor]:
    """[B*K,4,H,W] decoder output -> RGB [B,K,3,H,W], mask logits [B,K,1,H,W]."""
    out = out.view(batch, -1, *out.shape[1:])  # [B,K,4,H,W]
    return out[:, :, :3], out[:, :, 3:]
