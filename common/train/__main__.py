"""python -m common.train CONFIG.yaml --out DIR [--profile smoke] [--set k=v ...] [--resume] [--max-minutes M]

Exit status: 0 trained to the end, 2 refused (bad config, checkpoint, divergence), 3 stopped by the time
budget after saving a checkpoint (run again with --resume to continue)."""
from __future__ import annotations
from common.requirements import require

require("train")  # before the imports that need it

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import yaml
from accelerate.utils import set_seed

from common.config import ConfigError, parse_overrides, to_dict
from common.hub import CheckpointError
from common.train.experiment import (build_model, check_resumable, data_source, load_experiment, load_train_images,
                                     write_config)
from common.train.loop import EXIT_BUDGET, BudgetSpent, Trainer, TrainingDiverged, to_float_images


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m common.train", description=__doc__)
    p.add_argument("config", type=Path, help="experiment YAML")
    p.add_argument("--out", type=Path, required=True, help="run directory")
    p.add_argument("--profile", default=None, help="smoke | short | paper")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--stop-at", type=int, default=None, help="save and stop at this step (pre-emption)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help=f"time budget: save and exit with status {EXIT_BUDGET} after the first step past it")
    return p.parse_args(argv)



LAUNCH = ("several processes: `torchrun --nproc_per_node N -m common.train ...` (CPU or GPU) or "
          "`accelerate launch --multi_gpu --num_processes N -m common.train ...` (GPUs)")


def check_launch(env=os.environ) -> None:
    """Refuse `accelerate launch --cpu --num_processes N`: without mpirun it starts one process only."""
    launched_by_accelerate = "ACCELERATE_USE_CPU" in env and "MASTER_ADDR" in env
    world = any(k in env for k in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"))
    if launched_by_accelerate and env["ACCELERATE_USE_CPU"].lower() in ("1", "true") and not world:
        raise ConfigError("accelerate launch --cpu --num_processes N starts a single process (it needs "
                          f"--mpirun_hostfile for more); for {LAUNCH}")


def started(run_dir: Path) -> bool:
    """Whether run_dir holds a run that got somewhere: a checkpoint or a saved model. A folder with only
    a config.yaml (a run that failed before its first checkpoint) is started afresh."""
    return any((run_dir / "checkpoints").glob("step_*")) or (run_dir / "model").is_dir()


def data_digest(images) -> str:
    """SHA-256 of the uint8 training images [N,H,W,3] as the run sees them."""
    return hashlib.sha256(np.ascontiguousarray(images.numpy())).hexdigest()


def check_data(exp, model, images, run_dir: Path, resuming: bool) -> str:
    """Images match the model's resolution; a resumed run trains on the very data it started on."""
    h, w = images.shape[1:3]
    resolution = getattr(getattr(model, "config", None), "resolution", None)
    if resolution is not None and tuple(resolution) != (h, w):
        raise ConfigError(f"model_config.resolution {tuple(resolution)} does not match the training images, "
                          f"which are {h}x{w} ({exp.data.path or exp.data.name})")
    digest, record = data_digest(images), run_dir / "data.json"
    if resuming and record.is_file():
        before = json.loads(record.read_text())["sha256"]
        if before != digest:
            raise ConfigError(f"refusing to resume: the training data changed since this run started (sha256 "
                              f"{before[:12]}... now {digest[:12]}...; {exp.data.path or exp.data.name})")
    return digest


def run(args, rows: torch.Tensor | None = None, prepare: Callable[[torch.Tensor], torch.Tensor] = to_float_images) -> Path:
    """Train the experiment of `args` on its images, or on `rows` with `prepare` making a batch of them the
    model's input (e.g. SVQ's prior on code indices; the config's data section then names their source)."""
    check_launch()
    exp = load_experiment(args.config, args.profile, parse_overrides(args.overrides))
    config_path, resuming = args.out / "config.yaml", started(args.out)
    if resuming:
        if not args.resume:
            raise ConfigError(f"{args.out} already holds a run; pass --resume or choose another --out")
        if not config_path.is_file():
            raise CheckpointError(f"{args.out} has checkpoints but no config.yaml; cannot check what it trained")
        saved = yaml.safe_load(config_path.read_text())
        check_resumable(saved, to_dict(exp))
        if saved.get("data", {}).get("path") != exp.data.path and not (args.out / "data.json").is_file():
            raise ConfigError(f"refusing to resume from another data.path: {args.out} has no data.json to check "
                              f"the images against (it started at {saved.get('data', {}).get('path')})")
    deadline = None if args.max_minutes is None else time.monotonic() + 60 * args.max_minutes
    set_seed(exp.train.seed)  # every process builds the same initial weights
    model = build_model(exp)
    images = load_train_images(exp.data) if rows is None else rows
    digest = check_data(exp, model, images, args.out, resuming)
    if not resuming:
        shutil.rmtree(args.out / "logs", ignore_errors=True)  # rows of a run that never checkpointed
    trainer = Trainer(model, images, exp.train, args.out, prepare=prepare)
    if resuming and trainer.resume() and trainer.state.step > exp.train.steps:
        raise ConfigError(f"refusing to resume with train.steps={exp.train.steps}: {args.out} has already "
                          f"trained {trainer.state.step} steps")
    if trainer.accelerator.is_main_process:
        write_config(exp, config_path)
        (args.out / "data.json").write_text(json.dumps({"sha256": digest, "shape": list(images.shape),
                                                        "source": data_source(exp.data)}, indent=1))
    model = trainer.fit(stop_at=args.stop_at, deadline=deadline)
    step = trainer.state.step
    if step >= exp.train.steps and trainer.accelerator.is_main_process:
        model.save_pretrained(args.out / "model")
        trainer.write_record(args.out / "model")  # what trained these weights
    if step < exp.train.steps and step != args.stop_at:
        raise BudgetSpent(f"stopped at step {step} of {exp.train.steps} by the {args.max_minutes:g}-minute budget; "
                          f"checkpoint saved in {args.out}: run again with --resume to continue")
    return args.out


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    try:
        run(parse_args(argv))
    except (ConfigError, CheckpointError, TrainingDiverged) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BudgetSpent as err:
        print(str(err), file=sys.stderr)
        return EXIT_BUDGET
    return 0


if __name__ == "__main__":
    sys.exit(main())
