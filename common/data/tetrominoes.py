"""Tetrominoes (IODINE App. A.3, DeepMind multi_object_datasets): 35x35, three tetrominoes of four
5x5-pixel blocks, one of six colours each, black background, placed without overlap.

Deviation: the paper counts 17 tetrominoes "counting rotations" without listing them; there are 19
fixed tetrominoes (I 2, O 1, T 4, S 2, Z 2, J 4, L 4) and we use all 19.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.data.schema import FactorSpec, SceneMeta

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255),
           "yellow": (255, 255, 0), "magenta": (255, 0, 255), "cyan": (0, 255, 255)}

# Fixed tetrominoes as (row, col) cells.
SHAPES = {
    "I0": [(0, 0), (0, 1), (0, 2), (0, 3)], "I1": [(0, 0), (1, 0), (2, 0), (3, 0)],
    "O": [(0, 0), (0, 1), (1, 0), (1, 1)],
    "T0": [(0, 0), (0, 1), (0, 2), (1, 1)], "T1": [(0, 1), (1, 0), (1, 1), (2, 1)],
    "T2": [(0, 1), (1, 0), (1, 1), (1, 2)], "T3": [(0, 0), (1, 0), (1, 1), (2, 0)],
    "S0": [(0, 1), (0, 2), (1, 0), (1, 1)], "S1": [(0, 0), (1, 0), (1, 1), (2, 1)],
    "Z0": [(0, 0), (0, 1), (1, 1), (1, 2)], "Z1": [(0, 1), (1, 0), (1, 1), (2, 0)],
    "J0": [(0, 1), (1, 1), (2, 0), (2, 1)], "J1": [(0, 0), (1, 0), (1, 1), (1, 2)],
    "J2": [(0, 0), (0, 1), (1, 0), (2, 0)], "J3": [(0, 0), (0, 1), (0, 2), (1, 2)],
    "L0": [(0, 0), (1, 0), (2, 0), (2, 1)], "L1": [(0, 0), (0, 1), (0, 2), (1, 0)],
    "L2": [(0, 0), (0, 1), (1, 1), (2, 1)], "L3": [(0, 2), (1, 0), (1, 1), (1, 2)],
}


@dataclass
class TetrominoesParams:
    size: int = 35
    block: int = 5
    num_objects: int = 3


def _pixel_offsets(block: int) -> tuple[np.ndarray, np.ndarray]:
    """Per shape: pixel (dy, dx) offsets [S, 4*block^2, 2] and extent (h, w) [S, 2]."""
    dy, dx = np.mgrid[0:block, 0:block].reshape(2, -1)
    offsets, extent = [], []
    for cells in SHAPES.values():
        c = np.array(cells)
        offsets.append(np.concatenate([np.stack([r * block + dy, q * block + dx], 1) for r, q in c]))
        extent.append((c.max(0) + 1) * block)
    return np.stack(offsets), np.stack(extent)


def meta(p: TetrominoesParams) -> SceneMeta:
    return SceneMeta(
        name="tetrominoes", source="common.data.tetrominoes", version="1", image_size=(p.size, p.size),
        max_objects=p.num_objects, params=vars(p).copy(),
        factors=(FactorSpec("shape", "categorical", values=tuple(SHAPES)),
                 FactorSpec("colour", "categorical", values=tuple(COLOURS)),
                 FactorSpec("x", "continuous"), FactorSpec("y", "continuous")))


def generate(n: int, rng: np.random.Generator, p: TetrominoesParams) -> dict[str, np.ndarray]:
    offsets, extent = _pixel_offsets(p.block)  # [S,P,2], [S,2]
    m = p.num_objects
    mask = np.zeros((n, p.size, p.size), np.uint8)
    shape = np.zeros((n, m), np.int32)
    top_left = np.zeros((n, m, 2), np.int64)
    rows = np.arange(n)
    for k in range(m):
        todo = rows
        while len(todo):  # rejection sampling, vectorised over the scenes still overlapping
            s = rng.integers(len(SHAPES), size=len(todo))
            pos = (rng.random((len(todo), 2)) * (p.size - extent[s] + 1)).astype(np.int64)  # [T,2]
            pix = pos[:, None, :] + offsets[s]  # [T,P,2]
            free = ~(mask[todo[:, None], pix[..., 0], pix[..., 1]] > 0).any(1)
            ok = todo[free]
            mask[ok[:, None], pix[free, :, 0], pix[free, :, 1]] = k + 1
            shape[ok, k], top_left[ok, k] = s[free], pos[free]
            todo = todo[~free]
    colour = rng.integers(len(COLOURS), size=(n, m)).astype(np.int32)
    palette = np.array([(0, 0, 0), *COLOURS.values()], np.uint8)  # label 0 -> black
    label_colour = np.concatenate([np.full((n, 1), -1), colour], 1) + 1  # [N, 1+M] into palette
    image = palette[np.take_along_axis(label_colour, mask.reshape(n, -1).astype(np.int64), 1)]
    centre = top_left + extent[shape] / 2.0  # [N,M,2] (y, x) of the bounding-box centre
    return {"image": image.reshape(n, p.size, p.size, 3), "mask": mask,
            "num_objects": np.full(n, m, np.int32), "visibility": np.ones((n, m), np.uint8),
            "factor.shape": shape, "factor.colour": colour,
            "factor.x": centre[..., 1].astype(np.float32), "factor.y": centre[..., 0].astype(np.float32)}


def compose(pieces: list[tuple[str, int, int, str]], p: TetrominoesParams | None = None) -> dict[str, np.ndarray]:
    """One hand-placed scene (e.g. IODINE Fig. 10's ambiguous arrangement) from pieces
    (shape name, top-left pixel row, column, colour name): image [H,W,3] uint8, mask [H,W] labels 1..M."""
    p = p or TetrominoesParams()
    image = np.zeros((p.size, p.size, 3), np.uint8)
    mask = np.zeros((p.size, p.size), np.uint8)
    offsets, _ = _pixel_offsets(p.block)
    for label, (shape, row, col, colour) in enumerate(pieces, 1):
        if shape not in SHAPES or colour not in COLOURS:
            raise ValueError(f"piece {label}: unknown shape {shape!r} or colour {colour!r} "
                             f"(shapes: {', '.join(SHAPES)}; colours: {', '.join(COLOURS)})")
        pix = offsets[list(SHAPES).index(shape)] + (row, col)  # [P,2]
        if pix.min() < 0 or pix.max() >= p.size or mask[pix[:, 0], pix[:, 1]].any():
            raise ValueError(f"piece {label} ({shape} at {row},{col}) leaves the {p.size}px image or overlaps")
        mask[pix[:, 0], pix[:, 1]] = label
        image[pix[:, 0], pix[:, 1]] = COLOURS[colour]
    return {"image": image, "mask": mask}
