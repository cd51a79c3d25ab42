"""EfficientMORL training step, ours against the official code: Tetrominoes 35x35, K=4, D=32, L=3,
I=3, batch 32, GECO active, one full optimiser step (forward, backward, clip 5.0, Adam, GECO update).

`python -m benchmarks emorl_step --official PATH` builds the official model from the checkout at PATH
with its own configs/train/tetrominoes/EMORL.json (sacred; see benchmarks/official.py for how its
train.py step is repeated without DDP) and times both in this run, alternating: the ratio printed is
measured side by side. Without --official, or when sacred or the checkout is missing (one line says
which), it prints ours beside the recorded anchor, 3.24 s/step measured once for the official code on
a 2-core CPU (implementation-notes §9), labelled as such, and no ratio to it.

Each code's GFLOP per step (torch's FlopCounterMode) and the rate it reaches are printed beside its time,
with a large fp32 matrix product's rate on the same machine: on a convolution-bound step the time ratio
cannot fall much below the GFLOP ratio once both run near that rate.
"""
from __future__ import annotations

import tempfile
from collections.abc import Callable

import torch

from benchmarks.common import dispatched_ops, gflop, median_seconds, table
from benchmarks.official import (ANCHOR_LABEL, NO_ANCHOR_RATIO, add_kernels, add_work, alternating_seconds, describe,
                                 load_emorl, load_official, official_emorl_step, parameters, side_by_side)
from common.data import generate_split
from common.provenance import hardware
from common.train import TrainConfig, Trainer
from papers.emorl.model import EfficientMORL, EMORLConfig

ANCHOR_S = 3.24
OFFICIAL_CONFIG = "configs/train/tetrominoes/EMORL.json"
OURS, OFFICIAL = "ours (shared Trainer step)", "official (its train.py step)"


def ours_step(batch_size: int, out_dir: str) -> tuple[Callable[[], None], torch.Tensor, EfficientMORL]:
    """Our step through the shared Trainer on one fixed batch, GECO on from step 0; returns the step,
    the batch (float [B,3,H,W] in [0,1]) and the model."""
    torch.manual_seed(0)
    model = EfficientMORL(EMORLConfig(geco_target=-1.19, geco_warm_start=0))  # Tetrominoes defaults
    images = torch.from_numpy(generate_split("tetrominoes", batch_size, 0)[1]["image"])
    trainer = Trainer(model, images, TrainConfig(batch_size=batch_size, clip="norm", clip_value=5.0), out_dir)
    model.geco.steps.fill_(1)
    batch = trainer.batch(0)

    def step() -> None:
        out, ok = trainer.train_step(batch)
        model.after_step(out, ok)  # GECO's EMA and Lagrange update, as the official step does

    return step, batch, model


def main(official: str | None = None, *, batch_size: int = 32, repeats: int = 10, warmup: int = 2) -> None:
    print(f"EfficientMORL Tetrominoes 35x35, K=4, D=32, L=3, I=3, batch {batch_size}, GECO on, "
          f"one optimiser step, on {hardware()}")
    with tempfile.TemporaryDirectory() as out:
        ours, images, model = ours_step(batch_size, out)
        theirs = load_official(load_emorl, official, OFFICIAL_CONFIG, batch_size, images.device)
        if theirs is None:
            seconds = median_seconds(ours, repeats, warmup)
            work = gflop(ours)
            print(table([{"code": OURS, "median s": seconds, "params": parameters(model), "GFLOP": work,
                          "GFLOP/s": work / seconds},
                         {"code": f"official: {ANCHOR_LABEL}", "median s": ANCHOR_S, "params": "0.47 M"}]))
            print(NO_ANCHOR_RATIO)
            return
        steps = {OURS: ours, OFFICIAL: official_emorl_step(theirs, images)}
        times = alternating_seconds(steps, repeats, warmup)
        work = {name: gflop(step) for name, step in steps.items()}
        counted = official_emorl_step(theirs, images, foreach=True)
        counted()  # its Adam's state is made on the first step
        counts = {OURS: dispatched_ops(ours), OFFICIAL: dispatched_ops(counted, [counted.optimiser])}
    rows, line = side_by_side(times, OURS, OFFICIAL, note="; target <= 0.5")
    for row, m in zip(rows, (model, theirs.model)):
        row["params"] = parameters(m)
    work_line = add_work(rows, work, OURS, OFFICIAL)
    kernel_line = add_kernels(rows, counts, OURS, OFFICIAL)
    print(describe(official, repeats, warmup))
    print(table(rows))
    print(line)
    if work_line:
        print(work_line)
    print(kernel_line)
