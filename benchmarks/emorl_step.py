"""EfficientMORL training step against the official code's CPU anchor (implementation-notes §9):
3.24 s per optimiser step at Tetrominoes, K=4, I=3, batch 32, GECO active, on a 2-core CPU.
Prints our median step time through the shared loop and the ratio to the anchor."""
from __future__ import annotations

import tempfile

import torch

from benchmarks.common import median_seconds, table
from common.data import generate_split
from common.provenance import hardware
from common.train import TrainConfig, Trainer
from papers.emorl.model import EfficientMORL, EMORLConfig

ANCHOR_S = 3.24


def main() -> None:
    torch.manual_seed(0)
    model = EfficientMORL(EMORLConfig(geco_target=-1.19, geco_warm_start=0))  # Tetrominoes, GECO on from step 0
    images = torch.from_numpy(generate_split("tetrominoes", 64, 0)[1]["image"])
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model, images, TrainConfig(batch_size=32, clip="norm", clip_value=5.0), out)
        model.geco.steps.fill_(1)
        seconds = median_seconds(lambda: trainer.train_step(trainer.batch(0)), repeats=10, warmup=2)
    print(f"EfficientMORL Tetrominoes 35x35, K=4, D=32, L=3, I=3, batch 32, GECO on, on {hardware()}")
    print(table([{"code": "official (anchor, 2-core CPU)", "s/step": ANCHOR_S},
                 {"code": "ours", "s/step": seconds}]))
    print(f"ours / official: {seconds / ANCHOR_S:.2f} (target <= 0.5)")
