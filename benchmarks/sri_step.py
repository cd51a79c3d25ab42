"""SRI training step at the speed anchor's config: GENv2-MoG backbone, ShapeStacks 64x64, K=9, |z|=64,
|s|=128, L=3, batch 32, two GECOs, one full optimiser step (forward, backward, Adam, both GECO updates)
through the shared Trainer; with the paper's one shared decoder (our default) and with the official code's
separate SRI decoder (`decoder: separate`, the anchor's architecture).

The ratio printed is against the recorded anchor, 15.26 s/step measured once for the official code on a
2-core CPU with torch 2.13 (implementation-notes §9, 3.63 M parameters), labelled as such: not side by side.
"""
from __future__ import annotations

import torch

from benchmarks.common import table, trainer_step_seconds
from benchmarks.official import ANCHOR_LABEL, parameters
from common.data import generate_split
from common.provenance import hardware
from papers.sri.model import SRI, SRIConfig

ANCHOR_S = 15.26


def time_step(config: SRIConfig, images: torch.Tensor, batch_size: int, repeats: int, warmup: int) -> dict:
    torch.manual_seed(0)
    model = SRI(config)
    return {"median s": trainer_step_seconds(model, images, batch_size, repeats, warmup), "params": parameters(model)}


def main(*, batch_size: int = 32, repeats: int = 5, warmup: int = 1) -> None:
    print(f"SRI-MoG (GENESIS-v2 backbone) 64x64, K=9, |z|=64, |s|=128, L=3, two GECOs, batch {batch_size}, "
          f"one optimiser step, on {hardware()}")
    images = torch.from_numpy(generate_split("shapestacks", batch_size, 0)[1]["image"])
    rows = []
    for decoder in ("shared", "separate"):
        r = time_step(SRIConfig(decoder=decoder), images, batch_size, repeats, warmup)
        rows.append({"code": f"ours, decoder {decoder}", **r, "ours / anchor": f"{r['median s'] / ANCHOR_S:.2f}"})
    rows.append({"code": f"official: {ANCHOR_LABEL}", "median s": ANCHOR_S, "params": "3.63 M", "ours / anchor": "1"})
    print(table(rows))
    print("target: ours / recorded anchor <= 0.5 (not a side-by-side ratio)")


if __name__ == "__main__":
    main()
