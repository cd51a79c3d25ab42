"""Objects Room stand-in rendered with MuJoCo (as the original was): a square room with randomly
coloured walls and floor, 1-3 objects of several shapes and colours resting on the floor, and a
camera on a ring facing the centre with varying pitch; 64x64.

Labels follow the published masks: four background entities (0 sky, 1 floor, 2 and 3 the two wall
groups), then the objects. One model and one GL context are reused; each scene edits the model's
colours, shapes, sizes and positions in place.
"""
from __future__ import annotations

import atexit
from dataclasses import dataclass

import numpy as np

from common.data.mujoco_render import OffscreenRenderer, import_mujoco
from common.data.schema import FactorSpec, SceneMeta

SHAPES = ("box", "sphere", "cylinder", "capsule", "ellipsoid")
ROOM = 3.0  # half-width of the room
WALL_HEIGHT = 1.2


@dataclass
class ObjectsRoomParams:
    size: int = 64
    min_objects: int = 1
    max_objects: int = 3
    distance: tuple[float, float] = (2.0, 2.8)  # camera ring radius, inside the room
    elevation: tuple[float, float] = (-35.0, -12.0)  # pitch in degrees


def _xml(max_objects: int) -> str:
    walls = "".join(
        f'<geom name="wall{i}" type="box" pos="{x} {y} {WALL_HEIGHT / 2}" size="{sx} {sy} {WALL_HEIGHT / 2}"/>'
        for i, (x, y, sx, sy) in enumerate([(ROOM, 0, 0.05, ROOM), (-ROOM, 0, 0.05, ROOM),
                                            (0, ROOM, ROOM, 0.05), (0, -ROOM, ROOM, 0.05)]))
    objects = "".join(f'<geom name="obj{k}" type="box" pos="0 0 -5" size=".3 .3 .3"/>' for k in range(max_objects))
    return (f'<mujoco><visual><headlight ambient=".35 .35 .35" diffuse=".5 .5 .5"/></visual><worldbody>'
            f'<light pos="0 0 6" dir="0 0 -1" diffuse=".6 .6 .6"/>'
            f'<geom name="floor" type="plane" size="{ROOM} {ROOM} 1"/>{walls}{objects}</worldbody></mujoco>')


class ObjectsRoomRenderer:
    """The reusable model, data and GL context of one process."""

    def __init__(self, p: ObjectsRoomParams):
        mj = self.mj = import_mujoco()
        self.model = mj.MjModel.from_xml_string(_xml(p.max_objects))
        self.data = mj.MjData(self.model)
        self.renderer = OffscreenRenderer(self.model, p.size, p.size)
        name = lambda n: mj.mj_name2id(self.model, mj.mjtObj.mjOBJ_GEOM, n)
        self.floor, self.walls = name("floor"), [name(f"wall{i}") for i in range(4)]
        self.objects = [name(f"obj{k}") for k in range(p.max_objects)]
        self.types = {s: getattr(mj.mjtGeom, f"mjGEOM_{s.upper()}") for s in SHAPES}

    def render(self, scene: dict, i: int):
        m = self.model
        m.geom_rgba[self.floor] = (*scene["floor"][i], 1)
        for w, g in enumerate(self.walls):
            m.geom_rgba[g] = (*scene["walls"][i, w % 2], 1)
        for k, g in enumerate(self.objects):
            active = scene["active"][i, k]
            r = scene["scale"][i, k]
            shape = SHAPES[scene["shape"][i, k]]
            size = {"box": (r, r, r), "sphere": (r, r, r), "cylinder": (r, r, 0), "capsule": (r * 0.6, r * 0.6, 0),
                    "ellipsoid": (r * 1.3, r * 0.8, r * 0.8)}[shape]
            height = {"box": r, "sphere": r, "cylinder": r, "capsule": r * 1.2, "ellipsoid": r * 0.8}[shape]
            m.geom_type[g] = self.types[shape]
            m.geom_size[g] = (size[0], size[1], size[2] if shape not in ("cylinder", "capsule") else r * (1 if shape == "cylinder" else 0.6))
            m.geom_pos[g] = (*scene["xy"][i, k], height) if active else (0, 0, -10)
            m.geom_quat[g] = (np.cos(scene["angle"][i, k] / 2), 0, 0, np.sin(scene["angle"][i, k] / 2))
            m.geom_rgba[g] = (*scene["colour"][i, k], 1)
        self.mj.mj_forward(m, self.data)
        image, geom = self.renderer.render(m, self.data, (0, 0, 0.3), scene["distance"][i], scene["azimuth"][i],
                                           scene["elevation"][i])
        labels = np.zeros(geom.shape, np.uint8)  # sky
        labels[geom == self.floor] = 1
        for w, g in enumerate(self.walls):
            labels[geom == g] = 2 + w % 2
        for k, g in enumerate(self.objects):
            labels[geom == g] = 4 + k
        return image, labels


_RENDERERS: dict = {}


@atexit.register
def _close() -> None:  # free the GL context before the interpreter tears MuJoCo down
    for r in _RENDERERS.values():
        r.renderer.close()
    _RENDERERS.clear()


def meta(p: ObjectsRoomParams) -> SceneMeta:
    return SceneMeta(name="objects_room", source="common.data.objects_room", version="1",
                     image_size=(p.size, p.size), max_objects=p.max_objects, num_background=4,
                     params=vars(p).copy(),
                     factors=(FactorSpec("shape", "categorical", values=SHAPES),
                              FactorSpec("colour", "continuous", shape=(3,)), FactorSpec("scale", "continuous"),
                              FactorSpec("x", "continuous"), FactorSpec("y", "continuous"),
                              FactorSpec("rotation", "continuous")))


def sample(n: int, p: ObjectsRoomParams, rng: np.random.Generator) -> dict[str, np.ndarray]:
    m = p.max_objects
    count = rng.integers(p.min_objects, m + 1, size=n)
    scale = rng.uniform(0.25, 0.45, size=(n, m))
    xy = np.zeros((n, m, 2))
    for k in range(m):  # keep objects apart, near the middle of the room where the camera looks
        todo = np.arange(n)
        while len(todo):
            cand = rng.uniform(-1.3, 1.3, size=(len(todo), 2))
            gap = np.linalg.norm(xy[todo, :k] - cand[:, None], axis=-1) - scale[todo, :k] - scale[todo, k, None]
            ok = (gap > 0.3).all(1) if k else np.ones(len(todo), bool)
            xy[todo[ok], k] = cand[ok]
            todo = todo[~ok]
    return {"count": count, "active": np.arange(m)[None] < count[:, None], "scale": scale, "xy": xy,
            "shape": rng.integers(len(SHAPES), size=(n, m)), "angle": rng.uniform(0, 2 * np.pi, (n, m)),
            "colour": rng.uniform(0.1, 1.0, (n, m, 3)), "floor": rng.uniform(0.2, 0.9, (n, 3)),
            "walls": rng.uniform(0.2, 0.9, (n, 2, 3)), "distance": rng.uniform(*p.distance, n),
            "azimuth": rng.uniform(0, 360, n), "elevation": rng.uniform(*p.elevation, n)}


def generate(n: int, rng: np.random.Generator, p: ObjectsRoomParams) -> dict[str, np.ndarray]:
    key = (p.size, p.max_objects)
    if key not in _RENDERERS:
        _RENDERERS[key] = ObjectsRoomRenderer(p)
    r, scene = _RENDERERS[key], sample(n, p, rng)
    images, masks = zip(*(r.render(scene, i) for i in range(n)))
    mask = np.stack(masks)
    visible = np.stack([(mask == 4 + k).any((1, 2)) for k in range(p.max_objects)], 1) & scene["active"]
    a = scene["active"]
    return {"image": np.stack(images), "mask": mask, "num_objects": visible.sum(1).astype(np.int32),
            "visibility": visible.astype(np.uint8), "factor.shape": (scene["shape"] * a).astype(np.int32),
            "factor.colour": (scene["colour"] * a[..., None]).astype(np.float32),
            "factor.scale": (scene["scale"] * a).astype(np.float32),
            "factor.x": (scene["xy"][..., 0] * a).astype(np.float32), "factor.y": (scene["xy"][..., 1] * a).astype(np.float32),
            "factor.rotation": (scene["angle"] * a).astype(np.float32)}
