"""2D Sprites, the SVQ family (SVQ §5, `../shared/reference/datasets.md` §4): 64x64, 7 colours x 12
spriteworld shapes on black (or a procedural texture), antialiased polygons of unit area x scale.

Variants (the `variant` parameter):
  odd_one_out  exactly one object has exactly one unique property value; every other value of every
               property is shared by at least two objects (SVQ §5, generation accuracy)
  random       colours and shapes drawn independently: no relations (pretraining the encoders)
  quadrant     one object per image quadrant under the odd-one-out rule; label = quadrant of the odd
               object (SVQ §5.2.1); palette "id" (first 9 shapes, first 4 colours) or "ood" (the rest)

Sprites are rasterised from precomputed coverage templates (4x4 supersampling, positions quantised
to 1/4 px), composited in order; an object's mask is where its coverage reaches 0.5 on top.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from common.data.schema import FactorSpec, SceneMeta
from common.data.textures import texture_bank

COLOURS = {"blue": (0, 0, 255), "green": (0, 128, 0), "yellow": (255, 255, 0), "red": (255, 0, 0),
           "cyan": (0, 255, 255), "pink": (255, 192, 203), "brown": (165, 42, 42)}
SHAPES = ("square", "triangle", "star_4", "circle", "pentagon", "hexagon", "octagon", "star_5", "star_6",
          "spoke_4", "spoke_5", "spoke_6")
PROPERTIES = ("colour", "shape")
PALETTES = {"all": (tuple(range(12)), tuple(range(7))), "id": (tuple(range(9)), tuple(range(4))),
            "ood": (tuple(range(9, 12)), tuple(range(4, 7)))}
SUBPIXEL = 4


@dataclass
class SpritesParams:
    variant: str = "odd_one_out"
    num_objects: int = 4
    size: int = 64
    scale: float = 0.22  # linear size as a fraction of the frame (spriteworld's larger scale)
    min_gap: float = 0.08  # spriteworld's minimum object-object and object-wall distance
    palette: str = "all"
    textured_background: bool = False


def polygon_vertices(shape: str) -> np.ndarray:
    """Unit-area polygon [V,2] (x, y), star-shaped around the origin."""
    def ring(n, radii, theta0):
        t = theta0 + np.arange(n * len(radii)) * 2 * np.pi / (n * len(radii))
        r = np.tile(radii, n)
        return np.stack([r * np.cos(t), r * np.sin(t)], 1)

    name, _, k = shape.partition("_")
    table = {"square": (4, [1.0], np.pi / 4), "triangle": (3, [1.0], np.pi / 2), "pentagon": (5, [1.0], np.pi / 2),
             "hexagon": (6, [1.0], 0.0), "octagon": (8, [1.0], 0.0), "circle": (30, [1.0], 0.0)}
    if name in table:
        n, radii, theta0 = table[name]
    else:  # star_k: points twice the inner radius; spoke_k: thin spokes
        n, radii, theta0 = int(k), [1.0, 0.5 if name == "star" else 0.3], np.pi / 2
    v = ring(n, np.array(radii), theta0)
    area = 0.5 * abs(np.dot(v[:, 0], np.roll(v[:, 1], -1)) - np.dot(v[:, 1], np.roll(v[:, 0], -1)))
    return v / np.sqrt(area)


def _inside_fan(v: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Point in a polygon star-shaped around the origin: inside one triangle (0, v_i, v_i+1)."""
    if np.dot(v[:, 0], np.roll(v[:, 1], -1)) - np.dot(v[:, 1], np.roll(v[:, 0], -1)) < 0:
        v = v[::-1]  # make the winding counter-clockwise
    a, b = v, np.roll(v, -1, 0)
    inside = np.zeros(x.shape, bool)
    for (ax, ay), (bx, by) in zip(a, b):
        c1 = ax * y - ay * x >= 0
        c2 = (bx - ax) * (y - ay) - (by - ay) * (x - ax) >= 0
        c3 = -bx * y + by * x >= 0
        inside |= c1 & c2 & c3
    return inside


@lru_cache(maxsize=16)
def templates(size: int, scale: float, samples: int = 4) -> np.ndarray:
    """Coverage in [0,1]: float32 [shapes, SUBPIXEL, SUBPIXEL, T, T], template centre at (T/2, T/2).

    One raster per shape at `samples` points per pixel and axis; a subpixel shift q/SUBPIXEL is a
    shift of q * samples/SUBPIXEL raster points, then each pixel averages its samples^2 points.
    """
    reach = max(np.linalg.norm(polygon_vertices(shape), axis=1).max() for shape in SHAPES)
    t = int(np.ceil(2 * reach * scale * size)) + 2
    step = samples // SUBPIXEL
    hi = (np.arange((t + 1) * samples) + 0.5) / samples - t / 2  # raster coordinates in pixels
    yy, xx = np.meshgrid(hi, hi, indexing="ij")
    out = np.zeros((len(SHAPES), SUBPIXEL, SUBPIXEL, t, t), np.float32)
    for s, shape in enumerate(SHAPES):
        raster = _inside_fan(polygon_vertices(shape) * scale * size * [1, -1], xx, yy)
        for qy in range(SUBPIXEL):
            for qx in range(SUBPIXEL):
                window = raster[samples - qy * step:, samples - qx * step:][: t * samples, : t * samples]
                out[s, qy, qx] = window.reshape(t, samples, t, samples).mean((1, 3))
    return out


def fill_groups(values: list[int], count: int, exclude: int | None, rng: np.random.Generator) -> np.ndarray:
    """`count` values, each appearing at least twice, none equal to `exclude` (datasets.md §4 step 4)."""
    pool = [v for v in values if v != exclude]
    out, left = [], count
    while left:
        group = int(rng.integers(2, left + 1)) if left > 1 else 1
        group += int(left - group == 1)  # a lone leftover joins this group
        out += [pool.pop(int(rng.integers(len(pool))))] * group
        left -= group
    return rng.permutation(np.array(out))


def odd_one_out(m: int, shapes: tuple, colours: tuple, rng: np.random.Generator) -> tuple[np.ndarray, int, int]:
    """Per-object (colour, shape) codes [m,2], the odd object's index and the odd property (0 colour, 1 shape)."""
    target, prop = int(rng.integers(m)), int(rng.integers(2))
    palettes = (list(colours), list(shapes))
    codes = np.zeros((m, 2), np.int64)
    for p in range(2):
        if p == prop:
            u = int(rng.choice(palettes[p]))
            others = fill_groups(palettes[p], m - 1, u, rng)
            codes[:, p] = np.insert(others, target, u)
        else:
            codes[:, p] = fill_groups(palettes[p], m, None, rng)
    return codes, target, prop


def _positions(n: int, m: int, p: SpritesParams, rng: np.random.Generator) -> np.ndarray:
    """Centres in [0,1]^2 [N,M,2] with objects `min_gap` apart from each other and the walls."""
    r = p.scale / 2
    out = np.zeros((n, m, 2))
    todo = np.arange(n)
    while len(todo):
        if p.variant == "quadrant":
            quad = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])[:m]  # (row, col) per object
            lo = quad * 0.5 + r + p.min_gap
            xy = lo[None, :, ::-1] + rng.random((len(todo), m, 2)) * (0.5 - 2 * (r + p.min_gap))
        else:
            xy = r + p.min_gap + rng.random((len(todo), m, 2)) * (1 - 2 * (r + p.min_gap))
        d = np.linalg.norm(xy[:, :, None] - xy[:, None], axis=-1) + np.eye(m) * 9
        ok = (d >= 2 * r + p.min_gap).all((1, 2))
        out[todo[ok]] = xy[ok]
        todo = todo[~ok]
    return out


def meta(p: SpritesParams) -> SceneMeta:
    if p.variant not in ("odd_one_out", "random", "quadrant"):
        raise ValueError(f"unknown sprites variant {p.variant!r} (odd_one_out, random, quadrant)")
    if p.palette not in PALETTES:
        raise ValueError(f"unknown palette {p.palette!r} (choose from {', '.join(PALETTES)})")
    if p.variant == "quadrant" and p.num_objects != 4:
        raise ValueError("the quadrant variant has exactly 4 objects, one per quadrant")
    return SceneMeta(
        name=f"sprites_{p.variant}", source="common.data.sprites", version="1", image_size=(p.size, p.size),
        max_objects=p.num_objects, params=vars(p).copy(),
        factors=(FactorSpec("shape", "categorical", values=SHAPES),
                 FactorSpec("colour", "categorical", values=tuple(COLOURS)),
                 FactorSpec("x", "continuous"), FactorSpec("y", "continuous"),
                 FactorSpec("odd", "categorical", values=("no", "yes")),
                 FactorSpec("odd_property", "categorical", values=PROPERTIES),
                 FactorSpec("quadrant", "categorical", values=("top_left", "top_right", "bottom_left", "bottom_right"))))


def _codes(n: int, m: int, p: SpritesParams, rng: np.random.Generator):
    shapes, colours = PALETTES[p.palette]
    codes = np.zeros((n, m, 2), np.int64)
    odd, prop = np.zeros((n, m), np.int32), np.zeros((n, m), np.int32)
    for i in range(n):
        if p.variant == "random":
            codes[i, :, 0], codes[i, :, 1] = rng.choice(colours, m), rng.choice(shapes, m)
        else:
            codes[i], target, prop[i] = odd_one_out(m, shapes, colours, rng)
            odd[i, target] = 1
    return codes, odd, prop


def _render(codes: np.ndarray, xy: np.ndarray, background: np.ndarray, p: SpritesParams) -> tuple:
    """Composite sprites over background [N,H,W,3] float32 -> image uint8, mask uint8 [N,H,W]."""
    n, m, size = len(codes), p.num_objects, p.size
    tmpl = templates(size, p.scale)  # [S,Q,Q,T,T]
    t = tmpl.shape[-1]
    pad = t // 2 + 1
    canvas = np.zeros((n, size + 2 * pad, size + 2 * pad, 3), np.float32)
    canvas[:, pad:-pad, pad:-pad] = background
    top = np.zeros(canvas.shape[:3], np.uint8)
    rgb = np.array(list(COLOURS.values()), np.float32)
    q = np.round((xy * size + pad) * SUBPIXEL).astype(np.int64)  # [N,M,2] (x, y) in quarter pixels
    corner, frac = q // SUBPIXEL - t // 2, q % SUBPIXEL
    for i in range(n):  # basic slicing per sprite is far cheaper than fancy indexing of all windows
        for k in range(m):
            (x0, y0), (fx, fy) = corner[i, k], frac[i, k]
            alpha = tmpl[codes[i, k, 1], fy, fx]  # [T,T]
            window = canvas[i, y0:y0 + t, x0:x0 + t]  # [T,T,3], a view
            window += alpha[..., None] * (rgb[codes[i, k, 0]] - window)
            top[i, y0:y0 + t, x0:x0 + t][alpha >= 0.5] = k + 1
    image = np.round(canvas[:, pad:-pad, pad:-pad]).astype(np.uint8)
    return image, top[:, pad:-pad, pad:-pad]


def _backgrounds(n: int, p: SpritesParams, rng: np.random.Generator) -> np.ndarray:
    """Black, or random 64x64 crops of a bank of procedural textures. float32 [N,H,W,3]."""
    if not p.textured_background:
        return np.zeros((n, p.size, p.size, 3), np.float32)
    bank = texture_bank(32, 2 * p.size, rng)
    pick, oy, ox = rng.integers(32, size=n), rng.integers(p.size, size=n), rng.integers(p.size, size=n)
    return np.stack([bank[b, y:y + p.size, x:x + p.size] for b, y, x in zip(pick, oy, ox)]).astype(np.float32)


def render(codes: np.ndarray, rng: np.random.Generator, p: SpritesParams, chunk: int = 512):
    """Scenes of given per-object (colour, shape) codes [N,M,2], placed and backed as `p` says:
    image uint8 [N,H,W,3], mask uint8 [N,H,W], centres [N,M,2] in [0,1]."""
    n, m = codes.shape[:2]
    xy = _positions(n, m, p, rng)  # [N,M,2] in [0,1]
    background = _backgrounds(n, p, rng)
    parts = [_render(codes[i:i + chunk], xy[i:i + chunk], background[i:i + chunk], p) for i in range(0, n, chunk)]
    return np.concatenate([a for a, _ in parts]), np.concatenate([b for _, b in parts]), xy


def generate(n: int, rng: np.random.Generator, p: SpritesParams, chunk: int = 512) -> dict[str, np.ndarray]:
    meta(p)
    m = p.num_objects
    codes, odd, prop = _codes(n, m, p, rng)
    image, mask, xy = render(codes, rng, p, chunk)
    quadrant = ((xy[..., 1] >= 0.5) * 2 + (xy[..., 0] >= 0.5)).astype(np.int32)
    return {"image": image, "mask": mask, "num_objects": np.full(n, m, np.int32), "visibility": np.ones((n, m), np.uint8),
            "factor.shape": codes[..., 1].astype(np.int32), "factor.colour": codes[..., 0].astype(np.int32),
            "factor.x": xy[..., 0].astype(np.float32), "factor.y": xy[..., 1].astype(np.float32),
            "factor.odd": odd, "factor.odd_property": prop, "factor.quadrant": quadrant}
