"""Multi-stability (IODINE §4.3, Fig. 10): on an ambiguous Tetrominoes arrangement, repeated inference
with fresh samples of z can settle on different, equally valid decompositions.

Our arrangement (the paper does not publish its image): two red pieces tile a 2x4-block rectangle,
which four partitions into two tetrominoes explain equally well (I + I, O + O, L + L and
J + J), beside a green T. Each run's hard segmentation of the rectangle is read block by
block and named by the partition it induces.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from common.config import ConfigError
from common.data.tetrominoes import TetrominoesParams, compose
from common.evaluate import device_of
from common.train.loop import to_float_images
from common.viz import save_decomposition

BLOCK = 5
ORIGIN = (5, 5)  # top-left pixel of the ambiguous 2x4-block rectangle
AMBIGUOUS = [("I0", 5, 5, "red"), ("I0", 10, 5, "red"), ("T0", 22, 10, "green")]

_Cells = frozenset[tuple[int, int]]


def _partition(*pieces: list[tuple[int, int]]) -> frozenset[_Cells]:
    return frozenset(frozenset(p) for p in pieces)


EXPLANATIONS = {  # the partitions of the rectangle's 8 blocks (row, column) into two tetrominoes
    "I + I": _partition([(0, 0), (0, 1), (0, 2), (0, 3)], [(1, 0), (1, 1), (1, 2), (1, 3)]),
    "O + O": _partition([(0, 0), (0, 1), (1, 0), (1, 1)], [(0, 2), (0, 3), (1, 2), (1, 3)]),
    "L + L": _partition([(0, 0), (0, 1), (0, 2), (1, 0)], [(0, 3), (1, 1), (1, 2), (1, 3)]),
    "J + J": _partition([(0, 1), (0, 2), (0, 3), (1, 3)], [(0, 0), (1, 0), (1, 1), (1, 2)]),
}


def block_labels(labels: Tensor) -> Tensor:
    """labels [H,W] (slot index per pixel) -> the majority slot of each rectangle block [2,4]."""
    y, x = ORIGIN
    blocks = labels[y:y + 2 * BLOCK, x:x + 4 * BLOCK].reshape(2, BLOCK, 4, BLOCK).permute(0, 2, 1, 3)  # [2,4,5,5]
    return blocks.flatten(2).mode(-1).values  # [2,4]


def explain(labels: Tensor) -> str:
    """The name of the partition a segmentation [H,W] induces on the rectangle (slot order does not
    matter): one of EXPLANATIONS, "one slot" or "other"."""
    cells = block_labels(labels).tolist()
    groups: dict[int, set] = {}
    for r in range(2):
        for c in range(4):
            groups.setdefault(cells[r][c], set()).add((r, c))
    partition = frozenset(frozenset(g) for g in groups.values())
    if len(partition) == 1:
        return "one slot"
    return next((name for name, p in EXPLANATIONS.items() if p == partition), "other")


def figure_rows(names: list[str], assignments: list[tuple], n: int = 4) -> list[int]:
    """Runs to show: the first of each explanation, then further distinct slot assignments."""
    first = {}
    for i, name in enumerate(names):
        first.setdefault(name, i)
    rows = list(first.values())
    seen = {assignments[i] for i in rows}
    for i, a in enumerate(assignments):
        if a not in seen:
            rows.append(i)
            seen.add(a)
    return rows[:n]


def multistability(model, runs: int, seed: int, figure: Path | None = None) -> dict:
    """`runs` inference runs (T = the training iterations) on the ambiguous scene: how often each
    explanation comes out, and how many distinct slot assignments; optionally a figure of one run per
    explanation found (then further distinct slot orderings), up to 4 rows."""
    if tuple(model.config.resolution) != (TetrominoesParams.size,) * 2:
        raise ConfigError(f"multistability needs a {TetrominoesParams.size}px Tetrominoes model, "
                          f"got resolution {tuple(model.config.resolution)}")
    scene = compose(AMBIGUOUS)
    x = to_float_images(torch.as_tensor(scene["image"])[None]).expand(runs, -1, -1, -1)  # [R,3,H,W]
    torch.manual_seed(seed)
    its = model.eval().infer(x.to(device_of(model)))  # each batch row samples its own z: R runs
    masks, means = its["masks"][-1].cpu(), its["means"][-1].cpu()  # [R,K,1,H,W], [R,K,3,H,W]
    labels = masks[:, :, 0].argmax(1)  # [R,H,W]
    names = [explain(l) for l in labels]
    assignments = [tuple(block_labels(l).flatten().tolist()) for l in labels]
    counts = {name: names.count(name) for name in [*EXPLANATIONS, "one slot", "other"]}
    if figure is not None:
        rows = figure_rows(names, assignments)
        save_decomposition(figure, x[rows], (masks[rows] * means[rows]).sum(1), masks[rows], means[rows])
    return {"runs": runs, "counts": counts, "explanations_found": sum(counts[n] > 0 for n in EXPLANATIONS),
            "distinct_slot_assignments": len(set(assignments)), "arrangement": AMBIGUOUS}
