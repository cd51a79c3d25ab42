"""Slot Attention training step through the shared loop: fp32 vs bf16 autocast, side by side.

Prints seconds per optimiser step and images/s for each precision and the bf16/fp32 speed ratio.
"""
from __future__ import annotations

import json
import sys
import tempfile

import torch

from benchmarks.common import json_in_subprocess, median_seconds, table
from common.data import generate_split
from common.models import SlotAttentionAutoEncoder, SlotAttentionConfig
from common.provenance import hardware
from common.train import TrainConfig, Trainer

SIZE, BATCH = 64, 16


def step_time(precision: str) -> float:
    torch.manual_seed(0)
    model = SlotAttentionAutoEncoder(SlotAttentionConfig(resolution=(SIZE, SIZE), decoder_broadcast=(SIZE, SIZE)))
    images = torch.from_numpy(generate_split("toy_shapes", 4 * BATCH, 0, params={"size": SIZE})[1]["image"])
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model, images, TrainConfig(batch_size=BATCH, mixed_precision=precision), out)
        return median_seconds(lambda: trainer.train_step(trainer.batch(0)), repeats=5)


def measure_in_subprocess(precision: str) -> float:
    """Accelerate's state is per process: each precision gets a fresh interpreter."""
    row = json_in_subprocess("benchmarks.train_step", precision)
    if "error" in row:
        raise RuntimeError(f"train_step at {precision}: {row['error']}")
    return row["s_per_step"]


def main() -> None:
    rows = []
    for precision in ("no", "bf16"):
        s = measure_in_subprocess(precision)
        rows.append({"precision": precision, "s/step": s, "images/s": BATCH / s})
    print(f"Slot Attention {SIZE}x{SIZE}, K=6, batch {BATCH}, one optimiser step, on {hardware()}")
    print(table(rows))
    print(f"bf16 / fp32 speed: {rows[0]['s/step'] / rows[1]['s/step']:.2f}x")


if __name__ == "__main__":
    print(json.dumps({"s_per_step": step_time(sys.argv[1])}))
