"""IODINE's data: the `prepare` stage, which also makes Fig. 9's scenes with more objects than in
training (K = 11 on 7-9 objects), and their loading for `evaluate`.

Generated data: the training generator with eval.generalisation.params, written to
data/iodine/<dataset>-<profile>/generalisation (inside the stage's DVC output). A config that reads a
converted release (data.path) needs a converted folder too: eval.generalisation.path (the commands
are in the header of configs/clevr6.yaml).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from common.config import ConfigError, from_dict
from common.data import DatasetError, generate_dataset, load_meta
from common.pipeline import ROOT, Stage
from common.pipeline import prepare as prepare_data
from common.train.experiment import DataConfig, ExperimentConfig, load_scenes


@dataclass
class Generalisation:
    """Fig. 9's orange boxes: K slots on scenes with more objects than in training, which the `prepare`
    stage generates (the training generator with these params) or, for a config that reads a converted
    release (data.path), a converted folder at `path` (see the header of configs/clevr6.yaml)."""

    params: dict = field(default_factory=lambda: {"min_objects": 7, "max_objects": 9})
    n: int = 320
    num_slots: int = 11
    path: str | None = None  # a converted folder, relative to the repository (or absolute)
    split: str = "generalisation"


def generalisation_config(exp: ExperimentConfig) -> Generalisation | None:
    raw = exp.eval.get("generalisation")
    return None if raw is None else from_dict(Generalisation, raw, "eval.generalisation")


def generalisation_dir(stage: Stage, g: Generalisation) -> Path:
    """Fig. 9's scenes: the converted folder `path`, else data/<paper>/<d>-<p>/generalisation."""
    return ROOT / g.path if g.path is not None else stage.data_dir / "generalisation"


def check_generalisation(stage: Stage, exp: ExperimentConfig, g: Generalisation) -> None:
    """Before anything is written: a config that reads a converted release needs a converted `path`
    (generating would mix in stand-in scenes), and that folder must hold `split`."""
    if g.path is None:
        if exp.data.path is not None:
            raise ConfigError(f"eval.generalisation: this config reads a converted release (data.path = "
                              f"{exp.data.path}), so Fig. 9's scenes must be converted too: run the `python -m "
                              f"common.data convert ... --min-objects 7 --max-objects 9` command in the header of "
                              f"{stage.config_path.relative_to(ROOT)} and set eval.generalisation.path")
        return
    path = generalisation_dir(stage, g)
    try:
        meta = load_meta(path)
    except DatasetError as err:
        raise DatasetError(f"{err}. eval.generalisation.path names a converted folder of 7-9-object scenes: "
                           f"make it with the command in the header of {stage.config_path.relative_to(ROOT)}") from err
    if g.split not in meta.splits:
        raise DatasetError(f"{path}: no split '{g.split}' for eval.generalisation (has {', '.join(meta.splits)})")


def prepare(stage: Stage) -> Path:
    """IODINE's `prepare` stage: the configured data (common.pipeline.prepare), then Fig. 9's scenes into
    generalisation_dir, generated with the training generator and eval.generalisation.params (or, for
    a converted `path`, checked). The checks come first, so a bad config writes nothing."""
    exp = stage.experiment()
    g = generalisation_config(exp)
    if g is not None:
        check_generalisation(stage, exp, g)
    path = prepare_data(stage)
    if g is not None and g.path is None:
        generate_dataset(exp.data.name, generalisation_dir(stage, g), {g.split: g.n}, exp.data.seed,
                         {**exp.data.params, **g.params}, overwrite=True)
    return path


def load_generalisation(stage: Stage, g: Generalisation, resolution) -> dict:
    """The prepared scenes (the first g.n), with clear errors when `prepare` has not made them."""
    path = generalisation_dir(stage, g)
    try:
        meta, data = load_scenes(DataConfig(path=str(path)), g.split, g.n)
    except DatasetError as err:
        raise DatasetError(f"{err}. Fig. 9's scenes come from the prepare stage: python -m papers.iodine.pipeline "
                           f"prepare --dataset {stage.dataset} --profile {stage.profile}") from err
    if tuple(meta.image_size) != tuple(resolution):
        raise ConfigError(f"{path}: {tuple(meta.image_size)} px scenes for a {tuple(resolution)} px model")
    return {"path": str(path), "split": g.split, "data": data}
