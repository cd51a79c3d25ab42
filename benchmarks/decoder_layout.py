"""The spatial broadcast decoders' CPU layout: each paper config's decoder, forward and
backward (the gradients of z and every weight), contiguous against channels-last activations, alternating in
this run. The ratio says whether `common.nn.decoders.CPU_CHANNELS_LAST_WIDTH` picks the faster layout here.
"""
from __future__ import annotations

import statistics
from pathlib import Path

import torch

from benchmarks.common import table
from benchmarks.official import alternating_seconds
from common.nn import SpatialBroadcastDecoder
from common.provenance import hardware
from common.train.experiment import build_model, load_experiment
from common.train.memory import keep_freed_memory

ROOT = Path(__file__).resolve().parents[1]
# (config, images per step): the paper configs' decoders, at batches a CPU times in seconds
CONFIGS = [("papers/emorl/configs/tetrominoes.yaml", 32), ("papers/emorl/configs/clevr6.yaml", 4),
           ("papers/iodine/configs/tetrominoes.yaml", 32), ("papers/iodine/configs/clevr6.yaml", 2),
           ("common/models/configs/genesis_v2/shapestacks_mog.yaml", 32)]


def decoders() -> dict[str, tuple[SpatialBroadcastDecoder, int]]:
    """label -> (the config's decoder, slots decoded per step: batch x K)."""
    out = {}
    for path, batch in CONFIGS:
        exp = load_experiment(ROOT / path, "paper")
        decoder, k = build_model(exp).decoder, exp.model_config["num_slots"]
        width = max(m.out_channels for m in decoder.net if isinstance(m, torch.nn.modules.conv._ConvNd))
        out[f"{path} ({width} ch), batch {batch} x K {k}"] = (decoder, batch * k)
    return out


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
