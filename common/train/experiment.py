"""An experiment = model class + its config + data + TrainConfig, resolved from YAML with a profile."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from common.config import ConfigError, at_least, deep_merge, flatten, from_dict, load_yaml, resolve_profile, to_dict
from common.data import GENERATORS, SceneMeta, generate_split, load_meta, load_split
from common.train.loop import TrainConfig

# Keys that may change between a run and its resumption: they do not alter the trajectory. `data.path` is where
# the images are, which moves with the run (another machine, another output root: common.lease); whether they
# are the same images is the SHA-256 the run recorded in data.json (common.train.__main__.check_data).
RESUMABLE_KEYS = {"train.steps", "train.save_every", "train.keep_last", "train.log_every", "data.path"}


@dataclass
class DataConfig:
    """A generator run in memory (`name`, `params`, `seed`) or a folder from `python -m common.data` (`path`)."""

    name: str = "toy_shapes"
    params: dict = field(default_factory=dict)
    seed: int = field(default=0, metadata=at_least(0))
    n_train: int = field(default=512, metadata=at_least(0))
    n_eval: int = field(default=320, metadata=at_least(0))  # held-out scenes evaluated (EMORL, GENESIS-v2, SRI: 320)
    path: str | None = None
    train_split: str = "train"
    eval_split: str = "test"


@dataclass
class ExperimentConfig:
    model: str  # "package.module:Class", a HubModel subclass
    model_config: dict = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: dict = field(default_factory=dict)  # paper-specific evaluation settings, checked by the paper
    profile: str | None = None


def load_experiment(path: str | Path, profile: str | None = None, overrides: dict | None = None) -> ExperimentConfig:
    raw = resolve_profile(load_yaml(path), profile)
    raw = deep_merge(raw, overrides or {})
    raw["profile"] = profile
    return from_dict(ExperimentConfig, raw)


def model_class(spec: str):
    module, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"model '{spec}' cannot be imported ({err})") from err


def build_model(exp: ExperimentConfig):
    """The model of `exp`; a config the model rejects (ValueError) is a ConfigError naming model_config."""
    cls = model_class(exp.model)
    config = from_dict(cls.config_class, exp.model_config, "model_config")
    try:
        return cls(config)
    except ValueError as err:
        raise ConfigError(f"model_config for {cls.__name__}: {err}") from err


def load_scenes(data: DataConfig, split: str, n: int | None = None) -> tuple[SceneMeta, dict[str, torch.Tensor]]:
    """A split in memory as tensors (image uint8 [N,H,W,3], mask uint8 [N,H,W], ...), the first n scenes."""
    if data.path is not None:
        meta, batch = load_meta(data.path), load_split(data.path, split)
    else:
        meta, batch = generate_split(data.name, n if n is not None else data.n_train, data.seed, split, data.params)
    return meta, {k: torch.from_numpy(np.array(v[:n])) for k, v in batch.items()}


def load_train_images(data: DataConfig) -> torch.Tensor:
    """uint8 [N,H,W,3] training images, in memory."""
    return load_scenes(data, data.train_split, None if data.path else data.n_train)[1]["image"]


def data_source(data: DataConfig) -> str:
    """meta.json's `source` of the scenes `data` names: a generator (e.g. common.data.tetrominoes, our procedural
    stand-in) or common.data.convert:<release> (a published release)."""
    if data.path is not None:
        return load_meta(data.path).source
    g = GENERATORS[data.name]  # a name without a generator has failed in load_scenes already
    return g.meta(from_dict(g.params, data.params, "params")).source


def check_resumable(saved: dict, current: dict) -> None:
    """Refuse to resume under a config that differs outside RESUMABLE_KEYS."""
    a, b = flatten(saved), flatten(current)
    differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in RESUMABLE_KEYS)
    if differ:
        details = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in differ[:5])
        raise ConfigError(f"refusing to resume under a different config ({details})")


def write_config(exp: ExperimentConfig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(to_dict(exp), sort_keys=False))
