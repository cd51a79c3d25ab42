"""The generation-accuracy judge: it finds the sprites in a generated image, reads each one's colour and
shape, and applies SVQ's rule (rules.py) to what it read. Finding is a centre heatmap at half resolution
(a small dilated CNN, peaks by non-maximum suppression); reading is a CNN on a 24 px crop around each
centre (the sprites have one fixed scale, SpritesParams.scale). Saved and loaded with from_pretrained; its
measured accuracy travels in its model card."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.data import sprites
from common.hub import HubModel
from common.metrics.judges.rules import odd_one_out_valid


@dataclass
class SpriteJudgeConfig:
    task: Literal["generation_accuracy"] = "generation_accuracy"
    resolution: tuple[int, int] = (64, 64)
    finder_channels: tuple[int, ...] = (32, 32, 64, 64)  # stride 2, then dilations 1, 2, 4
    reader_channels: tuple[int, ...] = (32, 64, 128)  # one conv, then a stride-2 conv, per scale
    crop: int = 24  # px around a centre; sprites reach about 16 px (0.22 x 64 and the stars' points)
    hidden: int = 256
    num_colours: int = len(sprites.COLOURS)
    num_shapes: int = len(sprites.SHAPES)
    threshold: float = 0.3  # heatmap peak that counts as an object
    max_objects: int = 8


def _conv(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride, padding=dilation, dilation=dilation), nn.GroupNorm(8, c_out), nn.ReLU()]


class SpriteJudge(HubModel):
    config_class = SpriteJudgeConfig

    def __init__(self, config: SpriteJudgeConfig):
        super().__init__()
        self.config = c = config
        f = c.finder_channels
        layers = [nn.Conv2d(3, f[0], 5, 2, padding=2), nn.ReLU()]  # [B,f0,H/2,W/2]
        for i, ch in enumerate(f[1:]):
            layers += _conv(f[i], ch, dilation=2 ** i)  # receptive field about 33 px
        self.finder = nn.Sequential(*layers, nn.Conv2d(f[-1], 1, 1))
        r, layers, c_in = c.reader_channels, [], 3
        for ch in r:
            layers += _conv(c_in, ch) + _conv(ch, ch, stride=2)
            c_in = ch
        side = c.crop // 2 ** len(r)
        self.reader = nn.Sequential(*layers, nn.Flatten(), nn.Linear(r[-1] * side * side, c.hidden), nn.ReLU(),
                                    nn.Linear(c.hidden, c.num_colours + c.num_shapes))

    def heatmap(self, images: Tensor) -> Tensor:
        """images [B,3,H,W] in [0,1] -> centre logits [B,H/2,W/2]."""
        return self.finder(images).squeeze(1)

    def crops(self, images: Tensor, index: Tensor, centres: Tensor) -> Tensor:
        """Bilinear crops [N,3,S,S] of images[index] around centres [N,2] (x, y in [0,1] of the frame)."""
        c, (h, w) = self.config, images.shape[2:]
        offsets = torch.arange(c.crop, device=images.device, dtype=images.dtype) - c.crop / 2 + 0.5  # [S] px
        px = centres * centres.new_tensor([w, h])  # [N,2] pixel coordinates
        gx = 2 * (px[:, None, 0] + offsets) / w - 1  # [N,S]
        gy = 2 * (px[:, None, 1] + offsets) / h - 1
        grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), -1)  # [N,S,S,2]
        return F.grid_sample(images[index], grid, align_corners=False, padding_mode="zeros")

    def read(self, crops: Tensor) -> tuple[Tensor, Tensor]:
        """crops [N,3,S,S] -> colour logits [N,7], shape logits [N,12]."""
        logits = self.reader(crops)
        return logits[:, :self.config.num_colours], logits[:, self.config.num_colours:]

    def loss(self, images: Tensor, centre: Tensor, codes: Tensor, generator: torch.Generator | None = None,
             jitter: float = 1.5) -> Tensor:
        """Heatmap BCE against a Gaussian (sigma one cell) at every centre, plus cross-entropy of colour and
        shape on crops at the true centres moved by up to `jitter` px. centre [B,M,2] in [0,1], codes [B,M,2]
        (colour, shape; -1 where a scene has fewer objects)."""
        b, _, h, w = images.shape
        logits = self.heatmap(images)  # [B,h',w']
        gh, gw = logits.shape[1:]
        ys = (torch.arange(gh, device=images.device) + 0.5) / gh  # cell centres in [0,1]
        xs = (torch.arange(gw, device=images.device) + 0.5) / gw
        present = codes[..., 0] >= 0  # [B,M]
        d2 = ((xs[None, None, None, :] - centre[..., 0, None, None]) * gw) ** 2 + \
             ((ys[None, None, :, None] - centre[..., 1, None, None]) * gh) ** 2  # [B,M,h',w'] in cells^2
        target = (torch.exp(-d2 / 2) * present[..., None, None]).amax(1)  # [B,h',w']
        heat = F.binary_cross_entropy_with_logits(logits, target)
        index, k = torch.nonzero(present, as_tuple=True)
        shift = (torch.rand(len(index), 2, generator=generator, device=images.device) * 2 - 1) * jitter
        colour, shape = self.read(self.crops(images, index, centre[index, k] + shift / centre.new_tensor([w, h])))
        return heat + F.cross_entropy(colour, codes[index, k, 0]) + F.cross_entropy(shape, codes[index, k, 1])

    @torch.no_grad()
    def find(self, images: Tensor) -> list[Tensor]:
        """Per image, the centres [n,2] in [0,1] of the heatmap's peaks above the threshold (5x5 non-maximum
        suppression on the logits, ties going to the later cell in raster order, refined by the
        heatmap-weighted mean over the peak's 3x3 cells)."""
        c = self.config
        logits = self.heatmap(images)  # [B,h,w]
        heat = torch.sigmoid(logits)
        gh, gw = heat.shape[1:]
        ranked = logits + 1e-4 * torch.arange(gh * gw, device=logits.device).view(gh, gw) / (gh * gw)  # no ties
        peak = (ranked == F.max_pool2d(ranked[:, None], 5, 1, 2)[:, 0]) & (heat > c.threshold)
        window = F.unfold(heat[:, None], 3, padding=1).view(len(heat), 9, gh, gw)  # [B,9,h,w]
        step = torch.arange(-1, 2.0, device=heat.device)
        dy, dx = torch.meshgrid(step, step, indexing="ij")
        total = window.sum(1)
        ry = (window * dy.reshape(1, 9, 1, 1)).sum(1) / total  # [B,h,w] offset in cells
        rx = (window * dx.reshape(1, 9, 1, 1)).sum(1) / total
        out = []
        for i in range(len(heat)):
            y, x = torch.nonzero(peak[i], as_tuple=True)
            strongest = heat[i, y, x].argsort(descending=True)[:c.max_objects]
            y, x = y[strongest], x[strongest]
            out.append(torch.stack([(x + 0.5 + rx[i, y, x]) / gw, (y + 0.5 + ry[i, y, x]) / gh], 1))
        return out

    @torch.no_grad()
    def codes(self, images: Tensor, batch_size: int = 256) -> list[np.ndarray]:
        """Per image, the (colour, shape) codes [n,2] of the sprites it finds."""
        out = []
        for x in images.split(batch_size):
            centres = self.find(x)
            index = torch.cat([torch.full((len(p),), i, device=x.device) for i, p in enumerate(centres)])
            colour, shape = self.read(self.crops(x, index, torch.cat(centres)))  # [N,7], [N,12]; N may be 0
            read = torch.stack([colour.argmax(1), shape.argmax(1)], 1).cpu().numpy()  # [N,2]
            out += np.split(read, np.cumsum([len(p) for p in centres])[:-1])
        return out

    def verdicts(self, images: Tensor) -> Tensor:
        """bool [N]: whether each image (float [N,3,H,W] in [0,1]) follows SVQ's rule, as the judge reads it."""
        return torch.tensor([odd_one_out_valid(c) for c in self.codes(images)], dtype=torch.bool)


@dataclass
class StackJudgeConfig:
    task: Literal["s_acc"] = "s_acc"
    resolution: tuple[int, int] = (64, 64)
    channels: tuple[int, ...] = (32, 64, 128, 128)  # one conv, then a stride-2 conv, per scale
    map_after: int = 2  # the failure maps are read after this many scales (16x16 of a 64 px image)
    hidden: int = 256
    map_weight: float = 1.0  # weight of the failure maps' loss beside the verdict's


class StackJudge(HubModel):
    """The S-Acc judge: a CNN that says whether a ShapeStacks image holds a plausible stack (every block
    touching its support, none sharing space with another), trained on rule-labelled generator scenes.
    Beside the verdict it learns where the failures are: maps of block pixels, floating blocks' pixels and
    overlapping blocks' pixels (the geometry's labels, through the generator's masks)."""
    config_class = StackJudgeConfig
    MAPS = ("block", "floating", "overlapping")

    def __init__(self, config: StackJudgeConfig):
        super().__init__()
        self.config = c = config
        stages, c_in = [], 3
        for ch in c.channels:
            stages.append(nn.Sequential(*_conv(c_in, ch), *_conv(ch, ch, stride=2)))
            c_in = ch
        self.early, self.late = nn.Sequential(*stages[:c.map_after]), nn.Sequential(*stages[c.map_after:])
        self.maps = nn.Conv2d(c.channels[c.map_after - 1], len(self.MAPS), 1)
        side = (c.resolution[0] // 2 ** len(c.channels), c.resolution[1] // 2 ** len(c.channels))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c_in * side[0] * side[1], c.hidden), nn.ReLU(),
                                  nn.Linear(c.hidden, 1))

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """images [B,3,H,W] in [0,1] -> logit [B] that the stack is plausible, map logits [B,3,h,w]."""
        features = self.early(images)
        return self.head(self.late(features)).squeeze(1), self.maps(features)

    def loss(self, images: Tensor, label: Tensor, mask: Tensor, floating: Tensor, overlapping: Tensor,
             generator: torch.Generator | None = None) -> Tensor:
        """BCE of the verdict plus map_weight x BCE of the maps; mask [B,H,W] (block k is k + 1), floating and
        overlapping [B,M] per block. A map cell is on where any pixel of it is."""
        logit, maps = self(images)
        target = self.failure_maps(mask, floating, overlapping, maps.shape[2:])
        return F.binary_cross_entropy_with_logits(logit, label.float()) + \
            self.config.map_weight * F.binary_cross_entropy_with_logits(maps, target)

    @staticmethod
    def failure_maps(mask: Tensor, floating: Tensor, overlapping: Tensor, size: tuple[int, int]) -> Tensor:
        """The maps' targets [B,3,h,w] (MAPS): cells holding any pixel of a block, of a floating block, of
        an overlapping block. mask [B,H,W] (block k is k + 1), floating and overlapping bool [B,M]."""
        blocks = F.one_hot(mask.long(), floating.shape[1] + 1)[..., 1:].float()  # [B,H,W,M]
        pixels = torch.stack([blocks.amax(-1), (blocks * floating[:, None, None].float()).amax(-1),
                              (blocks * overlapping[:, None, None].float()).amax(-1)], 1)  # [B,3,H,W]
        return F.adaptive_max_pool2d(pixels, size)

    @torch.no_grad()
    def verdicts(self, images: Tensor, batch_size: int = 256) -> Tensor:
        """bool [N]: whether each image (float [N,3,H,W] in [0,1]) holds a plausible stack."""
        return torch.cat([self(x)[0] > 0 for x in images.split(batch_size)])


JUDGES = {"generation_accuracy": SpriteJudge, "s_acc": StackJudge}
