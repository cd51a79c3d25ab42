"""Scene generators: images/s on this machine (target >= 2,000 img/s on 2 cores for Tetrominoes and
the sprites family), one process, after a warm-up call that builds any cached templates."""
from __future__ import annotations

import time

import numpy as np

from benchmarks.common import table
from common.data.registry import GENERATORS
from common.provenance import hardware

CASES = [("tetrominoes", {}), ("multi_dsprites", {}), ("sprites", {}), ("sprites", {"num_objects": 3}),
         ("sprites", {"variant": "random"}), ("sprites", {"variant": "quadrant", "palette": "id"}),
         ("sprites", {"textured_background": True})]
N = 5000


def images_per_second(name: str, params: dict) -> float:
    g = GENERATORS[name]
    p = g.params(**params)
    g.generate(64, np.random.default_rng(0), p)  # warm-up
    tic = time.perf_counter()
    g.generate(N, np.random.default_rng(1), p)
    return N / (time.perf_counter() - tic)


def main() -> None:
    rows = [{"generator": name, "params": params or "-", "img/s": images_per_second(name, params)}
            for name, params in CASES]
    print(f"{N} scenes per generator, one process, on {hardware()}")
    print(table(rows))
