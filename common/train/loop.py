"""The one Accelerate training loop every paper uses.

Data are in-memory uint8 tensors; the batch of step t is a pure function of (seed, t), so resuming
needs no sampler state. Checkpoints (`accelerator.save_state`: model, optimiser, scheduler, RNG,
GradScaler, plus `TrainState`) are written atomically under `out/checkpoints/step_XXXXXXXX`, the last
`keep_last` kept. A non-finite loss (or gradient norm) skips the step; `max_nonfinite` in a row roll
back to the last checkpoint. Model-side training state such as GECO lives in model buffers and is
updated by `model.after_step(output)` only after a successful step.
"""
from __future__ import annotations

import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import Tensor, nn
from tqdm.auto import tqdm

from common.hub import CheckpointError
from common.train.logs import TSVLog
from common.train.schedules import warmup_decay

log = logging.getLogger(__name__)


EXIT_BUDGET = 3  # exit status of a training command stopped by its time budget


class BudgetSpent(Exception):
    """Training stopped at its time budget after saving a checkpoint; running again resumes."""


class TrainingDiverged(RuntimeError):
    """Repeated non-finite steps that rolling back did not cure."""


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 32  # global, split over processes
    lr: float = 4e-4
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    decay_rate: float = 1.0
    decay_steps: int = 100_000
    decay_after_warmup: bool = True
    clip: str = "norm"  # "norm" (global L2), "value" (max-abs), "none"
    clip_value: float = 5.0
    mixed_precision: str = "no"  # "no" | "fp16" | "bf16"
    seed: int = 0
    save_every: int = 1000
    keep_last: int = 3
    log_every: int = 10
    max_nonfinite: int = 3
    max_rollbacks: int = 3


class TrainState:
    """Loop counters saved in every checkpoint (`register_for_checkpointing`)."""

    def __init__(self):
        self.step, self.nonfinite, self.rollbacks = 0, 0, 0

    def state_dict(self) -> dict:
        return {"step": self.step, "nonfinite": self.nonfinite, "rollbacks": self.rollbacks}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.nonfinite, self.rollbacks = state["step"], state["nonfinite"], state["rollbacks"]


class StepSampler:
    """Batch indices for step t: epoch e = t // (N // B) uses randperm(N) seeded by (seed, e)."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        if batch_size > n:
            raise ValueError(f"batch size {batch_size} exceeds the {n} training examples")
        if batch_size % world:
            raise ValueError(f"global batch size {batch_size} is not divisible by {world} processes")
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.per_epoch = n // batch_size
        self._epoch, self._perm = -1, None

    def __call__(self, step: int) -> Tensor:
        epoch, i = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=gen)
        batch = self._perm[i * self.batch_size:(i + 1) * self.batch_size]
        return batch[self.rank::self.world]


def to_float_images(images: Tensor) -> Tensor:
    """uint8 [B,H,W,3] -> float [B,3,H,W] in [0,1]."""
    return images.permute(0, 3, 1, 2).float().div_(255.0)


class Trainer:
    """Runs `TrainConfig.steps` optimiser steps of `model` on `images` (uint8 [N,H,W,3])."""

    def __init__(self, model: nn.Module, images: Tensor, config: TrainConfig, out_dir: str | Path,
                 accelerator: Accelerator | None = None):
        self.config, self.out = config, Path(out_dir)
        self.accelerator = accelerator or Accelerator(mixed_precision=config.mixed_precision)
        acc = self.accelerator
        self.images = images
        self.sampler = StepSampler(len(images), config.batch_size, config.seed, acc.process_index, acc.num_processes)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=tuple(config.betas))
        schedule = warmup_decay(config.warmup_steps, config.decay_rate, config.decay_steps, config.decay_after_warmup)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        self.model, self.optimizer, self.scheduler = acc.prepare(model, optimizer, scheduler)
        self.state = TrainState()
        acc.register_for_checkpointing(self.state)
        self.log = TSVLog(self.out / "logs" / "train.tsv")

    # -- checkpoints ---------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.out / "checkpoints"

    def checkpoints(self) -> list[Path]:
        if not self.checkpoint_dir.is_dir():
            return []
        return sorted(p for p in self.checkpoint_dir.glob("step_*") if p.is_dir())

    def save(self) -> Path:
        """save_state into a temporary folder, then rename; prune to the last `keep_last`."""
        acc = self.accelerator
        final = self.checkpoint_dir / f"step_{self.state.step:08d}"
        tmp = self.checkpoint_dir / f".tmp_step_{self.state.step:08d}"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp), safe_serialization=True)
        acc.wait_for_everyone()
        if acc.is_main_process:
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            for old in self.checkpoints()[:-self.config.keep_last]:
                shutil.rmtree(old)
        acc.wait_for_everyone()
        return final

    def load(self, path: Path) -> None:
        try:
            self.accelerator.load_state(str(path))
        except Exception as err:
            raise CheckpointError(f"{path}: cannot restore training state ({type(err).__name__}: {err})") from err

    def resume(self) -> bool:
        """Load the newest checkpoint if any; drop log rows written after it."""
        found = self.checkpoints()
        if not found:
            return False
        self.load(found[-1])
        if self.accelerator.is_main_process:
            self.log.truncate_after(self.state.step)
        return True

    # -- one step ------------------------------------------------------------------------------
    def batch(self, step: int) -> Tensor:
        return to_float_images(self.images[self.sampler(step)]).to(self.accelerator.device)

    def _is_bad(self, loss: Tensor) -> bool:
        bad = torch.tensor(0.0 if torch.isfinite(loss.detach()).all() else 1.0, device=self.accelerator.device)
        return bool(self.accelerator.reduce(bad, "sum") > 0)

    def _clip(self) -> float:
        params, cfg, acc = self.model.parameters(), self.config, self.accelerator
        if cfg.clip == "value":
            acc.clip_grad_value_(params, cfg.clip_value)
            params = self.model.parameters()
        max_norm = cfg.clip_value if cfg.clip == "norm" else math.inf
        return float(acc.clip_grad_norm_(params, max_norm))

    def train_step(self, images: Tensor):
        """Forward, guard, backward, clip, update. Returns the output, or None if the step was skipped."""
        out = self.model(images, step=self.state.step)
        if self._is_bad(out.loss):
            return None
        self.accelerator.backward(out.loss)
        grad_norm = self._clip()
        if not math.isfinite(grad_norm) and self.config.mixed_precision != "fp16":  # fp16: GradScaler skips
            self.optimizer.zero_grad(set_to_none=True)
            return None
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        out.logs["grad_norm"] = grad_norm
        return out

    def _on_bad_step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.state.nonfinite += 1
        log.warning("non-finite step at %d (%d in a row)", self.state.step, self.state.nonfinite)
        if self.state.nonfinite < self.config.max_nonfinite:
            self.state.step += 1
            return
        found = self.checkpoints()
        if not found or self.state.rollbacks >= self.config.max_rollbacks:
            raise TrainingDiverged(f"{self.state.nonfinite} non-finite steps in a row at step {self.state.step}"
                                   f" after {self.state.rollbacks} rollbacks; no good checkpoint to return to")
        rollbacks = self.state.rollbacks + 1
        self.load(found[-1])
        self.state.rollbacks, self.state.nonfinite = rollbacks, 0
        log.warning("rolled back to %s", found[-1].name)

    # -- the loop ------------------------------------------------------------------------------
    def _past(self, deadline: float | None) -> bool:
        """Whether any process has passed `deadline` (time.monotonic()): all stop at the same step."""
        if deadline is None:
            return False
        late = torch.tensor(float(time.monotonic() >= deadline), device=self.accelerator.device)
        return bool(self.accelerator.reduce(late, "sum") > 0)

    def fit(self, stop_at: int | None = None, deadline: float | None = None) -> nn.Module:
        """Train until `config.steps`, or until `stop_at` (a simulated pre-emption) or the first step that
        ends past `deadline` (a time budget, time.monotonic() seconds), saving a checkpoint there."""
        cfg, acc = self.config, self.accelerator
        end = min(cfg.steps, stop_at) if stop_at is not None else cfg.steps
        bar = tqdm(total=cfg.steps, initial=self.state.step, disable=not acc.is_local_main_process,
                   dynamic_ncols=True)
        tic = time.perf_counter()
        while self.state.step < end:
            out = self.train_step(self.batch(self.state.step))
            if out is None:
                self._on_bad_step()
                continue
            self.state.nonfinite = 0
            unwrapped = acc.unwrap_model(self.model)
            if hasattr(unwrapped, "after_step"):
                unwrapped.after_step(out)
            self.state.step += 1
            bar.update(1)
            if self._past(deadline):
                end = self.state.step
            if self.state.step % cfg.log_every == 0 or self.state.step == end:
                rate = cfg.batch_size * (self.state.step - bar.initial) / max(time.perf_counter() - tic, 1e-9)
                self._log(out, rate)
                bar.set_postfix(loss=f"{float(out.loss.detach()):.4g}", img_s=f"{rate:.1f}")
            if self.state.step % cfg.save_every == 0 or self.state.step == end:
                self.save()
        bar.close()
        return acc.unwrap_model(self.model)

    def _log(self, out, images_per_s: float) -> None:
        row = {"step": self.state.step, "loss": float(out.loss.detach()), "lr": self.scheduler.get_last_lr()[0],
               "images_per_s": images_per_s}
        row.update({k: float(v) for k, v in out.logs.items()})
        if self.accelerator.is_main_process:
            self.log.append(row)
