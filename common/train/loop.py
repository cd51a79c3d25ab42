"""The one Accelerate training loop every paper uses.

Data are in-memory uint8 tensors; the batch of step t is a pure function of (seed, t), so resuming
needs no sampler state. Checkpoints (`accelerator.save_state`: model, optimiser, scheduler, RNG,
plus `TrainState`) are written atomically under `out/checkpoints/step_XXXXXXXX`, the last
`keep_last` kept. Each checkpoint also records who trained which steps (`TrainState.segments`: commit,
hardware, processes, wall time of every stretch between a start, resume or rollback and the next stop), in
its state and in its own training.json; `out/training.json` is the newest checkpoint's, and the final
model's folder gets its own (what an evaluation's provenance reads).

A step never waits for the device: a non-finite loss or gradient norm makes fused Adam skip the update
on the device (its `found_inf`), and model-side state such as GECO, kept in model buffers, is updated
by `model.after_step(output, ok)` with `ok` a device bool. The host reads the count of skipped steps at
its sync points (logging, saving, the end); `max_nonfinite` in a row roll back to the last checkpoint.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import Tensor, nn
from tqdm.auto import tqdm

from common.config import at_least
from common.hub import CheckpointError
from common.output import ModelOutput
from common.provenance import TRAINING_RECORD, provenance
from common.train.logs import TSVLog
from common.train.memory import keep_freed_memory
from common.train.schedules import warmup_decay

log = logging.getLogger(__name__)


EXIT_BUDGET = 3  # exit status of a training command stopped by its time budget


class BudgetSpent(Exception):
    """Training stopped at its time budget after saving a checkpoint; running again resumes."""


class TrainingDiverged(RuntimeError):
    """Repeated non-finite steps that rolling back did not cure."""


@dataclass
class TrainConfig:
    steps: int = field(default=1000, metadata=at_least(1))
    batch_size: int = field(default=32, metadata=at_least(1))  # global, split over processes
    lr: float = field(default=4e-4, metadata=at_least(0, strict=True))
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = field(default=0, metadata=at_least(0))
    decay_rate: float = field(default=1.0, metadata=at_least(0, strict=True))
    decay_steps: int = field(default=100_000, metadata=at_least(1))
    decay_after_warmup: bool = True
    clip: Literal["norm", "value", "inf", "none"] = "norm"  # global L2 norm, max-abs value, global max-abs
    # rescaling (SVQ / SysBinder: every gradient x min(1, clip_value / max|g|)), or none
    clip_value: float = field(default=5.0, metadata=at_least(0, strict=True))
    # bf16 autocast, or none. Not fp16: its GradScaler skips overflowing steps as routine, which this loop would
    # count as divergence and roll back.
    mixed_precision: Literal["no", "bf16"] = "no"
    seed: int = field(default=0, metadata=at_least(0))
    save_every: int = field(default=1000, metadata=at_least(1))
    keep_last: int = field(default=3, metadata=at_least(1))
    log_every: int = field(default=10, metadata=at_least(1))
    max_nonfinite: int = field(default=3, metadata=at_least(1))
    max_rollbacks: int = field(default=3, metadata=at_least(0))
    data_on_device: bool = True  # copy the uint8 training images to the accelerator once


CHECKSUMS = "checksums.json"  # SHA-256 of every file of a checkpoint, written last


def _checksums(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if p.is_file() and p.name != CHECKSUMS}


def checkpoint_folders(folder: Path) -> dict[int, Path]:
    """{step: folder} of the checkpoints saved in `folder` (a run's checkpoints/: step_XXXXXXXX folders)."""
    if not folder.is_dir():
        return {}
    return {int(p.name[5:]): p for p in folder.glob("step_*") if p.is_dir() and p.name[5:].isdigit()}


def verify_checkpoint(path: Path, rank: int = 0) -> None:
    """CheckpointError unless every file matches checksums.json and the rank's RNG state is there."""
    listed = path / CHECKSUMS
    if not listed.is_file():
        raise CheckpointError(f"{path}: no {CHECKSUMS}; the checkpoint is incomplete or was not written by this loop")
    try:
        expected = json.loads(listed.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{listed}: unreadable ({err})") from err
    actual = _checksums(path)
    changed = sorted(name for name in expected if actual.get(name) != expected[name])
    if changed:
        raise CheckpointError(f"{path}: {', '.join(changed)} changed or missing since it was saved (SHA-256 "
                              f"mismatch); resume from an earlier checkpoint or delete this one")
    if f"random_states_{rank}.pkl" not in expected:
        raise CheckpointError(f"{path}: no RNG state for process {rank} (random_states_{rank}.pkl); resuming "
                              f"would not reproduce the uninterrupted run")


def unrecorded(step: int) -> list[dict]:
    """The segment of a checkpoint saved before segments were recorded: its steps, nothing else known."""
    return [{"from": 0, "to": step, "unrecorded": True}] if step else []


class TrainState:
    """Loop counters saved in every checkpoint (`register_for_checkpointing`), and `segments`: one dict per
    stretch of training that reached a checkpoint, {from, to (steps), seconds, processes, commit, hardware,
    torch, python, date (its start)}, so a run resumed across machines and commits says what trained it."""

    def __init__(self):
        self.step, self.nonfinite, self.rollbacks = 0, 0, 0
        self.segments: list[dict] = []

    def state_dict(self) -> dict:
        return {"step": self.step, "nonfinite": self.nonfinite, "rollbacks": self.rollbacks,
                "segments": [dict(s) for s in self.segments]}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.nonfinite, self.rollbacks = state["step"], state["nonfinite"], state["rollbacks"]
        self.segments = [dict(s) for s in state.get("segments", unrecorded(self.step))]


class StepSampler:
    """Batch indices for step t: epoch e = t // (N // B) uses randperm(N) seeded by (seed, e)."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1,
                 device: torch.device | str = "cpu"):
        if batch_size > n:
            raise ValueError(f"batch size {batch_size} exceeds the {n} training examples")
        if batch_size % world:
            raise ValueError(f"global batch size {batch_size} is not divisible by {world} processes")
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.device = torch.device(device)
        self.per_epoch = n // batch_size
        self._epoch, self._perm = -1, None

    def __call__(self, step: int) -> Tensor:
        epoch, i = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=gen).to(self.device)  # once an epoch
        batch = self._perm[i * self.batch_size:(i + 1) * self.batch_size]
        return batch[self.rank::self.world]


def to_float_images(images: Tensor) -> Tensor:
    """uint8 [B,H,W,3] -> float [B,3,H,W] in [0,1]."""
    return images.permute(0, 3, 1, 2).float().div_(255.0)


def _constant(step: int) -> float:
    return 1.0


def param_groups(model: nn.Module, config: TrainConfig) -> list[dict]:
    """The optimiser's parameter groups: `model.param_groups(lr)` where the model has its own (SVQ: the dVAE
    at a constant rate beside the encoder and decoder on the schedule; each dict has "params", "lr" and
    optionally "scheduled": False), else every parameter at config.lr on the schedule. Every trainable
    parameter must be in exactly one group."""
    if not hasattr(model, "param_groups"):
        return [{"params": list(model.parameters()), "lr": config.lr}]
    groups = [dict(g, params=list(g["params"])) for g in model.param_groups(config.lr)]
    listed = [id(p) for g in groups for p in g["params"]]
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    if len(listed) != len(set(listed)) or set(listed) != trainable:
        raise ValueError(f"{type(model).__name__}.param_groups must list every trainable parameter exactly once")
    return groups


class Trainer:
    """Runs `TrainConfig.steps` optimiser steps of `model` on `images` (uint8 [N,H,W,3]; any rows with `prepare`
    turning a batch of them into the model's input, e.g. SVQ's prior on code indices).

    Build the model before the Trainer (every process the same initial weights); the Trainer then seeds
    each process by (seed, rank), so ranks draw different noise for their share of the batch."""

    def __init__(self, model: nn.Module, images: Tensor, config: TrainConfig, out_dir: str | Path,
                 accelerator: Accelerator | None = None, prepare: Callable[[Tensor], Tensor] = to_float_images):
        self.config, self.out, self.prepare = config, Path(out_dir), prepare  # prepare: stored rows -> a batch
        # cpu=True where there is no accelerator: torchrun's processes then form a gloo group (MULTI_CPU)
        self.accelerator = accelerator or Accelerator(mixed_precision=config.mixed_precision,
                                                      cpu=not torch.accelerator.is_available(),
                                                      dynamo_backend="no")  # not $ACCELERATE_DYNAMO_BACKEND:
        # compiling the whole model cannot hold EMORL's and IODINE's autograd.grad inside their forward
        acc = self.accelerator
        if acc.device.type == "cpu":
            keep_freed_memory()  # large activations are reused, not faulted in again every step
        set_seed(config.seed, device_specific=True)  # seed + rank: each process draws its own noise
        data_device = acc.device if config.data_on_device else torch.device("cpu")
        self.images = images.to(data_device)  # uint8 [N,H,W,3]
        self.sampler = StepSampler(len(images), config.batch_size, config.seed, acc.process_index, acc.num_processes,
                                   data_device)
        groups = param_groups(model.to(acc.device), config)
        optimizer = torch.optim.Adam([{k: g[k] for k in ("params", "lr")} for g in groups], lr=config.lr,
                                     betas=tuple(config.betas), fused=True)  # fused: skips a non-finite step (found_inf)
        schedule = warmup_decay(config.warmup_steps, config.decay_rate, config.decay_steps, config.decay_after_warmup)
        # Not prepared: Accelerate's scheduler wrapper steps once per process; ours steps once per optimiser step.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, [schedule if g.get("scheduled", True) else _constant for g in groups])
        self.model, self.optimizer = acc.prepare(model, optimizer)
        self.state = TrainState()
        acc.register_for_checkpointing(self.scheduler)
        acc.register_for_checkpointing(self.state)
        self._streak = torch.zeros((), dtype=torch.long, device=acc.device)  # non-finite steps in a row
        self._skipped = torch.zeros((), dtype=torch.long, device=acc.device)  # since the last sync
        self.log = TSVLog(self.out / "logs" / "train.tsv")
        self._segment: dict | None = None  # the stretch being trained now (set by fit)

    # -- checkpoints ---------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.out / "checkpoints"

    def checkpoints(self) -> list[Path]:
        return [path for _, path in sorted(checkpoint_folders(self.checkpoint_dir).items())]

    def _begin_segment(self) -> None:
        """Start recording a stretch of training at the current step: at fit's start and after a rollback."""
        self._segment = {"history": list(self.state.segments), "tic": time.perf_counter(),
                         "record": {"from": self.state.step, "processes": self.accelerator.num_processes,
                                    **provenance()}}

    def _record_segment(self) -> None:
        """The checkpoint about to be saved records the current stretch up to this step."""
        if self._segment is None:
            return
        seconds = round(time.perf_counter() - self._segment["tic"], 1)
        self.state.segments = self._segment["history"] + [
            {**self._segment["record"], "to": self.state.step, "seconds": seconds}]

    def save(self) -> Path:
        """save_state and the training record (training.json) into a temporary folder, then rename; prune to
        the last `keep_last`; copy the record to out/."""
        acc = self.accelerator
        self._record_segment()
        final = self.checkpoint_dir / f"step_{self.state.step:08d}"
        tmp = self.checkpoint_dir / f".tmp_step_{self.state.step:08d}"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp), safe_serialization=True)
        acc.wait_for_everyone()
        if acc.is_main_process:
            self.write_record(tmp)
            (tmp / CHECKSUMS).write_text(json.dumps(_checksums(tmp), indent=1, sort_keys=True))
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            for old in self.checkpoints()[:-self.config.keep_last]:
                shutil.rmtree(old)
            self.write_record(self.out)
        acc.wait_for_everyone()
        return final

    def load(self, path: Path) -> None:
        """Restore a checkpoint after checking its files against their SHA-256 and that it holds this
        process's RNG state (without it, resuming would not be bit-exact)."""
        verify_checkpoint(path, self.accelerator.process_index)
        try:
            self.accelerator.load_state(str(path))
        except Exception as err:
            raise CheckpointError(f"{path}: cannot restore training state ({type(err).__name__}: {err})") from err

    def write_record(self, folder: Path) -> None:
        """folder/training.json (atomic): the steps trained and the segments of the state saved last."""
        tmp = folder / f".{TRAINING_RECORD}.tmp"
        tmp.write_text(json.dumps({"step": self.state.step, "segments": self.state.segments}, indent=1))
        tmp.replace(folder / TRAINING_RECORD)

    def resume(self) -> bool:
        """Load the newest checkpoint if any; drop log rows written after it."""
        found = self.checkpoints()
        if not found:
            if self.accelerator.is_main_process:
                self.log.truncate_after(0)  # rows of an attempt that never checkpointed
            return False
        self.load(found[-1])
        if self.accelerator.is_main_process:
            self.log.truncate_after(self.state.step)
        return True

    # -- one step ------------------------------------------------------------------------------
    def batch(self, step: int) -> Tensor:
        return self.prepare(self.images[self.sampler(step)]).to(self.accelerator.device, non_blocking=True)

    def _clip(self) -> Tensor:
        """Clip as configured; returns the global gradient norm (a device tensor)."""
        params, cfg, acc = self.model.parameters(), self.config, self.accelerator
        if cfg.clip == "value":
            acc.clip_grad_value_(params, cfg.clip_value)
            params = self.model.parameters()
        if cfg.clip == "inf":
            return acc.clip_grad_norm_(params, cfg.clip_value, norm_type=math.inf)
        max_norm = cfg.clip_value if cfg.clip == "norm" else math.inf
        return acc.clip_grad_norm_(params, max_norm)

    def train_step(self, images: Tensor) -> tuple[ModelOutput, Tensor]:
        """Forward, backward, clip, update, with no host-device sync. Returns the output and `ok`, a device
        bool: false when the loss or the gradient norm was non-finite, and the update was skipped."""
        out = self.model(images, step=self.state.step)
        loss = out.loss.detach()
        poison = torch.where(torch.isfinite(loss), 1.0, math.nan).to(loss.dtype)  # a NaN loss: NaN in every grad
        self.accelerator.backward(out.loss * poison)
        grad_norm = self._clip()
        ok = torch.isfinite(grad_norm)  # grads are all-reduced: the same on every rank
        self._update(ok)
        out.logs["grad_norm"] = grad_norm
        return out, ok

    def _update(self, ok: Tensor) -> None:
        """Adam step, skipped on the device when not ok (fused Adam reads found_inf)."""
        torch_optimizer = self.optimizer.optimizer
        torch_optimizer.found_inf = (~ok).float()
        try:
            self.optimizer.step()
        finally:
            torch_optimizer.__dict__.pop("found_inf", None)
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    # -- non-finite steps, read at sync points -------------------------------------------------
    def _count(self, ok: Tensor) -> None:
        bad = (~ok).long()
        self._streak = (self._streak + 1) * bad
        self._skipped = self._skipped + bad

    def _check_nonfinite(self) -> bool:
        """Read the device counters (a sync). Returns True if it rolled back to the last checkpoint."""
        streak, skipped = torch.stack([self._streak, self._skipped]).tolist()
        self._skipped.zero_()
        self.state.nonfinite = streak
        if skipped:
            log.warning("%d non-finite step(s) skipped before step %d (%d in a row)", skipped, self.state.step, streak)
        if streak < self.config.max_nonfinite:
            return False
        found = self.checkpoints()
        if not found or self.state.rollbacks >= self.config.max_rollbacks:
            raise TrainingDiverged(f"{streak} non-finite steps in a row at step {self.state.step}"
                                   f" after {self.state.rollbacks} rollbacks; no good checkpoint to return to")
        rollbacks = self.state.rollbacks + 1
        self.load(found[-1])
        self.state.rollbacks, self.state.nonfinite = rollbacks, 0
        self._streak.zero_()
        self._begin_segment()  # a new stretch from the checkpoint: the steps after it are not in the record
        if self.accelerator.is_main_process:
            self.log.truncate_after(self.state.step)  # the steps after it are trained again
        log.warning("rolled back to %s", found[-1].name)
        return True

    # -- the loop ------------------------------------------------------------------------------
    def _past(self, deadline: float | None, synced: bool) -> bool:
        """Whether any process has passed `deadline` (time.monotonic()): all stop at the same step. One
        process checks every step; several agree by a reduction at sync points only."""
        if deadline is None:
            return False
        late = time.monotonic() >= deadline
        if self.accelerator.num_processes == 1:
            return late
        if not synced:
            return False
        late = torch.tensor(float(late), device=self.accelerator.device)
        return bool(self.accelerator.reduce(late, "sum") > 0)

    def fit(self, stop_at: int | None = None, deadline: float | None = None) -> nn.Module:
        """Train until `config.steps`, or until `stop_at` (a simulated pre-emption) or the first step that
        ends past `deadline` (a time budget, time.monotonic() seconds), saving a checkpoint there."""
        cfg, acc = self.config, self.accelerator
        end = min(cfg.steps, stop_at) if stop_at is not None else cfg.steps
        bar = tqdm(total=cfg.steps, initial=self.state.step, disable=not acc.is_local_main_process,
                   dynamic_ncols=True)
        self._streak.fill_(self.state.nonfinite)
        unwrapped, tic, start = acc.unwrap_model(self.model), time.perf_counter(), self.state.step
        self._begin_segment()
        while self.state.step < end:
            out, ok = self.train_step(self.batch(self.state.step))
            self._count(ok)
            if hasattr(unwrapped, "after_step"):
                unwrapped.after_step(out, ok)
            self.state.step += 1
            bar.update(1)
            step = self.state.step
            log_now, save_now = step % cfg.log_every == 0, step % cfg.save_every == 0
            if self._past(deadline, log_now or save_now):
                end = step
            if not (log_now or save_now or step == end) or self._check_nonfinite():
                continue
            if log_now or step == end:
                rate = cfg.batch_size * (step - start) / max(time.perf_counter() - tic, 1e-9)
                row = self._log(out, rate)
                bar.set_postfix(loss=f"{row['loss']:.4g}", img_s=f"{rate:.1f}")
            if save_now or step == end:
                self.save()
        bar.close()
        return unwrapped

    def _log(self, out: ModelOutput, images_per_s: float) -> dict:
        """Append a row: loss and tensor logs averaged over processes (every rank calls this)."""
        names = ["loss", *out.logs]
        values = torch.stack([torch.as_tensor(v, dtype=torch.float32, device=self.accelerator.device).detach()
                              for v in [out.loss, *out.logs.values()]])  # [M]
        values = self.accelerator.reduce(values, "mean").tolist()
        lrs = self.scheduler.get_last_lr()  # one per parameter group: lr, then lr1, lr2, ... (SVQ)
        row = {"step": self.state.step, "loss": values[0], "lr": lrs[0],
               **{f"lr{i}": lr for i, lr in enumerate(lrs[1:], 1)},
               "images_per_s": images_per_s, **dict(zip(names[1:], values[1:]))}
        if self.accelerator.is_main_process:
            self.log.append(row)
        return row
