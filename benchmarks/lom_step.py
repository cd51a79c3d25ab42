"""LOM's training step beside its orderless backbone's alone, side by side in one run (LOM App. A.4.3: "LOM-GENv2-G
takes approximately a similar amount of time" as GENv2 to train; the paper gives no figure for LOM-EMORL against
EMORL): LOM-EMORL and EMORL (I = 2, Gaussian sigma 0.7), LOM-GENv2-G and GENv2-G (the independent prior), all at
ShapeStacks 64 px, K = 9, |z| = 64, D_s = 128, batch 32 on the GPU (8 on a CPU, to keep `make bench` short), one
full optimiser step through the shared Trainer (forward, backward, Adam, GECOs).
Prints seconds per step, images per second, and LOM / backbone."""
from __future__ import annotations

import statistics
import tempfile

import torch

from benchmarks.common import table, trainer_step
from benchmarks.official import alternating_seconds, parameters
from common.data import generate_split
from common.models.genesis_v2 import GenesisV2, GenesisV2Config
from common.provenance import hardware
from papers.emorl.model import EfficientMORL
from papers.lom.model import LOM, LOMConfig, lom_emorl_config


def _genesis() -> GenesisV2Config:
    return GenesisV2Config(num_slots=9, feat_dim=64, likelihood="gaussian", normalised=False, sigma=0.7,
                           prior="independent", geco_goal=-0.353, geco_step=1e-6)


def models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {"EMORL (I = 2)": EfficientMORL(lom_emorl_config()),
            "LOM-EMORL": LOM(LOMConfig()),
            "GENv2-G (independent prior)": GenesisV2(_genesis()),
            "LOM-GENv2-G": LOM(LOMConfig(backbone="genesis_v2", emorl=None, genesis_v2=_genesis(), geco="genesis",
                                         geco_goal=-0.353, geco_speedup=10.0))}


def main(batch_size: int | None = None, repeats: int = 3, warmup: int = 1) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    batch_size = batch_size or (32 if device == "cuda" else 8)
    print(f"LOM vs its backbone alone, ShapeStacks 64x64, K=9, batch {batch_size}, one optimiser step, on {hardware()}")
    images = torch.from_numpy(generate_split("shapestacks", batch_size, 0)[1]["image"])
    built = {name: m.to(device) for name, m in models().items()}
    with tempfile.TemporaryDirectory() as out:
        steps = {name: trainer_step(m, images, batch_size, f"{out}/{i}") for i, (name, m) in enumerate(built.items())}
        times = {n: statistics.median(t) for n, t in alternating_seconds(steps, repeats, warmup).items()}
    rows = []
    for lom, base in (("LOM-EMORL", "EMORL (I = 2)"), ("LOM-GENv2-G", "GENv2-G (independent prior)")):
        for name in (base, lom):
            rows.append({"model": name, "median s": f"{times[name]:.3f}", "images/s": f"{batch_size / times[name]:.1f}",
                         "params": parameters(built[name]),
                         "LOM / backbone": f"{times[lom] / times[base]:.2f}" if name == lom else ""})
    print(table(rows))


if __name__ == "__main__":
    main()
