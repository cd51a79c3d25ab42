"""Every paper's training step at its config: seconds per optimiser step, images/s, peak memory and the
kernels it dispatches (forward, backward and optimiser: on a GPU, small tensors make launch overhead times
that count the step's floor; it does not depend on the batch).

On a GPU each config runs at its `short` profile (its batch size, resolution and mixed precision);
on a CPU at `smoke` (`short` batches take minutes a step there). "training min (projected)" is s/step times
the profile's steps: on a GPU, one input to re-budgeting a `short` profile to about 20 minutes. Checkpoints,
logging and evaluation come on top, and so do the other models a pipeline trains beside the config's own (IODINE's
Fig. 8 sweep; SRI's GENESIS-v2 baseline; SVQ's priors, VQ-VAE, PixelCNN and GENESIS-v2). Each config is
measured in a fresh process (Accelerate's state is per process), through the shared Trainer, on generated scenes
of the config's own dataset. Peak memory: allocated GPU memory, or resident memory above rest on a CPU.
"""
from __future__ import annotations

import fnmatch
import json
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks.common import dispatched_ops, json_in_subprocess, median_seconds, peak_gb, table
from common.provenance import hardware

ROOT = Path(__file__).resolve().parents[1]


def configs() -> list[Path]:
    """Every paper config that trains on its own scenes (EMORL's CLEVR10 only evaluates the CLEVR6 run; configs
    without a data section, SVQ's priors and VQ-VAE, train on what another run provides: svq_baselines times them)."""
    from common.config import load_yaml
    return [p for p in sorted(ROOT.glob("papers/*/configs/*.yaml"))
            if "data" in load_yaml(p) and not load_yaml(p).get("eval", {}).get("run_of")]


def measure(config: Path, profile: str, repeats: int = 3) -> dict:
    """One config's step, in this process: s/step, images/s, peak GB and kernels of one step."""
    from common.data import generate_split
    from common.train import Trainer
    from common.train.experiment import build_model, load_experiment

    exp = load_experiment(config, profile)
    torch.manual_seed(0)
    model = build_model(exp)
    batch = exp.train.batch_size
    images = torch.from_numpy(generate_split(exp.data.name, batch, exp.data.seed, "train", exp.data.params)[1]["image"])
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model, images, exp.train, out)
        step = lambda: trainer.train_step(trainer.batch(0))
        seconds = median_seconds(step, repeats=repeats, warmup=1)
        peak = peak_gb(step)
        kernels = dispatched_ops(step)["kernels"]
    return {"s/step": seconds, "images/s": batch / seconds, "peak GB": peak, "kernels/step": kernels, "batch": batch,
            "resolution": "x".join(map(str, images.shape[1:3])), "precision": exp.train.mixed_precision,
            "steps": exp.train.steps, "training min (projected)": seconds * exp.train.steps / 60}


def main(only: str | None = None) -> None:
    """`only`: a glob over the config paths under papers/ (e.g. "emorl/*"), to time some configs and not all."""
    profile = "short" if torch.cuda.is_available() else "smoke"
    chosen = [c for c in configs() if only is None or fnmatch.fnmatch(str(c.relative_to(ROOT / "papers")), only)]
    if not chosen:
        raise SystemExit(f"error: no config under papers/ matches {only!r} (e.g. 'emorl/*', '*/tetrominoes.yaml')")
    rows = [{"config": str(c.relative_to(ROOT / "papers")),
             **json_in_subprocess("benchmarks.paper_steps", str(c), profile)} for c in chosen]
    print(f"Each paper config's training step at its `{profile}` profile, on {hardware()}")
    print(table(rows))


if __name__ == "__main__":
    print(json.dumps(measure(Path(sys.argv[1]), sys.argv[2])))
