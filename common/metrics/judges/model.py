"""A judge: a small CNN that reads the ground-truth quantities a rule needs off a generated image (for
generation accuracy: how many objects have each colour and each shape), then applies the rule exactly.
Saved and loaded with from_pretrained; its measured accuracy travels in its model card."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.hub import HubModel


@dataclass
class JudgeConfig:
    task: Literal["generation_accuracy"] = "generation_accuracy"  # S-Acc (ShapeStacks) is still to come
    resolution: tuple[int, int] = (64, 64)
    channels: tuple[int, ...] = (32, 64, 128, 128)
    hidden: int = 256
    num_values: int = 19  # quantities read off the image (7 colours + 12 shapes)
    num_classes: int = 5  # each a count 0..4


class Judge(HubModel):
    config_class = JudgeConfig

    def __init__(self, config: JudgeConfig):
        super().__init__()
        self.config = c = config
        layers, c_in = [nn.Conv2d(3, c.channels[0], 5, stride=2, padding=2), nn.ReLU()], c.channels[0]
        for ch in c.channels:  # conv, then a stride-2 conv, per scale
            layers += [nn.Conv2d(c_in, ch, 3, padding=1), nn.GroupNorm(8, ch), nn.ReLU(),
                       nn.Conv2d(ch, ch, 3, stride=2, padding=1), nn.GroupNorm(8, ch), nn.ReLU()]
            c_in = ch
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.LazyLinear(c.hidden), nn.ReLU(),
                                  nn.Linear(c.hidden, c.num_values * c.num_classes))
        self.head(self.features(torch.zeros(1, 3, *c.resolution)))  # materialise the lazy layer

    def forward(self, images: Tensor) -> Tensor:
        """images [B,3,H,W] in [0,1] -> logits [B,V,C] of each quantity's value."""
        c = self.config
        return self.head(self.features(images)).view(len(images), c.num_values, c.num_classes)

    def loss(self, images: Tensor, targets: Tensor) -> Tensor:
        """Cross-entropy of every quantity; targets [B,V] long."""
        return F.cross_entropy(self(images).flatten(0, 1), targets.flatten())

    @torch.no_grad()
    def read(self, images: Tensor, batch_size: int = 256) -> Tensor:
        """The quantities [N,V] the judge reads off the images."""
        return torch.cat([self(x).argmax(-1) for x in images.split(batch_size)])
