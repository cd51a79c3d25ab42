"""Multi-dSprites, coloured on greyscale (IODINE App. A.2): 64x64, 2-5 dSprites shapes (square,
ellipse, heart) with random scale, orientation and position, random saturated HSV colours on a random
grey background; later sprites occlude earlier ones and masks are the visible parts.

Shapes are drawn as binary implicit regions at pixel centres (dSprites sprites are binary). Unpublished
details, chosen here and configurable: sprite half-size 10 px x scale, scale in [0.5, 1], centres in
[10, 54] px, saturation and value in [0.75, 1].
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

from common.data.schema import FactorSpec, SceneMeta

SHAPES = ("square", "ellipse", "heart")


@dataclass
class DSpritesParams:
    size: int = 64
    min_objects: int = 2
    max_objects: int = 5
    half_size: float = 10.0
    scale_range: tuple[float, float] = (0.5, 1.0)
    margin: float = 10.0
    saturation_range: tuple[float, float] = (0.75, 1.0)
    value_range: tuple[float, float] = (0.75, 1.0)


def meta(p: DSpritesParams) -> SceneMeta:
    return SceneMeta(
        name="multi_dsprites", source="common.data.dsprites", version="1", image_size=(p.size, p.size),
        max_objects=p.max_objects, params=vars(p).copy(),
        factors=(FactorSpec("shape", "categorical", values=SHAPES), FactorSpec("scale", "continuous"),
                 FactorSpec("orientation", "continuous"), FactorSpec("x", "continuous"),
                 FactorSpec("y", "continuous"), FactorSpec("colour", "continuous", shape=(3,))))


def inside(shape: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Implicit shapes in local units (half-size 1): shape [N,1,1], u, v [N,H,W] -> bool [N,H,W]."""
    square = np.maximum(np.abs(u), np.abs(v)) <= 1.0
    ellipse = u**2 + (v / 0.5) ** 2 <= 1.0
    x, y = 1.15 * u, -1.15 * v + 0.25
    heart = (x**2 + y**2 - 1) ** 3 - x**2 * y**3 <= 0
    return np.where(shape == 0, square, np.where(shape == 1, ellipse, heart))


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """[..., 3] HSV in [0,1] -> RGB in [0,1] (vectorised colorsys.hsv_to_rgb)."""
    h, s, v = np.moveaxis(hsv, -1, 0)
    i = np.floor(h * 6.0).astype(int) % 6
    f = h * 6.0 - np.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = np.stack([np.stack(c, -1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])
    return np.take_along_axis(np.moveaxis(table, 0, -2), i[..., None, None], -2)[..., 0, :]


assert np.allclose(hsv_to_rgb(np.array([0.3, 0.5, 0.9])), colorsys.hsv_to_rgb(0.3, 0.5, 0.9))


def generate(n: int, rng: np.random.Generator, p: DSpritesParams) -> dict[str, np.ndarray]:
    m, size = p.max_objects, p.size
    count = rng.integers(p.min_objects, m + 1, size=n)
    shape = rng.integers(len(SHAPES), size=(n, m)).astype(np.int32)
    scale = rng.uniform(*p.scale_range, size=(n, m)).astype(np.float32)
    orientation = rng.uniform(0, 2 * np.pi, size=(n, m)).astype(np.float32)
    xy = rng.uniform(p.margin, size - p.margin, size=(n, m, 2)).astype(np.float32)
    hsv = np.stack([rng.random((n, m)), rng.uniform(*p.saturation_range, (n, m)), rng.uniform(*p.value_range, (n, m))], -1)
    colour = hsv_to_rgb(hsv).astype(np.float32)  # [N,M,3]
    grey = rng.random(n).astype(np.float32)
    mask = np.zeros((n, size, size), np.uint8)
    w = int(np.ceil(2 * 1.2 * p.half_size * p.scale_range[1])) + 2  # window covering any sprite
    grid = np.arange(w, dtype=np.float32)
    rows = np.arange(n)[:, None, None]
    for k in range(m):
        corner = np.floor(xy[:, k] - w / 2).astype(np.int64)  # [N,2] (x, y) of the window
        px = corner[:, 0, None, None] + grid[None, None, :]  # [N,1,w] pixel column index
        py = corner[:, 1, None, None] + grid[None, :, None]  # [N,w,1] pixel row index
        dx, dy = px + 0.5 - xy[:, k, 0, None, None], py + 0.5 - xy[:, k, 1, None, None]
        r = (p.half_size * scale[:, k])[:, None, None]
        c, s_ = np.cos(orientation[:, k])[:, None, None], np.sin(orientation[:, k])[:, None, None]
        u, v = (c * dx + s_ * dy) / r, (-s_ * dx + c * dy) / r
        hit = inside(shape[:, k, None, None], u, v) & (k < count)[:, None, None]  # [N,w,w]
        hit &= (px >= 0) & (px < size) & (py >= 0) & (py < size)
        b, yi, xi = np.nonzero(hit)
        mask[rows[b, 0, 0], py[b, yi, 0].astype(np.int64), px[b, 0, xi].astype(np.int64)] = k + 1
    palette = np.round(np.concatenate([np.repeat(grey[:, None, None], 3, 2), colour], 1) * 255)  # [N,1+M,3]
    image = np.take_along_axis(palette.astype(np.uint8), mask.reshape(n, -1, 1).astype(np.int64), 1)
    active = np.arange(m)[None] < count[:, None]
    visible = np.stack([(mask == k + 1).any((1, 2)) for k in range(m)], 1)
    return {"image": image.reshape(n, size, size, 3), "mask": mask, "num_objects": count.astype(np.int32),
            "visibility": (active & visible).astype(np.uint8), "factor.shape": shape * active,
            "factor.scale": scale * active, "factor.orientation": orientation * active,
            "factor.x": xy[..., 0] * active, "factor.y": xy[..., 1] * active,
            "factor.colour": colour * active[..., None]}
