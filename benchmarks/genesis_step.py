"""GENESIS-v2 training step at the speed anchor's config: 64x64, K=9, F=64, GECO, batch 32, one full optimiser step
(forward, backward, Adam, GECO update) through the shared Trainer.

`python -m benchmarks genesis_step --official PATH` (PATH: a checkout of pemami4911/segregate-relate-imagine) times,
alternating in this run on the same images, the GENESIS-v2 that SRI's official code trains (benchmarks/official.py:
`load_genesis_in_sri`, its model unmodified) against ours with the same independent N(0, I) prior, and prints that
side-by-side ratio. applied-ai-lab/genesis itself cannot be built (its `forge` configs are a missing submodule).
Without --official, ours with the autoregressive prior is printed beside the recorded anchor, 9.54 s/step measured
once for the official code on a 2-core CPU with torch 2.13 (implementation-notes §9, 2.73 M parameters), labelled
as such, and no ratio to it.
"""
from __future__ import annotations

import tempfile

import torch

from benchmarks.common import dispatched_ops, table, trainer_step, trainer_step_seconds
from benchmarks.official import (ANCHOR_LABEL, NO_ANCHOR_RATIO, add_kernels, alternating_seconds, describe,
                                 load_genesis_in_sri, load_official, official_genesis_step, parameters, side_by_side)
from common.data import generate_split
from common.models.genesis_v2 import GenesisV2, GenesisV2Config
from common.provenance import hardware
from common.train.loop import to_float_images

ANCHOR_S = 9.54
OURS, OFFICIAL = "ours, independent prior (shared Trainer step)", "official GENESIS-v2 in SRI's code"


def _model(prior: str) -> GenesisV2:
    torch.manual_seed(0)
    return GenesisV2(GenesisV2Config(prior=prior))  # the ShapeStacks defaults: the anchor's config


def main(official: str | None = None, *, batch_size: int = 32, repeats: int = 5, warmup: int = 1) -> None:
    print(f"GENESIS-v2 64x64, K=9, F=64, GECO, batch {batch_size}, one optimiser step, on {hardware()}")
    images = torch.from_numpy(generate_split("shapestacks", batch_size, 0)[1]["image"])
    theirs = load_official(load_genesis_in_sri, official)
    if theirs is None:
        model = _model("autoregressive")
        seconds = trainer_step_seconds(model, images, batch_size, repeats, warmup)
        print(table([{"code": "ours, autoregressive prior (shared Trainer step)", "median s": seconds,
                      "params": parameters(model)},
                     {"code": f"official: {ANCHOR_LABEL}", "median s": ANCHOR_S, "params": "2.73 M"}]))
        print(NO_ANCHOR_RATIO)
        return
    ours = _model("independent")
    with tempfile.TemporaryDirectory() as out:
        steps = {OURS: trainer_step(ours, images, batch_size, out),
                 OFFICIAL: official_genesis_step(theirs, to_float_images(images))}
        times = alternating_seconds(steps, repeats, warmup)
        counts = {OURS: dispatched_ops(steps[OURS]),
                  OFFICIAL: dispatched_ops(official_genesis_step(theirs, to_float_images(images), foreach=True),
                                           [theirs.optimiser])}
    rows, line = side_by_side(times, OURS, OFFICIAL, note="; the same architecture and prior; target <= 0.5")
    for row in rows:
        row["params"] = parameters(theirs.model if row["code"] == OFFICIAL else ours)
    kernel_line = add_kernels(rows, counts, OURS, OFFICIAL)
    print(describe(official, repeats, warmup))
    print(table(rows))
    print(line)
    print(kernel_line)


if __name__ == "__main__":
    main()
