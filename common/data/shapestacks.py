"""ShapeStacks stand-in with MuJoCo rendering *and* physics (as the original): towers of 2-6 blocks
(cubes, cylinders, spheres) with random sizes and colours on a textured floor before coloured walls,
seen from several camera views; 64x64.

Each scene's label comes from simulating its tower for `sim_seconds`: stable if no block moves more
than `stable_tolerance`. Structural facts for S-Acc: whether each block touches the one below (or the
floor) at rest. Spheres only crown a tower (a sphere below anything is trivially unstable). Blocks are
labelled 1..n from the bottom; the floor, walls and sky are background 0.
"""
from __future__ import annotations

import atexit
from dataclasses import dataclass

import numpy as np

from common.data.mujoco_render import OffscreenRenderer, import_mujoco
from common.data.schema import FactorSpec, SceneMeta

SHAPES = ("box", "cylinder", "sphere")
FLOORS = 6  # floor textures in every model (the GL context holds them once)


@dataclass
class ShapeStacksParams:
    size: int = 64
    min_blocks: int = 2
    max_blocks: int = 6
    unstable_fraction: float = 0.5  # towers built with one block pushed past its support
    sim_seconds: float = 2.0
    stable_tolerance: float = 0.05
    fovy: float = 45.0


def _assets() -> str:
    rng = np.random.default_rng(7)
    tex = "".join(
        f'<texture name="floor{i}" type="2d" builtin="{("checker", "gradient", "flat")[i % 3]}" '
        f'rgb1="{" ".join(f"{v:.2f}" for v in rng.uniform(.2, .9, 3))}" '
        f'rgb2="{" ".join(f"{v:.2f}" for v in rng.uniform(.2, .9, 3))}" width="64" height="64"/>'
        f'<material name="floor{i}" texture="floor{i}" texrepeat="3 3"/>' for i in range(FLOORS))
    return f"<asset>{tex}</asset>"


def tower_xml(blocks: list[dict], floor: int = 0, walls=((.6, .6, .6),) * 3) -> str:
    """MJCF of one tower: blocks [{shape, half (x, y, z half-sizes), pos (x, y, z), rgb}] bottom first."""
    wall_xml = "".join(f'<geom name="wall{i}" type="box" pos="{x} {y} 1" size="{sx} {sy} 1" rgba="{" ".join(map(str, c))} 1"/>'
                       for i, ((x, y, sx, sy), c) in enumerate(zip([(-3, 0, .05, 3), (0, 3, 3, .05), (0, -3, 3, .05)], walls)))
    bodies = ""
    for k, b in enumerate(blocks):
        hx, hy, hz = b["half"]
        size = {"box": f"{hx} {hy} {hz}", "cylinder": f"{hx} {hz}", "sphere": f"{hz}"}[b["shape"]]
        bodies += (f'<body name="b{k}" pos="{" ".join(map(str, b["pos"]))}"><freejoint/>'
                   f'<geom name="g{k}" type="{b["shape"]}" size="{size}" rgba="{" ".join(map(str, b["rgb"]))} 1" '
                   f'density="500" friction="0.8 0.01 0.001" margin="0.002"/></body>')
    return (f'<mujoco><option timestep="0.005"/><visual><headlight ambient=".3 .3 .3"/></visual>{_assets()}'
            f'<worldbody><light pos="2 -2 5" dir="-.3 .3 -1" diffuse=".7 .7 .7"/>'
            f'<geom name="floor" type="plane" size="3 3 1" material="floor{floor}"/>{wall_xml}{bodies}</worldbody></mujoco>')


def build_tower(rng: np.random.Generator, n: int, unstable: bool) -> list[dict]:
    """Stack n blocks, each touching the one below; an unstable tower has one block (above the first) shifted
    beyond its support: a box or cylinder 1.05-1.6 times the support's smaller half-width off centre, a sphere
    (only ever on top) resting on the support's edge (_on_the_edge)."""
    blocks, z = [], 0.0
    push = int(rng.integers(1, n)) if unstable else -1
    x = y = 0.0
    for k in range(n):
        shape = "sphere" if (k == n - 1 and rng.random() < 0.2) else SHAPES[rng.integers(2)]
        h = rng.uniform(0.15, 0.3)
        half = (h, h, h) if shape == "sphere" else (rng.uniform(0.2, 0.35), rng.uniform(0.2, 0.35), h)
        if shape == "cylinder":
            half = (half[0], half[0], h)
        rest = half[2]  # the block's centre above the support's top
        if k:
            reach = rng.uniform(1.05, 1.6) if k == push else rng.uniform(0.0, 0.25)  # in support half-widths
            angle = rng.uniform(0, 2 * np.pi)
            if k == push and shape == "sphere":
                (dx, dy), rest = _on_the_edge(blocks[-1], angle, (reach - 1.05) / 0.55, h)
            else:
                dx, dy = min(blocks[-1]["half"][:2]) * reach * np.array([np.cos(angle), np.sin(angle)])
            x, y = x + dx, y + dy
        blocks.append({"shape": shape, "half": half, "pos": (x, y, z + rest), "rgb": tuple(rng.uniform(.1, 1, 3))})
        z += 2 * half[2]
    return blocks


def _on_the_edge(support: dict, angle: float, t: float, r: float) -> tuple[np.ndarray, float]:
    """Where a sphere of radius r rests on its support's top edge, pushed past it at `angle`: its centre
    (0.1 + 0.7 t) r beyond the footprint along the push (t in [0, 1]), lowered until it touches the nearest point
    of the edge. Returns the centre's horizontal offset from the support's [2] and its height above the top.
    Left at a sphere's resting height, a centre past the footprint floats a fraction of a pixel above the edge:
    a tower that is not touching by the rule while its image shows one that is."""
    d = np.array([np.cos(angle), np.sin(angle)])
    hx, hy = support["half"][:2]
    if support["shape"] == "box":
        edge = min(hx / max(abs(d[0]), 1e-9), hy / max(abs(d[1]), 1e-9))  # the footprint's boundary along d
        offset = (edge + (0.1 + 0.7 * t) * r) * d
        beyond = np.hypot(max(0.0, abs(offset[0]) - hx), max(0.0, abs(offset[1]) - hy))  # to the nearest edge point
    else:  # a cylinder's disc
        offset = (hx + (0.1 + 0.7 * t) * r) * d
        beyond = float(np.linalg.norm(offset)) - hx
    return offset, float(np.sqrt(r * r - beyond * beyond))


def simulate(model, data, seconds: float) -> np.ndarray:
    """Block positions [n,3] after `seconds` of simulation from rest."""
    mj = import_mujoco()
    mj.mj_resetData(model, data)
    for _ in range(int(seconds / model.opt.timestep)):
        mj.mj_step(model, data)
    return data.xpos[1:].copy()


def _contacts(model, data) -> list[tuple[int, int, float]]:
    """(geom1, geom2, signed distance) of every contact at the initial pose (negative: penetration)."""
    mj = import_mujoco()
    mj.mj_resetData(model, data)
    mj.mj_forward(model, data)
    return [(int(c.geom1), int(c.geom2), float(c.dist)) for c in data.contact[: data.ncon]]


def support_contacts(model, data, n: int) -> np.ndarray:
    """bool [n]: block k touches block k-1 (the floor for k = 0) at rest."""
    gid = lambda name: import_mujoco().mj_name2id(model, import_mujoco().mjtObj.mjOBJ_GEOM, name)
    below = [gid("floor")] + [gid(f"g{k}") for k in range(n - 1)]
    pairs = {frozenset((a, b)) for a, b, dist in _contacts(model, data) if dist < 2e-3}
    return np.array([frozenset((gid(f"g{k}"), below[k])) in pairs for k in range(n)])


def penetration(model, data, n: int) -> np.ndarray:
    """float [n] >= 0: block k's deepest overlap with any other geom (blocks, floor, walls), scene units."""
    mj = import_mujoco()
    block = {mj.mj_name2id(model, mj.mjtObj.mjOBJ_GEOM, f"g{k}"): k for k in range(n)}
    depth = np.zeros(n)
    for a, b, dist in _contacts(model, data):
        for g in (a, b):
            if g in block:
                depth[block[g]] = max(depth[block[g]], -dist)
    return depth


def is_stable(blocks: list[dict], seconds: float = 2.0, tolerance: float = 0.05) -> bool:
    mj = import_mujoco()
    model = mj.MjModel.from_xml_string(tower_xml(blocks))
    data = mj.MjData(model)
    start = np.array([b["pos"] for b in blocks])
    return bool(np.linalg.norm(simulate(model, data, seconds) - start, axis=1).max() < tolerance)


_RENDERERS: dict = {}


@atexit.register
def _close() -> None:
    for r in _RENDERERS.values():
        r.close()
    _RENDERERS.clear()


def meta(p: ShapeStacksParams) -> SceneMeta:
    return SceneMeta(name="shapestacks", source="common.data.shapestacks", version="1",
                     image_size=(p.size, p.size), max_objects=p.max_blocks, params=vars(p).copy(),
                     factors=(FactorSpec("shape", "categorical", values=SHAPES),
                              FactorSpec("colour", "continuous", shape=(3,)),
                              FactorSpec("size", "continuous", shape=(3,)),
                              *(FactorSpec(a, "continuous") for a in ("x", "y", "z")),
                              FactorSpec("supported", "categorical", values=("no", "yes")),
                              FactorSpec("tower_stable", "categorical", values=("no", "yes"))))


def scene_model(blocks: list[dict], rng: np.random.Generator, p: ShapeStacksParams):
    """MuJoCo model and data of a tower before random walls and one of the floors."""
    mj = import_mujoco()
    walls = [tuple(rng.uniform(.2, .9, 3)) for _ in range(3)]
    model = mj.MjModel.from_xml_string(tower_xml(blocks, int(rng.integers(FLOORS)), walls))
    model.vis.global_.fovy = p.fovy
    return model, mj.MjData(model)


def framing(blocks: list[dict]) -> tuple[tuple[float, float, float], float]:
    """The camera's target and distance for a tower: framed by its top, the highest point of any block. For a
    built tower that is the sum of the block heights; for a judge's failure scene (a block lifted, sunk or
    removed) it is what the image shows, not the heights of the blocks (which no generated image carries)."""
    height = max(b["pos"][2] + b["half"][2] for b in blocks)
    return (0.0, 0.0, height / 2), min(1.4 + 0.8 * height, 2.7)  # the distance stays inside the walls (at 3)


def render_scene(model, data, blocks: list[dict], rng: np.random.Generator, p: ShapeStacksParams,
                 azimuth: float | None = None):
    """The tower seen from a random (or the given) azimuth in degrees and a random elevation, framed by its
    top (framing()): image uint8 [H,W,3], mask uint8 [H,W] (block k is k + 1)."""
    mj = import_mujoco()
    if p.size not in _RENDERERS:
        template = mj.MjModel.from_xml_string(tower_xml(build_tower(np.random.default_rng(0), p.max_blocks, False)))
        template.vis.global_.fovy = p.fovy
        _RENDERERS[p.size] = OffscreenRenderer(template, p.size, p.size)
    target, distance = framing(blocks)
    azimuth = rng.uniform(0, 360) if azimuth is None else azimuth
    image, geom = _RENDERERS[p.size].render(model, data, target, distance, azimuth, rng.uniform(-25, -5))
    mask = np.zeros(geom.shape, np.uint8)
    for k in range(len(blocks)):
        mask[geom == mj.mj_name2id(model, mj.mjtObj.mjOBJ_GEOM, f"g{k}")] = k + 1
    return image, mask


def generate(n: int, rng: np.random.Generator, p: ShapeStacksParams) -> dict[str, np.ndarray]:
    m = p.max_blocks
    out = {k: [] for k in ("image", "mask", "shape", "colour", "size", "xyz", "supported", "stable", "count")}
    for _ in range(n):
        count = int(rng.integers(p.min_blocks, m + 1))
        blocks = build_tower(rng, count, rng.random() < p.unstable_fraction)
        model, data = scene_model(blocks, rng, p)
        supported = support_contacts(model, data, count)
        image, mask = render_scene(model, data, blocks, rng, p)
        moved = np.linalg.norm(simulate(model, data, p.sim_seconds) - np.array([b["pos"] for b in blocks]), axis=1)
        pad = lambda a: np.pad(np.asarray(a, np.float64), [(0, m - count)] + [(0, 0)] * (np.ndim(a) - 1))
        out["image"].append(image), out["mask"].append(mask), out["count"].append(count)
        out["shape"].append(pad([SHAPES.index(b["shape"]) for b in blocks]))
        out["colour"].append(pad([b["rgb"] for b in blocks])), out["size"].append(pad([b["half"] for b in blocks]))
        out["xyz"].append(pad([b["pos"] for b in blocks])), out["supported"].append(pad(supported))
        out["stable"].append(float(moved.max() < p.stable_tolerance))
    count = np.array(out["count"])
    active = np.arange(m)[None] < count[:, None]
    mask = np.stack(out["mask"])
    visible = np.stack([(mask == k + 1).any((1, 2)) for k in range(m)], 1) & active
    xyz = np.stack(out["xyz"]).astype(np.float32)
    stable = np.array(out["stable"])[:, None] * active
    return {"image": np.stack(out["image"]), "mask": mask, "num_objects": visible.sum(1).astype(np.int32),
            "visibility": visible.astype(np.uint8), "factor.shape": np.stack(out["shape"]).astype(np.int32),
            "factor.colour": np.stack(out["colour"]).astype(np.float32),
            "factor.size": np.stack(out["size"]).astype(np.float32),
            "factor.x": xyz[..., 0], "factor.y": xyz[..., 1], "factor.z": xyz[..., 2],
            "factor.supported": np.stack(out["supported"]).astype(np.int32), "factor.tower_stable": stable.astype(np.int32)}
