"""The CLEVR family, ray cast (`common.data.raycast`), with exact visible-instance masks and factors.

Variants (`variant`):
  clevr       CLEVR's vocabulary: sphere, cube, cylinder; 8 colours; large/small; rubber/metal; random
              z-rotation; 3 to `max_objects` objects (6: CLEVR6, 10: CLEVR10)
  clevr_easy  larger objects varying only shape (3), colour (8) and position (SysBinder / SVQ)
  clevr_hard  shape, colour (137), size, material and position vary
  clevr_tex   procedural 3D textures on objects and ground (58 materials), 4 shapes (cone in place
              of CLEVRTex's monkey head)
Rendered with CLEVR's camera (jittered) and key/fill/back lights; the frame is 240x320 and `crop`
selects CLEVR's crop window (iodine [29:221, 64:256], center [24:216, 64:256]) rendered at size x size.
Sampling the object count uniformly in [min, max] equals the published CLEVR6/CLEVR10 selection on
the foreground count of a uniform 3-10 distribution.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from common.data.dsprites import hsv_to_rgb
from common.data.raycast import CONE, CUBE, CYLINDER, SPHERE, Scenes, flat_albedo, render
from common.data.schema import FactorSpec, SceneMeta
from common.data.textures3d import MATERIALS, textured_albedo

COLOURS = {"gray": (87, 87, 87), "red": (173, 35, 35), "blue": (42, 75, 215), "green": (29, 105, 20),
           "brown": (129, 74, 25), "purple": (129, 38, 192), "cyan": (41, 208, 208), "yellow": (255, 238, 51)}
SHAPES = ("cube", "sphere", "cylinder", "cone")
SHAPE_IDS = (CUBE, SPHERE, CYLINDER, CONE)
SIZES = {"large": 0.7, "small": 0.35}
MATERIALS_CLEVR = ("rubber", "metal")
CROPS = {"iodine": (29, 221, 64, 256), "center": (24, 216, 64, 256), "full": (0, 240, 0, 320)}
FRAME, HFOV = (240, 320), 2 * math.atan(16 / 35)  # Blender's 35 mm lens on a 32 mm sensor
CAMERA = (7.358, -6.925, 4.958)


def hard_palette(n: int = 137) -> np.ndarray:
    """n distinct colours (uint8 [n,3]) spread in hue with varied saturation and value (fixed)."""
    i = np.arange(n)
    hsv = np.stack([(i * 0.618033988749895) % 1, 0.45 + 0.55 * ((i * 7) % 11) / 10, 0.5 + 0.5 * ((i * 3) % 7) / 6], 1)
    return np.round(hsv_to_rgb(hsv) * 255).astype(np.uint8)


@dataclass
class ClevrParams:
    variant: str = "clevr"
    min_objects: int = 3
    max_objects: int = 6
    size: int = 64
    crop: str = "iodine"
    scale: float = 1.0  # object size multiplier (the SysBinder variants use larger objects)
    min_gap: float = 0.25  # CLEVR's minimum distance between object surfaces
    camera_jitter: float = 0.5
    supersample: int = 2
    batch: int = 16  # scenes per render call
    device: str = "cpu"


@dataclass
class Clevr10Params(ClevrParams):
    max_objects: int = 10


@dataclass
class ClevrEasyParams(ClevrParams):
    """Larger objects; 2-3 per scene (SysBinder's annotated CLEVR-Easy masks hold at most 3; the exact
    counts are unpublished)."""

    variant: str = "clevr_easy"
    scale: float = 1.4
    min_objects: int = 2
    max_objects: int = 3
    crop: str = "full"


@dataclass
class ClevrHardParams(ClevrEasyParams):
    variant: str = "clevr_hard"


@dataclass
class ClevrTexParams(ClevrEasyParams):
    variant: str = "clevr_tex"


PRESETS = {  # variant -> (shapes, colours, sizes, materials, random rotation)
    "clevr": (3, 8, ("large", "small"), 2, True),
    "clevr_easy": (3, 8, ("large",), 1, False),
    "clevr_hard": (3, 137, ("large", "small"), 2, False),
    "clevr_tex": (4, 0, ("large",), len(MATERIALS), False),
}


def _factors(variant: str) -> tuple[FactorSpec, ...]:
    shapes, colours, sizes, materials, rotate = PRESETS[variant]
    out = [FactorSpec("shape", "categorical", values=SHAPES[:shapes])]
    if variant != "clevr_tex":
        names = tuple(COLOURS) if colours == 8 else tuple(f"c{i}" for i in range(colours))
        out.append(FactorSpec("colour", "categorical", values=names))
    if len(sizes) > 1:
        out.append(FactorSpec("size", "categorical", values=sizes))
    if materials > 1:
        names = MATERIALS_CLEVR if variant != "clevr_tex" else tuple(m.name for m in MATERIALS)
        out.append(FactorSpec("material", "categorical", values=names))
    if rotate:
        out.append(FactorSpec("rotation", "continuous"))
    out += [FactorSpec(n, "continuous") for n in ("x", "y", "z")]
    out.append(FactorSpec("pixel_coords", "continuous", shape=(3,)))
    return tuple(out)


def meta(p: ClevrParams) -> SceneMeta:
    if p.variant not in PRESETS:
        raise ValueError(f"unknown CLEVR variant {p.variant!r} (choose from {', '.join(PRESETS)})")
    if p.crop not in CROPS:
        raise ValueError(f"unknown crop {p.crop!r} (choose from {', '.join(CROPS)})")
    if not 1 <= p.min_objects <= p.max_objects:
        raise ValueError(f"need 1 <= min_objects <= max_objects, got {p.min_objects}, {p.max_objects}")
    return SceneMeta(name=p.variant if p.variant != "clevr" else f"clevr{p.max_objects}",
                     source="common.data.clevr", version="1", image_size=(p.size, p.size),
                     max_objects=p.max_objects, params=vars(p).copy(), factors=_factors(p.variant))


def sample_layout(n: int, p: ClevrParams, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-object codes and positions; objects placed one by one with CLEVR's minimum gap."""
    shapes, colours, sizes, materials, rotate = PRESETS[p.variant]
    m = p.max_objects
    count = rng.integers(p.min_objects, m + 1, size=n)
    out = {"shape": rng.integers(shapes, size=(n, m)), "size": rng.integers(len(sizes), size=(n, m)),
           "colour": rng.integers(max(colours, 1), size=(n, m)), "material": rng.integers(materials, size=(n, m)),
           "rotation": rng.uniform(0, 360, size=(n, m)) if rotate else np.zeros((n, m)),
           "active": np.arange(m)[None] < count[:, None], "count": count}
    radius = np.array([SIZES[s] for s in sizes])[out["size"]] * p.scale
    radius = np.where(np.array(SHAPE_IDS)[out["shape"]] == CUBE, radius / math.sqrt(2), radius)
    xy = np.zeros((n, m, 2))
    for k in range(m):
        todo = np.flatnonzero(out["active"][:, k])
        for _ in range(1000):
            if not len(todo):
                break
            cand = rng.uniform(-3, 3, size=(len(todo), 2))
            gap = np.linalg.norm(xy[todo, :k] - cand[:, None], axis=-1) - radius[todo, :k] - radius[todo, k, None]
            ok = (gap >= p.min_gap).all(1) if k else np.ones(len(todo), bool)
            xy[todo[ok], k] = cand[ok]
            todo = todo[~ok]
        out["active"][todo, k:] = False  # a scene too crowded keeps the objects placed so far
    out["count"] = out["active"].sum(1)
    out.update(xy=xy, radius=radius, camera=np.array(CAMERA) + rng.uniform(-1, 1, size=(n, 3)) * p.camera_jitter,
               ground_material=rng.integers(len(MATERIALS), size=n))
    return out


def _scenes(layout: dict, p: ClevrParams, sl: slice) -> Scenes:
    t = lambda a, dt=torch.float32: torch.as_tensor(a[sl], dtype=dt, device=p.device)
    colours = PRESETS[p.variant][1]
    textured = p.variant == "clevr_tex"
    palette = np.array(list(COLOURS.values())) if colours == 8 else hard_palette(max(colours, 1))
    r = layout["radius"][sl]
    centre = np.concatenate([layout["xy"][sl], r[..., None]], -1)
    return Scenes(shape=torch.as_tensor(np.array(SHAPE_IDS)[layout["shape"][sl]], device=p.device),
                  centre=torch.as_tensor(centre, dtype=torch.float32, device=p.device),
                  radius=t(layout["radius"]), angle=t(np.radians(layout["rotation"])),
                  albedo=torch.as_tensor(palette[layout["colour"][sl]] / 255.0, dtype=torch.float32, device=p.device),
                  metal=t(layout["material"] * (not textured), torch.bool),
                  active=t(layout["active"], torch.bool), camera=t(layout["camera"]),
                  target=torch.zeros(len(r), 3, device=p.device),
                  material=t(layout["material"], torch.long) if textured else None,
                  ground_material=t(layout["ground_material"], torch.long) if textured else None)


def project(points: np.ndarray, camera: np.ndarray, p: ClevrParams) -> np.ndarray:
    """World points [N,M,3] -> (column, row, depth) in output-image pixels [N,M,3]."""
    f = -camera / np.linalg.norm(camera, axis=-1, keepdims=True)
    r = np.cross(f, [0, 0, 1])
    r /= np.linalg.norm(r, axis=-1, keepdims=True)
    u = np.cross(r, f)
    v = points - camera[:, None]
    depth = (v * f[:, None]).sum(-1)
    tan = math.tan(HFOV / 2)
    x = (v * r[:, None]).sum(-1) / depth / tan
    y = (v * u[:, None]).sum(-1) / depth / (tan * FRAME[0] / FRAME[1])
    col, row = (x + 1) / 2 * FRAME[1], (1 - y) / 2 * FRAME[0]
    r0, r1, c0, c1 = CROPS[p.crop]
    return np.stack([(col - c0) / (c1 - c0) * p.size, (row - r0) / (r1 - r0) * p.size, depth], -1)


def generate(n: int, rng: np.random.Generator, p: ClevrParams) -> dict[str, np.ndarray]:
    meta(p)
    layout = sample_layout(n, p, rng)
    albedo = textured_albedo if p.variant == "clevr_tex" else flat_albedo()
    images, masks = [], []
    for start in range(0, n, p.batch):
        sl = slice(start, start + p.batch)
        with torch.no_grad():
            image, mask = render(_scenes(layout, p, sl), p.size, CROPS[p.crop], FRAME, HFOV, albedo_fn=albedo,
                                 supersample=p.supersample)
        images.append((image * 255).round().byte().cpu().numpy())
        masks.append(mask.byte().cpu().numpy())
    mask = np.concatenate(masks)
    m = p.max_objects
    visible = np.stack([(mask == k + 1).any((1, 2)) for k in range(m)], 1) & layout["active"]
    active = layout["active"]
    centre = np.concatenate([layout["xy"], layout["radius"][..., None]], -1)
    out = {"image": np.concatenate(images), "mask": mask, "num_objects": visible.sum(1).astype(np.int32),
           "visibility": visible.astype(np.uint8),
           "factor.x": (centre[..., 0] * active).astype(np.float32), "factor.y": (centre[..., 1] * active).astype(np.float32),
           "factor.z": (centre[..., 2] * active).astype(np.float32),
           "factor.pixel_coords": (project(centre, layout["camera"], p) * active[..., None]).astype(np.float32)}
    for spec in _factors(p.variant):
        if f"factor.{spec.name}" not in out:
            out[f"factor.{spec.name}"] = (layout[spec.name] * active).astype(spec.dtype)
    return out
