"""SVQ's training step at the speed anchor's config: 64x64 2D Sprites, batch 8, the official defaults (K = 4 slots,
M = 16 blocks of 128, slot 2048, CNN 512, dVAE vocabulary 4096, an 8-layer decoder of 4 heads and d 192), one full
optimiser step through the shared Trainer (forward, backward, inf-norm clipping at 0.05, Adam over the three
groups, the codebooks' EMA). On a GPU also under bf16 autocast (the paper trained in half precision).

`python -m benchmarks svq_step --official PATH` builds the official model from a checkout of yfw/nlotm
(benchmarks/official.py: `load_svq`, `official_svq_step`; needs einops, in the official-bench extra) and times it
alternating with ours in this run on the same images: ours / official is then a side-by-side ratio. Without
--official (or when the checkout cannot be used: one line says why) it prints ours beside the recorded anchor,
24.91 s/step measured once for the official code on a 2-core CPU with torch 2.13 (implementation-notes §9),
labelled as such, and no ratio to it. Target: ours / official <= 0.5.
"""
from __future__ import annotations

import tempfile

import torch

from benchmarks.common import dispatched_ops, median_seconds, table, trainer_step
from benchmarks.official import (ANCHOR_LABEL, NO_ANCHOR_RATIO, add_kernels, alternating_seconds, describe,
                                 load_official, load_svq, official_svq_step, parameters, side_by_side)
from common.data import generate_split
from common.provenance import hardware
from common.train.loop import to_float_images
from papers.svq.model import SVQ, SVQConfig

ANCHOR_S, ANCHOR_BATCH = 24.91, 8
OURS, OURS_BF16, OFFICIAL = "ours (shared Trainer step)", "ours, bf16 autocast", "official (its train.py step)"
CLIP = {"clip": "inf", "clip_value": 0.05}  # as the official train.py


def anchor_config() -> SVQConfig:
    """The official defaults at 64 px (args.py, checked 7.1): CLEVR-Hard's block layout."""
    return SVQConfig(resolution=(64, 64), num_slots=4, blocks=16, block_dim=128, codebook_size=64)


def main(official: str | None = None, *, batch_size: int = ANCHOR_BATCH, repeats: int = 3, warmup: int = 1) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"SVQ 64x64, K=4, M=16 x 128, CNN 512, 8-layer decoder, batch {batch_size}, one optimiser step, on "
          f"{hardware()}")
    images = torch.from_numpy(generate_split("sprites", batch_size, 0, params={"variant": "random"})[1]["image"])
    torch.manual_seed(0)
    model = SVQ(anchor_config()).to(device)
    theirs = load_official(load_svq, official, device=device)
    with tempfile.TemporaryDirectory() as out:
        steps = {OURS: trainer_step(model, images, batch_size, f"{out}/fp32", **CLIP)}
        if device == "cuda":
            steps[OURS_BF16] = trainer_step(model, images, batch_size, f"{out}/bf16", mixed_precision="bf16", **CLIP)
        if theirs is not None:
            steps[OFFICIAL] = official_svq_step(theirs, to_float_images(images).to(device))
            times = alternating_seconds(steps, repeats, warmup)
            counted = official_svq_step(theirs, to_float_images(images).to(device), foreach=True)
            counts = {name: dispatched_ops(s) for name, s in steps.items() if name != OFFICIAL}
            counts[OFFICIAL] = dispatched_ops(counted, [theirs.optimiser])
            rows, line = side_by_side(times, OURS, OFFICIAL)
            for row in rows:
                row["params"] = parameters(theirs.model if row["code"] == OFFICIAL else model)
            kernel_line = add_kernels(rows, counts, OURS, OFFICIAL)
            print(table(rows))
            print(line + f"; target <= 0.5\n{describe(official, repeats, warmup)}")
            print(kernel_line)
            return
        rows = [{"code": name, "median s": (s := median_seconds(step, repeats, warmup)),
                 "images/s": f"{batch_size / s:.1f}", "params": parameters(model)}
                for name, step in steps.items()]
    rows.append({"code": f"official: {ANCHOR_LABEL}", "median s": ANCHOR_S,
                 "images/s": f"{ANCHOR_BATCH / ANCHOR_S:.2f}", "params": "80.4 M (its count)"})
    print(table(rows))
    print(NO_ANCHOR_RATIO)


if __name__ == "__main__":
    main()
