"""One scene schema for every dataset, generated or converted.

A batch of scenes is a dict of numpy arrays:
  image        uint8 [N,H,W,3]
  mask         uint8 [N,H,W]   instance labels; labels < num_background are background entities,
                               object j (0-based) has label num_background + j
  num_objects  int32 [N]       foreground objects in the scene
  visibility   uint8 [N,M]     1 where object slot j holds a visible object (M = max_objects)
  factor.<f>   [N,M,*shape]    per-object factor f: int32 if categorical, float32 if continuous
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

KINDS = ("categorical", "continuous")


@dataclass
class FactorSpec:
    """A per-object ground-truth factor (shape, colour, position, ...)."""

    name: str
    kind: str
    shape: tuple[int, ...] = ()
    values: tuple[str, ...] = ()  # category names, index = stored code

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.int32 if self.kind == "categorical" else np.float32)


@dataclass
class SceneMeta:
    """What a dataset is and where it came from; stored as meta.json beside the splits."""

    name: str
    source: str  # generator or converter
    version: str
    image_size: tuple[int, int]
    max_objects: int
    num_background: int = 1
    factors: tuple[FactorSpec, ...] = ()
    params: dict = field(default_factory=dict)
    seed: int | None = None
    splits: dict = field(default_factory=dict)  # split -> {"n": int, "sha256": str}

    @property
    def background_ids(self) -> tuple[int, ...]:
        return tuple(range(self.num_background))

    def columns(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Column name -> (per-scene shape, dtype)."""
        h, w = self.image_size
        cols = {"image": ((h, w, 3), np.dtype(np.uint8)), "mask": ((h, w), np.dtype(np.uint8)),
                "num_objects": ((), np.dtype(np.int32)), "visibility": ((self.max_objects,), np.dtype(np.uint8))}
        for f in self.factors:
            cols[f"factor.{f.name}"] = ((self.max_objects, *f.shape), f.dtype)
        return cols


def validate(batch: dict[str, np.ndarray], meta: SceneMeta) -> int:
    """Check a batch against the schema; returns N. Raises ValueError naming the column."""
    expected = meta.columns()
    missing, extra = sorted(set(expected) - set(batch)), sorted(set(batch) - set(expected))
    if missing or extra:
        raise ValueError(f"{meta.name}: columns differ from the schema: missing {missing}, unexpected {extra}")
    n = len(batch["image"])
    for name, (shape, dtype) in expected.items():
        a = batch[name]
        if a.shape != (n, *shape) or a.dtype != dtype:
            raise ValueError(f"{meta.name}: column '{name}' is {a.dtype}{list(a.shape)}, "
                             f"expected {dtype}{[n, *shape]}")
    if int(batch["mask"].max(initial=0)) >= meta.num_background + meta.max_objects:
        raise ValueError(f"{meta.name}: mask label {int(batch['mask'].max())} exceeds "
                         f"{meta.num_background} background + {meta.max_objects} object labels")
    return n


def concat(batches: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
