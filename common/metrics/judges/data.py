"""Labelled training and test scenes for the judges, made by our own generators; labels come from the
rules (rules.py) applied to the generator's ground truth, never from how a scene was drawn."""
from __future__ import annotations

import numpy as np

from common.data import shapestacks, sprites
from common.metrics.judges.rules import TOLERANCE, odd_one_out_valid, stack_plausible

# SVQ's three generation-accuracy sets (Table 2): 3 objects, 4 objects, 4 objects on textured backgrounds
SPRITE_SETTINGS = ({"num_objects": 3}, {"num_objects": 4}, {"num_objects": 4, "textured_background": True})
# how a scene's codes are drawn: the odd-one-out rule, independent values, and the near misses of the rule
SPRITE_KINDS = ("odd_one_out", "random", "no_unique", "two_objects", "two_properties")


def _absent(values, column: np.ndarray, rng: np.random.Generator) -> int:
    """A palette value that no object has in this property."""
    free = [v for v in values if v not in set(column.tolist())]
    return int(rng.choice(free))


def sprite_codes(kind: str, m: int, rng: np.random.Generator, palette: str = "all") -> np.ndarray:
    """Per-object (colour, shape) codes [m,2] drawn as `kind` says (the label is the rule's, not the kind's)."""
    shapes, colours = sprites.PALETTES[palette]
    values = (colours, shapes)
    if kind == "random":
        return np.stack([rng.choice(colours, m), rng.choice(shapes, m)], 1)
    if kind == "no_unique":  # every value of every property at least twice
        return np.stack([sprites.fill_groups(list(v), m, None, rng) for v in values], 1)
    codes, target, prop = sprites.odd_one_out(m, shapes, colours, rng)
    if kind == "two_objects":  # a second object gets a value of its own in the other property
        other = int(rng.choice([k for k in range(m) if k != target]))
        codes[other, 1 - prop] = _absent(values[1 - prop], codes[:, 1 - prop], rng)
    elif kind == "two_properties":  # the odd object is unique in both properties at once
        codes[target, 1 - prop] = _absent(values[1 - prop], codes[:, 1 - prop], rng)
    elif kind != "odd_one_out":
        raise ValueError(f"unknown sprites kind {kind!r} (choose from {', '.join(SPRITE_KINDS)})")
    return codes


def sprite_scenes(n: int, seed: int, valid_fraction: float = 0.5) -> dict[str, np.ndarray]:
    """n scenes over SVQ's three settings: image uint8 [N,64,64,3], label (rule: valid) [N], codes [N,4,2]
    (colour, shape; -1 past a 3-object scene's objects), centre [N,4,2] (x, y in [0,1]), kind [N] (index
    into SPRITE_KINDS), setting [N] (index into SPRITE_SETTINGS). Half are
    drawn by the odd-one-out rule, the rest evenly from the other kinds."""
    rng = np.random.default_rng([seed, 14])
    m = max(s["num_objects"] for s in SPRITE_SETTINGS)
    parts = {k: [] for k in ("image", "label", "codes", "centre", "kind", "setting")}
    for s, idx in enumerate(np.array_split(np.arange(n), len(SPRITE_SETTINGS))):
        p = sprites.SpritesParams(variant="random", **SPRITE_SETTINGS[s])
        drawn = np.where(rng.random(len(idx)) < valid_fraction, 0, rng.integers(1, len(SPRITE_KINDS), len(idx)))
        codes = np.stack([sprite_codes(SPRITE_KINDS[k], p.num_objects, rng) for k in drawn]) if len(idx) else \
            np.zeros((0, p.num_objects, 2), np.int64)
        image, _, centre = sprites.render(codes, rng, p)
        pad = [(0, 0), (0, m - p.num_objects), (0, 0)]
        parts["image"].append(image), parts["kind"].append(drawn), parts["setting"].append(np.full(len(idx), s))
        parts["label"].append(np.array([odd_one_out_valid(c) for c in codes], bool))
        parts["codes"].append(np.pad(codes, pad, constant_values=-1))
        parts["centre"].append(np.pad(centre, pad).astype(np.float32))
    out = {k: np.concatenate(v) for k, v in parts.items()}
    out["kind"], out["setting"] = out["kind"].astype(np.int64), out["setting"].astype(np.int64)
    return out


# S-Acc (SRI §5.3, App. A.5 Fig. 8): towers as the dataset builds them, and the failures a generative model
# makes, each made at one block (and carried by every block above it)
STACK_KINDS = ("tower", "lifted", "pushed_off", "interpenetrating", "removed")


def _moved(block: dict, dx: float = 0.0, dy: float = 0.0, dz: float = 0.0) -> dict:
    x, y, z = block["pos"]
    return {**block, "pos": (x + dx, y + dy, z + dz)}


def _extent(block: dict, direction: np.ndarray) -> float:
    """Half the width of a block's footprint along a horizontal unit vector (boxes are axis-aligned)."""
    if block["shape"] == "box":
        return float(abs(direction[0]) * block["half"][0] + abs(direction[1]) * block["half"][1])
    return float(block["half"][0])  # cylinder radius; a sphere's half sizes are all its radius


def stack_failure(blocks: list[dict], kind: str, rng: np.random.Generator, azimuth: float) -> list[dict]:
    """A copy of a built tower with one failure made so that a camera at `azimuth` (degrees) sees it
    (magnitudes in scene units; blocks are 0.3-0.6 tall): `lifted` a block and all above it raised by
    0.2-0.5 (the first block: off the floor); `pushed_off` moved across the line of sight until the
    circles around the two footprints are 0.05-0.3 apart; `interpenetrating` sunk into its support by
    40-80 % of the lower of the two heights and moved across the line of sight until its centre is
    |w_upper - w_support| + (30-80 %) min(w_upper, w_support) from the support's (w: half-widths across), so
    that each block sticks out beyond the other on one side and the image shows the sunk part (centred, a
    narrower block sunk into a wider one looks like a shorter block resting on it); `removed` a block taken
    out under one that stays where it was."""
    n = len(blocks)
    if kind == "tower":
        return list(blocks)
    if kind == "removed":
        if n < 3:
            raise ValueError("removing a block under another needs a tower of at least 3 blocks")
        k = int(rng.integers(1, n - 1))
        return blocks[:k] + blocks[k + 1:]
    if kind not in STACK_KINDS:
        raise ValueError(f"unknown stack kind {kind!r} (choose from {', '.join(STACK_KINDS)})")
    k = int(rng.integers(0 if kind == "lifted" else 1, n))
    a = np.deg2rad(azimuth)
    across = rng.choice([-1.0, 1.0]) * np.array([-np.sin(a), np.cos(a)])  # horizontal in the image
    below, block = blocks[k - 1], blocks[k]
    if kind == "lifted":
        shift = (0.0, 0.0, rng.uniform(0.2, 0.5))
    elif kind == "pushed_off":
        clear = np.hypot(*below["half"][:2]) + np.hypot(*block["half"][:2]) + rng.uniform(0.05, 0.3)
        target = np.array(below["pos"][:2]) + clear * across
        shift = (*(target - np.array(block["pos"][:2])), 0.0)
    else:  # each block sticks out beyond the other on one side, so neither hides the sunk part
        depth = rng.uniform(0.4, 0.8) * 2 * min(block["half"][2], below["half"][2])
        upper, support = _extent(block, across), _extent(below, across)
        offset = abs(upper - support) + rng.uniform(0.3, 0.8) * min(upper, support)  # centre to centre, across
        now = (np.array(block["pos"][:2]) - np.array(below["pos"][:2])) @ across
        shift = (*((offset - now) * across), -depth)
    return blocks[:k] + [_moved(b, *shift) for b in blocks[k:]]


def stack_scenes(n: int, seed: int, valid_fraction: float = 0.5,
                 p: shapestacks.ShapeStacksParams | None = None) -> dict[str, np.ndarray]:
    """n ShapeStacks scenes: image uint8 [N,H,W,3], mask uint8 [N,H,W] (block k is k + 1), label [N] (the
    S-Acc rule on the geometry: every block touches its support and none overlaps another by more than
    0.01), floating and overlapping [N,M] (per block: no contact with its support; an overlap beyond 0.01),
    kind [N] (index into STACK_KINDS), unstable [N] (the tower was built unstable: one block reaching 1.05-1.6
    times its support's half-width off centre, or a sphere on top resting on its support's edge). Towers come from the dataset's own builder (stable and unstable
    alike); half the scenes are drawn as failures, evenly over the failure kinds."""
    p = p or shapestacks.ShapeStacksParams()
    rng = np.random.default_rng([seed, 15])
    out = {k: [] for k in ("image", "mask", "label", "floating", "overlapping", "kind", "unstable")}
    for _ in range(n):
        kind = 0 if rng.random() < valid_fraction else int(rng.integers(1, len(STACK_KINDS)))
        low = 3 if STACK_KINDS[kind] == "removed" else p.min_blocks
        size = int(rng.integers(low, p.max_blocks + 1))
        unstable = rng.random() < p.unstable_fraction
        tower = shapestacks.build_tower(rng, size, unstable)
        azimuth = rng.uniform(0, 360)
        blocks = stack_failure(tower, STACK_KINDS[kind], rng, azimuth)
        model, data = shapestacks.scene_model(blocks, rng, p)
        touching = shapestacks.support_contacts(model, data, len(blocks))
        depth = shapestacks.penetration(model, data, len(blocks))
        image, mask = shapestacks.render_scene(model, data, blocks, rng, p, azimuth)
        pad = lambda a: np.pad(a, (0, p.max_blocks - len(blocks)))
        out["image"].append(image), out["mask"].append(mask), out["kind"].append(kind), out["unstable"].append(unstable)
        out["label"].append(stack_plausible(touching, depth, TOLERANCE))
        out["floating"].append(pad(~touching)), out["overlapping"].append(pad(depth > TOLERANCE))
    return {k: np.stack(v) for k, v in out.items()}
