"""Labelled training and test scenes for the judges, made by our own generators; labels come from the
rules (rules.py) applied to the generator's ground truth, never from how a scene was drawn."""
from __future__ import annotations

import numpy as np

from common.data import sprites
from common.metrics.judges.rules import odd_one_out_valid

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
    """n scenes over SVQ's three settings: image uint8 [N,64,64,3], label (rule: valid) [N], kind [N]
    (index into SPRITE_KINDS), setting [N] (index into SPRITE_SETTINGS). Half are drawn by the odd-one-out
    rule, the rest evenly from the other kinds."""
    rng = np.random.default_rng([seed, 14])
    per = np.array_split(np.arange(n), len(SPRITE_SETTINGS))
    images, labels, kinds, settings, counts = [], [], [], [], []
    for s, idx in enumerate(per):
        p = sprites.SpritesParams(variant="random", **SPRITE_SETTINGS[s])
        drawn = np.where(rng.random(len(idx)) < valid_fraction, 0, rng.integers(1, len(SPRITE_KINDS), len(idx)))
        codes = np.stack([sprite_codes(SPRITE_KINDS[k], p.num_objects, rng) for k in drawn]) if len(idx) else \
            np.zeros((0, p.num_objects, 2), np.int64)
        image, _, _ = sprites.render(codes, rng, p)
        images.append(image), kinds.append(drawn), settings.append(np.full(len(idx), s))
        labels.append(np.array([odd_one_out_valid(c) for c in codes], bool))
        counts.append(value_counts(codes))
    return {"image": np.concatenate(images), "label": np.concatenate(labels), "counts": np.concatenate(counts),
            "kind": np.concatenate(kinds).astype(np.int64), "setting": np.concatenate(settings).astype(np.int64)}


def value_counts(codes: np.ndarray) -> np.ndarray:
    """codes [N,M,2] (colour, shape) -> how many objects have each value [N, 7 + 12]: colours, then shapes."""
    n = len(codes)
    colours = np.zeros((n, len(sprites.COLOURS)), np.int64)
    shapes = np.zeros((n, len(sprites.SHAPES)), np.int64)
    for i in range(n):
        np.add.at(colours[i], codes[i, :, 0], 1)
        np.add.at(shapes[i], codes[i, :, 1], 1)
    return np.concatenate([colours, shapes], 1)


def valid_from_counts(counts: np.ndarray) -> np.ndarray:
    """The rule on value counts [N,V]: exactly one value, over all properties, held by a single object."""
    return (counts == 1).sum(1) == 1
