"""Train a few steps with the shared Trainer and dump what rank 0 saw; run by test_multiprocess.py
as `python tests/multiprocess_run.py OUT MODEL` (1 process) and under `torchrun --nproc_per_node 2`.

MODEL: "geco" (a deterministic linear autoencoder with a GECO constraint: no sampling noise, so any
number of processes must give the same trajectory), "codebook" (the same with SVQ's EMA codebooks between
encoder and decoder, likewise deterministic), "iodine" (IODINE with T = 1, smoke sizes) or "genesis"
(GENESIS-v2 with its LSTM prior and multiplicative GECO, 32 px).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch import nn

from common.output import ModelOutput
from common.prob import GECOLagrangeNLL
from common.train import TrainConfig, Trainer


class LinearGECO(nn.Module):
    """x -> z = Ex -> y = Dz; NLL = |y - x|^2 per image, KL stand-in 0.01 |z|^2, GECO (warm start 2)."""

    def __init__(self, size: int = 8, dim: int = 4):
        super().__init__()
        self.enc, self.dec = nn.Linear(3 * size * size, dim), nn.Linear(dim, 3 * size * size)
        self.geco = GECOLagrangeNLL(target=-1.0, step_size=0.05, warm_start=2, acceleration=2.0)

    def forward(self, images, step=None):
        x = images.flatten(1)  # [B,3HW]
        z = self.enc(x)  # [B,D]
        y = self.dec(z)  # [B,3HW]
        nll, kl = ((y - x) ** 2).sum(1), 0.01 * (z**2).sum(1)  # [B], [B]
        loss = self.geco.loss(nll.mean(), kl.mean())
        masks = torch.ones(len(x), 1, 1, *images.shape[2:])
        return ModelOutput(loss, y.view_as(images), masks, z[:, None], {"nll": nll.mean().detach()})

    def after_step(self, out, ok):
        self.geco.update(out.logs["nll"], ok)


class LinearCodebook(nn.Module):
    """x -> z = Ex as 2 blocks of 2 -> SVQ's EMA codebooks (4 codes each; threshold 0: no code ever restarts, so
    nothing random) -> y = Dz_q; loss |y - x|^2 + commitment."""

    def __init__(self, size: int = 8):
        super().__init__()
        from papers.svq.quantiser import BlockCodebooks
        self.enc, self.dec = nn.Linear(3 * size * size, 4), nn.Linear(4, 3 * size * size)
        self.codebooks = BlockCodebooks(blocks=2, size=4, dim=2, threshold=0.0)

    def forward(self, images, step=None):
        x = images.flatten(1)  # [B,3HW]
        z_q, _, commitment = self.codebooks(self.enc(x).view(len(x), 2, 2))  # [B,2,2]
        y = self.dec(z_q.flatten(1))  # [B,3HW]
        loss = ((y - x) ** 2).sum(1).mean() + commitment
        masks = torch.ones(len(x), 1, 1, *images.shape[2:])
        return ModelOutput(loss, y.view_as(images), masks, z_q.flatten(1)[:, None], {})


def build(which: str):
    if which in ("geco", "codebook"):
        torch.manual_seed(0)
        images = torch.randint(0, 256, (16, 8, 8, 3), dtype=torch.uint8)
        return (LinearGECO() if which == "geco" else LinearCodebook()), images
    from common.data import generate_split
    images = torch.from_numpy(generate_split("toy_shapes", 16, 0, params={"size": 32, "max_objects": 2})[1]["image"])
    if which == "genesis":
        from common.models.genesis_v2 import GenesisV2, GenesisV2Config
        torch.manual_seed(0)
        return GenesisV2(GenesisV2Config(resolution=(32, 32), num_slots=3, feat_dim=16)), images
    from papers.iodine.model import IODINE, IODINEConfig
    torch.manual_seed(0)
    model = IODINE(IODINEConfig(resolution=(16, 16), num_slots=3, latent_dim=8, iterations=1,
                                decoder_channels=(8, 4), refine_channels=(8,), refine_mlp=(16,)))
    images = torch.from_numpy(generate_split("toy_shapes", 16, 0, params={"size": 16, "max_objects": 2})[1]["image"])
    return model, images


def main(out: str, which: str) -> None:
    model, images = build(which)
    config = TrainConfig(steps=4, batch_size=8, lr=1e-2, warmup_steps=3, decay_rate=0.5, decay_steps=2,
                         save_every=100, log_every=1)
    trainer = Trainer(model, images, config, Path(out) / "run")
    rank = trainer.accelerator.process_index
    noise = torch.randn(3).tolist()  # after the Trainer seeded this process by (seed, rank)
    trainer.fit()
    Path(out, f"noise_{rank}.json").write_text(json.dumps(noise))
    if trainer.accelerator.is_main_process:
        rows = trainer.log.rows()
        model = trainer.accelerator.unwrap_model(trainer.model)
        Path(out, "result.json").write_text(json.dumps({
            "processes": trainer.accelerator.num_processes,
            "loss": [float(r["loss"]) for r in rows], "lr": [float(r["lr"]) for r in rows],
            "state": {k: v.flatten().tolist() for k, v in model.state_dict().items()}}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
