"""IODINE vs EfficientMORL, both ours, same machine, same run (EMORL §4.4, Fig. 10): forward and
forward+backward seconds per call at 64/96/128 px, batch 4, CLEVR architectures (IODINE K=7, T=5, with
the released code's five decoder convolutions, the IODINE EMORL compared with; EMORL K=7, I = 0, 1, 3),
peak memory of forward+backward, and the speed-up ratios beside EMORL's claims
(10x faster forward at I=0, 6x faster forward+backward)."""
from __future__ import annotations

import torch

from benchmarks.common import forward_timings, table
from common.provenance import hardware
from papers.emorl.model import EfficientMORL, EMORLConfig
from papers.iodine.model import IODINE, IODINEConfig

SIZES, BATCH = (64, 96, 128), 4


def iodine(size: int) -> IODINE:
    return IODINE(IODINEConfig(resolution=(size, size), num_slots=7, latent_dim=64, iterations=5,
                               decoder_channels=(64, 64, 64, 64, 4), decoder_kernel=3, refine_channels=(64, 64, 64, 64),
                               refine_kernel=3, refine_mlp=(256, 256), lstm_size=256))


def emorl(size: int) -> EfficientMORL:
    return EfficientMORL(EMORLConfig(resolution=(size, size), num_slots=7, slot_dim=64, decoder="iodine",
                                     likelihood="mixture", sigma=0.1))


def main() -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    repeats = 10 if device == "cuda" else 2
    rows = []
    for size in SIZES:
        x = torch.rand(BATCH, 3, size, size, device=device)
        base = forward_timings(iodine(size).to(device), x, repeats)
        rows.append({"size": size, "model": "IODINE T=5", **base, "fwd speed-up": 1.0, "fwd+bwd speed-up": 1.0})
        model = emorl(size).to(device)
        for steps in (0, 1, 3):
            r = forward_timings(model, x, repeats, steps=steps)
            rows.append({"size": size, "model": f"EMORL I={steps}", **r,
                         "fwd speed-up": base["fwd s"] / r["fwd s"], "fwd+bwd speed-up": base["fwd+bwd s"] / r["fwd+bwd s"]})
    print(f"IODINE vs EfficientMORL (ours), CLEVR architectures, batch {BATCH}, on {hardware()}")
    print(table(rows))
    print("EMORL's claims (§4.4, Fig. 10, 128 px, GPU): forward 10x faster at I=0; forward+backward 6x faster.")
