"""SVQ's VQ-VAE baseline and its gated PixelCNN prior (issue 18): one optimiser step of each through the shared
Trainer at the `paper` configs (papers/svq/configs/vqvae.yaml, pixelcnn.yaml) on 64x64 2D Sprites (a 16 x 16 code
grid), batch 40, bf16 autocast on a GPU; and the seconds to sample one batch of code grids from the PixelCNN (one
position at a time, 256 forward passes). No official implementation exists to compare with (SVQ released none for
its baselines). Prints s/step, images/s and peak memory."""
from __future__ import annotations

import tempfile

import torch

from benchmarks.common import median_seconds, peak_gb, table
from common.data import generate_split
from common.provenance import hardware
from common.train import Trainer
from common.train.experiment import build_model, load_experiment
from papers.svq.evaluate import CONFIGS

SIZE, BATCH = 64, 40


def measure(step, batch: int) -> dict:
    seconds = median_seconds(step, repeats=2, warmup=1)
    peak = peak_gb(step)
    return {"s/step": seconds, "images/s": batch / seconds, "peak GB": peak}


def model_and_trainer(name: str, rows: torch.Tensor, out: str, overrides: dict, **kw):
    exp = load_experiment(CONFIGS / f"{name}.yaml", "paper", {"model_config": overrides, "train": {"batch_size": BATCH}})
    if not torch.cuda.is_available():
        exp.train.mixed_precision = "no"
    torch.manual_seed(0)
    model = build_model(exp)
    return model, Trainer(model, rows, exp.train, out, **kw)


def main() -> None:
    print(f"VQ-VAE and gated PixelCNN (paper configs), 64x64 2D Sprites, batch {BATCH}, on {hardware()}")
    images = torch.from_numpy(generate_split("sprites", BATCH, 0, params={"variant": "random"})[1]["image"])
    rows = []
    with tempfile.TemporaryDirectory() as out:
        vqvae, trainer = model_and_trainer("vqvae", images, out, {"resolution": [SIZE, SIZE]})
        batch = trainer.batch(0)
        rows.append({"model": "VQ-VAE step", **measure(lambda: trainer.train_step(batch), BATCH)})
        grid = vqvae.encode(batch.to(next(vqvae.parameters()).device)).cpu()  # [B,16,16]
    with tempfile.TemporaryDirectory() as out:
        pixelcnn, trainer = model_and_trainer("pixelcnn", grid, out, {"grid": list(grid.shape[1:]), "codebook_size":
                                                                      vqvae.config.codebook_size}, prepare=lambda r: r)
        batch = trainer.batch(0)
        rows.append({"model": "PixelCNN step", **measure(lambda: trainer.train_step(batch), BATCH)})
        pixelcnn.eval()
        n = 8
        seconds = median_seconds(lambda: pixelcnn.sample(n), repeats=1, warmup=0)
        rows.append({"model": f"PixelCNN sampling ({n} grids)", "s/step": seconds, "images/s": n / seconds,
                     "peak GB": None})
    print(table(rows))


if __name__ == "__main__":
    main()
