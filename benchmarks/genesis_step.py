"""GENESIS-v2 training step at the speed anchor's config: 64x64, K=9, F=64, autoregressive prior, GECO,
batch 32, one full optimiser step (forward, backward, Adam, GECO update) through the shared Trainer.

The official code (applied-ai-lab/genesis, GPL-3.0) is not timed side by side here yet: it builds its model
through `forge` configs, a git submodule that its repository does not contain, so an `--official PATH`
mode needs that construction path rebuilt first (as emorl_step does for EfficientMORL's sacred configs).
Until then the ratio printed is against the recorded anchor, 9.54 s/step measured once for the official
code on a 2-core CPU with torch 2.13 (implementation-notes §9, 2.73 M parameters), labelled as such.
"""
from __future__ import annotations

import torch

from benchmarks.common import table, trainer_step_seconds
from benchmarks.official import ANCHOR_LABEL, parameters
from common.data import generate_split
from common.models.genesis_v2 import GenesisV2, GenesisV2Config
from common.provenance import hardware

ANCHOR_S = 9.54


def main(*, batch_size: int = 32, repeats: int = 5, warmup: int = 1) -> None:
    print(f"GENESIS-v2 64x64, K=9, F=64, autoregressive prior, GECO, batch {batch_size}, one optimiser step, "
          f"on {hardware()}")
    torch.manual_seed(0)
    model = GenesisV2(GenesisV2Config())  # the ShapeStacks defaults: the anchor's config
    images = torch.from_numpy(generate_split("shapestacks", batch_size, 0)[1]["image"])
    seconds = trainer_step_seconds(model, images, batch_size, repeats, warmup)
    print(table([{"code": "ours (shared Trainer step)", "median s": seconds, "params": parameters(model)},
                 {"code": f"official: {ANCHOR_LABEL}", "median s": ANCHOR_S, "params": "2.73 M"}]))
    print(f"ours / recorded anchor: {seconds / ANCHOR_S:.2f} (target <= 0.5; not a side-by-side ratio)")


if __name__ == "__main__":
    main()
