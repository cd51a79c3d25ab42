"""The two rules the judges learn, applied to a scene's ground truth, and the Wilson interval.

Generation accuracy (SVQ §5.1.1, Table 2): "each image must have exactly one object that has a unique
property. All other properties in the scene will have at least one duplicate among the other objects."
Read as: across all properties, exactly one (property, value) occurs once. So no unique value, unique values
on two objects, and one object unique in two properties at once are all failures.

S-Acc (SRI §5.3, LOM §4): a generated ShapeStacks scene counts when it holds "a physically plausible stack
of blocks, i.e., all blocks in the stack are touching each other"; SRI App. A.5 Fig. 8's failures are
floating blocks and blocks occupying the same space.
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np


def unique_values(codes: np.ndarray) -> list[tuple[int, int]]:
    """codes [M,P] (one row per object, one column per property) -> [(object, property)] whose value no
    other object shares."""
    out = []
    for p in range(codes.shape[1]):
        counts = Counter(codes[:, p].tolist())
        out += [(k, p) for k in range(len(codes)) if counts[codes[k, p]] == 1]
    return out


def odd_one_out_valid(codes: np.ndarray) -> bool:
    """SVQ's rule on one scene's per-object property codes [M,P]: exactly one unique (object, property)."""
    return len(unique_values(codes)) == 1


TOLERANCE = 0.01  # overlap (scene units; blocks are 0.3-0.6 tall) beyond which two blocks share space


def stack_plausible(touching: np.ndarray, penetration: np.ndarray, tolerance: float = TOLERANCE) -> bool:
    """touching [n] bool: block k rests on block k-1 (the floor for k = 0); penetration [n] >= 0: the
    deepest overlap of block k with any other block, in scene units. Plausible: every block touches its
    support and no two blocks share space beyond `tolerance`."""
    return bool(np.all(touching) and np.all(np.asarray(penetration) <= tolerance))


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95 % by default)."""
    if n <= 0:
        raise ValueError("the Wilson interval needs n >= 1")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)
