"""3D scene families: images/s at 64 and 128 px (targets on 2 cores: >= 100 img/s at 64 px for the
CLEVR family, >= 30 img/s for the MuJoCo families), one process, eager PyTorch, after a warm-up."""
from __future__ import annotations

import time

import numpy as np

from benchmarks.common import table
from common.data.registry import GENERATORS
from common.provenance import hardware

NAMES = ["clevr6", "clevr10", "clevr_easy", "clevr_hard", "clevr_tex"]


def images_per_second(name: str, size: int, n: int) -> float:
    g = GENERATORS[name]
    p = g.params(size=size)
    g.generate(4, np.random.default_rng(0), p)
    tic = time.perf_counter()
    g.generate(n, np.random.default_rng(1), p)
    return n / (time.perf_counter() - tic)


def main() -> None:
    names = [n for n in NAMES + ["objects_room", "shapestacks"] if n in GENERATORS]
    rows = [{"family": name, "64 px img/s": images_per_second(name, 64, 128),
             "128 px img/s": images_per_second(name, 128, 32)} for name in names]
    print(f"3D generators, one process, on {hardware()}")
    print(table(rows))
