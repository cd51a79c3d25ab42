"""SVQ's training step at the speed anchor's config: 64x64 2D Sprites, batch 8, the official defaults (K = 4 slots,
M = 16 blocks of 128, slot 2048, CNN 512, dVAE vocabulary 4096, an 8-layer decoder of 4 heads and d 192), one full
optimiser step through the shared Trainer (forward, backward, Adam over the three groups, the codebooks' EMA).
On a GPU also under bf16 autocast (the paper trained in half precision with fused attention).

Prints ours beside the recorded anchor, 24.91 s/step measured once for the official code on a 2-core CPU with
torch 2.13 (implementation-notes §9; 80.4 M parameters as it counts them, ~55 M by the layer shapes with its
dense GRU matrices, of which only the block-diagonal 1/M is non-zero), labelled as such: not a side-by-side
ratio. Target: ours / anchor <= 0.5.
"""
from __future__ import annotations

import tempfile

import torch

from benchmarks.common import median_seconds, table, trainer_step
from benchmarks.official import ANCHOR_LABEL, parameters
from common.data import generate_split
from common.provenance import hardware
from common.train import TrainConfig, Trainer
from papers.svq.model import SVQ, SVQConfig

ANCHOR_S = 24.91


def anchor_config() -> SVQConfig:
    """The official defaults at 64 px (args.py, checked 7.1): CLEVR-Hard's block layout."""
    return SVQConfig(resolution=(64, 64), num_slots=4, blocks=16, block_dim=128, codebook_size=64)


def _bf16_step(model, images: torch.Tensor, batch_size: int, out: str):
    trainer = Trainer(model, images, TrainConfig(batch_size=batch_size, lr=1e-4, clip="inf", clip_value=0.05,
                                                 mixed_precision="bf16"), out)
    batch = trainer.batch(0)
    return lambda: trainer.train_step(batch)


def main(batch_size: int = 8, repeats: int = 3, warmup: int = 1) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"SVQ 64x64, K=4, M=16 x 128, CNN 512, 8-layer decoder, batch {batch_size}, one optimiser step, on "
          f"{hardware()}")
    images = torch.from_numpy(generate_split("sprites", batch_size, 0, params={"variant": "random"})[1]["image"])
    torch.manual_seed(0)
    model = SVQ(anchor_config()).to(device)
    rows = []
    with tempfile.TemporaryDirectory() as out:
        s = median_seconds(trainer_step(model, images, batch_size, f"{out}/fp32"), repeats, warmup)
        rows.append({"code": "ours, fp32", "median s": s, "images/s": f"{batch_size / s:.1f}",
                     "params": parameters(model), "ours / anchor": f"{s / ANCHOR_S:.2f}"})
        if device == "cuda":
            s = median_seconds(_bf16_step(model, images, batch_size, f"{out}/bf16"), repeats, warmup)
            rows.append({"code": "ours, bf16 autocast", "median s": s, "images/s": f"{batch_size / s:.1f}",
                         "params": parameters(model), "ours / anchor": "(GPU vs CPU anchor)"})
    rows.append({"code": f"official: {ANCHOR_LABEL}", "median s": ANCHOR_S, "images/s": f"{8 / ANCHOR_S:.2f}",
                 "params": "80.4 M (its count)", "ours / anchor": "1"})
    print(table(rows))
    print("target: ours / recorded anchor <= 0.5 on the anchor's 2-core CPU (not a side-by-side ratio)")


if __name__ == "__main__":
    main()
