"""The spatial broadcast decoders' CPU layout: each paper's decoder at its training config, forward and
backward (the gradients of z and every weight), contiguous against channels-last activations, alternating in
this run. The ratio says whether `common.nn.decoders.CPU_CHANNELS_LAST_WIDTH` picks the faster layout here.
"""
from __future__ import annotations

import statistics

import torch

from benchmarks.common import table
from benchmarks.official import alternating_seconds
from common.models.genesis_v2 import GenesisV2Config, broadcast_decoder
from common.nn import SpatialBroadcastDecoder
from common.provenance import hardware
from common.train.memory import keep_freed_memory
from papers.emorl.model import EfficientMORL, EMORLConfig


def decoders() -> dict[str, tuple[SpatialBroadcastDecoder, int]]:
    """name -> (decoder, slots decoded per step: batch x K)."""
    emorl_clevr = EMORLConfig(resolution=(96, 96), num_slots=7, slot_dim=64, decoder="iodine")
    iodine = lambda d, size, ch, k: SpatialBroadcastDecoder(d, size, size, ch, (k,) * 4, (k // 2,) * 4,
                                                             position="concat", act="elu")
    return {
        "EMORL Tetrominoes 35px, 32 ch, batch 32 x K 4": (EfficientMORL(EMORLConfig()).decoder, 128),
        "EMORL CLEVR6 96px, 64 ch, batch 4 x K 7": (EfficientMORL(emorl_clevr).decoder, 28),
        "IODINE Tetrominoes 35px, 32 ch, batch 32 x K 4": (iodine(32, (35, 35), (32, 32, 32, 4), 5), 128),
        "IODINE CLEVR6 128px, 64 ch, batch 2 x K 7": (iodine(64, (128, 128), (64, 64, 64, 4), 3), 14),
        "GENESIS-v2 64px, 64 ch, batch 32 x K 9": (broadcast_decoder(GenesisV2Config(resolution=(64, 64))), 288),
    }


def main(*, repeats: int = 5, warmup: int = 1) -> None:
    keep_freed_memory()  # as the Trainer runs on CPU
    print(f"Spatial broadcast decoders, forward + backward, contiguous vs channels-last activations, on {hardware()}")
    rows = []
    for name, (decoder, n) in decoders().items():
        torch.manual_seed(0)
        z = torch.randn(n, decoder.latent_dim, requires_grad=True)
        rows.append({"decoder": name, **_layouts(decoder, z, repeats, warmup),
                     "chosen": "channels-last" if decoder.cpu_channels_last else "contiguous"})
    print(table(rows))


def _layouts(decoder: SpatialBroadcastDecoder, z: torch.Tensor, repeats: int, warmup: int) -> dict:
    chosen = decoder.cpu_channels_last

    def step(channels_last: bool):
        def run() -> None:
            decoder.set_cpu_channels_last(channels_last)
            torch.autograd.grad(decoder(z).sigmoid().sum(), [z, *decoder.parameters()])
        return run

    times = alternating_seconds({"contiguous": step(False), "channels-last": step(True)}, repeats, warmup)
    decoder.set_cpu_channels_last(chosen)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"contiguous s": med["contiguous"], "channels-last s": med["channels-last"],
            "channels-last / contiguous": med["channels-last"] / med["contiguous"]}
