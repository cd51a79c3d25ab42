"""Generators by name: params dataclass, SceneMeta factory and batch function."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.config import ConfigError, from_dict
from common.data import clevr, dsprites, objects_room, shapestacks, sprites, tetrominoes, toy
from common.data.schema import concat
from common.data.store import save_dataset

SPLITS = ("train", "val", "test")
CHUNK = 10_000


@dataclass(frozen=True)
class Generator:
    params: type
    meta: Callable
    generate: Callable


GENERATORS = {
    "toy_shapes": Generator(toy.ToyParams, toy.meta, toy.generate),
    "tetrominoes": Generator(tetrominoes.TetrominoesParams, tetrominoes.meta, tetrominoes.generate),
    "multi_dsprites": Generator(dsprites.DSpritesParams, dsprites.meta, dsprites.generate),
    "sprites": Generator(sprites.SpritesParams, sprites.meta, sprites.generate),
    "clevr6": Generator(clevr.ClevrParams, clevr.meta, clevr.generate),
    "clevr10": Generator(clevr.Clevr10Params, clevr.meta, clevr.generate),
    "clevr_easy": Generator(clevr.ClevrEasyParams, clevr.meta, clevr.generate),
    "clevr_hard": Generator(clevr.ClevrHardParams, clevr.meta, clevr.generate),
    "clevr_tex": Generator(clevr.ClevrTexParams, clevr.meta, clevr.generate),
    "objects_room": Generator(objects_room.ObjectsRoomParams, objects_room.meta, objects_room.generate),
    "shapestacks": Generator(shapestacks.ShapeStacksParams, shapestacks.meta, shapestacks.generate),
}


def generator(name: str) -> Generator:
    if name not in GENERATORS:
        raise ConfigError(f"unknown generator '{name}' (available: {', '.join(GENERATORS)})")
    return GENERATORS[name]


def generate_split(name: str, n: int, seed: int, split: str = "train", params: dict | None = None):
    """n scenes of split `split`, deterministic given (seed, split): returns (meta, batch)."""
    g = generator(name)
    p = from_dict(g.params, params or {}, "params")
    meta = g.meta(p)
    index = SPLITS.index(split) if split in SPLITS else len(SPLITS)
    batches = [g.generate(min(CHUNK, n - start), np.random.default_rng([seed, index, start // CHUNK]), p)
               for start in range(0, n, CHUNK)]
    return meta, concat(batches)


def generate_dataset(name: str, out: str | Path, sizes: dict[str, int], seed: int, params: dict | None = None,
                     overwrite: bool = False) -> Path:
    """Generate every split with n > 0 and write them atomically with their metadata."""
    splits, meta = {}, None
    for split, n in sizes.items():
        if n > 0:
            meta, splits[split] = generate_split(name, n, seed, split, params)
    if meta is None:
        raise ConfigError("nothing to generate: every split size is 0")
    return save_dataset(out, dataclasses.replace(meta, seed=seed), splits, overwrite)
