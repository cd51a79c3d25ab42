"""Spatial broadcast decoder (Watters et al. 2019), as IODINE, EMORL and Slot Attention use it."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.nn.encoders import activation
from common.nn.position import PositionEmbed

# On the CPU, a stack whose hidden layers are at most this wide runs faster channels-last (oneDNN), a wider
# one contiguous: `python -m benchmarks decoder_layout` measures both.
CPU_CHANNELS_LAST_WIDTH = 32


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
    stride > 1 is a transposed conv that doubles the size. `groups` puts a GroupNorm with that many
    groups after every hidden layer (GENESIS-v2). The output size is checked at build time.
    """

    def __init__(self, latent_dim: int, output_size: tuple[int, int], broadcast: tuple[int, int],
                 channels: Sequence[int], kernels: Sequence[int], paddings: Sequence[int],
                 strides: Sequence[int] | None = None, position: str = "add", act: str = "relu",
                 groups: int | None = None):
        super().__init__()
        strides = strides or [1] * len(channels)
        lengths = {"channels": len(channels), "kernels": len(kernels), "paddings": len(paddings), "strides": len(strides)}
        if len(set(lengths.values())) > 1:
            raise ValueError("decoder layer lists differ in length: "
                             + ", ".join(f"{k} {n}" for k, n in lengths.items()) + " (one entry per layer)")
        self.latent_dim, self.broadcast = latent_dim, tuple(broadcast)
        self.position = PositionEmbed(latent_dim, *self.broadcast, mode=position)
        layers: list[nn.Module] = []
        c_in, size = latent_dim + self.position.extra_channels, list(self.broadcast)
        for i, (c, k, p, s) in enumerate(zip(channels, kernels, paddings, strides, strict=True)):
            if s == 1:
                layers.append(nn.Conv2d(c_in, c, k, padding=p))
            else:
                layers.append(nn.ConvTranspose2d(c_in, c, k, stride=s, padding=k // 2, output_padding=s - 1))
            if i < len(channels) - 1:
                layers += [nn.GroupNorm(groups, c)] if groups else []
                layers.append(activation(act))
            size = [_out_size(n, k, s, p) for n in size]
            c_in = c
        self.net = nn.Sequential(*layers)
        self.set_cpu_channels_last(max(channels[:-1], default=0) <= CPU_CHANNELS_LAST_WIDTH)
        if tuple(size) != tuple(output_size):
            raise ValueError(f"decoder grid {self.broadcast} with these layers gives {tuple(size)}, "
                             f"expected {tuple(output_size)}")
        first = self.net[0]
        self.factorised = isinstance(first, nn.Conv2d)
        if self.factorised:
            self.register_buffer("taps", _tap_support(first, self.broadcast), persistent=False)

    def set_cpu_channels_last(self, on: bool) -> None:
        """The CPU layout: activations and weights (a channels-last weight would make oneDNN's convolution
        channels-last whatever its input; a mismatched one would be converted, with its gradient, every call)."""
        self.cpu_channels_last = on
        self.net.to(memory_format=torch.channels_last if on else torch.contiguous_format)

    def memory_format(self, device: torch.device) -> torch.memory_format:
        """The activations' layout (the convs follow their input's): channels-last on an accelerator, and on
        the CPU only for narrow stacks, where oneDNN runs it faster (`cpu_channels_last`)."""
        return torch.channels_last if device.type != "cpu" or self.cpu_channels_last else torch.contiguous_format

    def forward(self, z: Tensor) -> Tensor:
        """z [N,D] (N = B*K) -> [N,channels[-1],H,W]."""
        if self.factorised:
            return self.net[1:](self._first_conv(z).contiguous(memory_format=self.memory_format(z.device)))
        x = z[:, :, None, None].expand(-1, -1, *self.broadcast)  # [N,D,h,w]
        return self.net(self.position(x).contiguous(memory_format=self.memory_format(z.device)))

    def _first_conv(self, z: Tensor) -> Tensor:
        """conv(broadcast(z) (+ or concat) P) computed exactly as conv(P) + sum_taps (W_tap z) * [tap in bounds].

        The broadcast input is constant per slot and P is the same for every slot, so the first layer
        costs O(k^2 C HW) instead of O(k^2 C D HW) per slot, forward and backward.
        """
        conv, d = self.net[0], z.shape[1]
        if self.position.mode == "add":
            grid = self.position.proj(self.position.grid).permute(2, 0, 1).unsqueeze(0)  # [1,D,h,w]
            w_grid, w_z = conv.weight, conv.weight
        else:  # concatenated coordinates: their own slice of the kernel
            grid = self.position.grid.permute(2, 0, 1).unsqueeze(0).to(conv.weight.dtype)  # [1,2,h,w]
            w_grid, w_z = conv.weight[:, d:], conv.weight[:, :d]
        const = F.conv2d(grid, w_grid, conv.bias, padding=conv.padding)  # [1,C,H1,W1]
        n, (c, _, kh, kw), (h1, w1) = z.shape[0], w_z.shape, self.taps.shape[2:]
        per_tap = z.to(w_z.dtype) @ w_z.permute(1, 0, 2, 3).reshape(-1, c * kh * kw)  # [N,C*k*k]
        taps = self.taps.to(per_tap.dtype).view(kh * kw, h1 * w1)  # [k*k,H1*W1]
        out = taps.t() @ per_tap.view(n, c, kh * kw).transpose(1, 2)  # [N,H1*W1,C]: channels last
        out = out + const.flatten(2).transpose(1, 2)  # [N,H1*W1,C]
        return out.view(n, h1, w1, c).permute(0, 3, 1, 2)  # [N,C,H1,W1], channels-last strides


def _tap_support(conv: nn.Conv2d, size: tuple[int, int]) -> Tensor:
    """[k,k,H1,W1]: 1 where kernel tap (ky, kx) reads an in-bounds input pixel at output (y, x)."""
    k = conv.kernel_size
    onehot = torch.eye(k[0] * k[1]).view(k[0] * k[1], 1, *k)  # one kernel per tap
    ones = torch.ones(1, 1, *size)
    return torch.nn.functional.conv2d(ones, onehot, padding=conv.padding)[0].view(*k, *_out(size, conv))


def _out(size: tuple[int, int], conv: nn.Conv2d) -> tuple[int, int]:
    return tuple(n + 2 * p - k + 1 for n, p, k in zip(size, conv.padding, conv.kernel_size))


def split_rgb_mask(out: Tensor, batch: int) -> tuple[Tensor, Tensor]:
    """[B*K,4,H,W] decoder output -> RGB [B,K,3,H,W], mask logits [B,K,1,H,W]."""
    out = out.view(batch, -1, *out.shape[1:])  # [B,K,4,H,W]
    return out[:, :, :3], out[:, :, 3:]
