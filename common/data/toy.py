"""A tiny procedural scene set (squares and discs on black) for tests and pipeline smoke runs.

Not a replication dataset: the paper datasets come from the other generators.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.data.schema import SceneMeta


@dataclass
class ToyParams:
    size: int = 32
    max_objects: int = 3


def meta(p: ToyParams) -> SceneMeta:
    return SceneMeta(name="toy_shapes", source="common.data.toy", version="2", image_size=(p.size, p.size),
                     max_objects=p.max_objects, params=vars(p).copy())


def generate(n: int, rng: np.random.Generator, p: ToyParams) -> dict[str, np.ndarray]:
    """1..max_objects squares or discs per scene, drawn in order (later ones occlude)."""
    size, m = p.size, p.max_objects
    yy, xx = np.mgrid[0:size, 0:size]
    image = np.zeros((n, size, size, 3), np.uint8)
    mask = np.zeros((n, size, size), np.uint8)
    count = rng.integers(1, m + 1, size=n)
    for k in range(m):
        r = rng.integers(size // 8, size // 4 + 1, size=(n, 1, 1)).astype(np.float32)
        cy, cx = rng.random((2, n, 1, 1)) * (size - 2 * r) + r
        disc = rng.random((n, 1, 1)) < 0.5
        inside = np.where(disc, (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2, (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r))
        inside &= (k < count)[:, None, None]
        colour = rng.integers(55, 256, size=(n, 3)).astype(np.uint8)
        image = np.where(inside[..., None], colour[:, None, None, :], image)
        mask[inside] = k + 1
    visible = np.stack([(mask == k + 1).any((1, 2)) for k in range(m)], 1)
    return {"image": image, "mask": mask, "num_objects": visible.sum(1).astype(np.int32),
            "visibility": visible.astype(np.uint8)}
