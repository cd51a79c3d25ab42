"""Does torch.compile help these small models? One config per paper, its training step eager and with each of the
model's own networks compiled (`compile_children`), timed side by side in one process (alternating rounds), on
the accelerator when there is one (its `short` profile) or the CPU (`smoke`). Prints compiled / eager per config.

Only the model's direct child networks are compiled, not the whole model: EMORL's and IODINE's refinement takes
d loss / d lambda inside the forward (torch.autograd.grad), which a whole-model graph cannot hold. The compile
time (first calls) is printed apart and is not in the ratio. Nothing in training compiles today: this measures
whether it should.
"""
from __future__ import annotations

import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from benchmarks.common import json_in_subprocess, table
from benchmarks.official import alternating_seconds
from common.provenance import hardware

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ("emorl/configs/tetrominoes.yaml", "iodine/configs/tetrominoes.yaml", "sri/configs/shapestacks.yaml",
           "lom/configs/shapestacks.yaml", "svq/configs/sprites4.yaml")


def compile_children(model: nn.Module) -> list[str]:
    """Replace each direct child network of `model` that has parameters and its own forward by torch.compile of
    it (in place; the state dict's keys change, so only on a copy). Returns the names compiled."""
    names = [name for name, child in model.named_children()
             if type(child).forward is not nn.Module.forward and any(True for _ in child.parameters())]
    for name in names:
        setattr(model, name, torch.compile(getattr(model, name)))
    return names


def measure(config: str, profile: str, repeats: int = 6) -> dict:
    """Eager and compiled steps of one config in this process: median s/step each, their ratio, compile time."""
    from common.data import generate_split
    from common.train import Trainer
    from common.train.experiment import build_model, load_experiment

    exp = load_experiment(ROOT / "papers" / config, profile)
    torch.manual_seed(0)
    eager = build_model(exp)
    compiled = copy.deepcopy(eager)
    names = compile_children(compiled)
    images = torch.from_numpy(generate_split(exp.data.name, exp.train.batch_size, exp.data.seed, "train",
                                             exp.data.params)[1]["image"])
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        trainers = {"eager": Trainer(eager, images, exp.train, a), "compiled": Trainer(compiled, images, exp.train, b)}
        steps = {k: (lambda t=t: t.train_step(t.batch(0))) for k, t in trainers.items()}
        tic = time.perf_counter()
        steps["compiled"]()  # compiles
        compile_s = time.perf_counter() - tic
        times = alternating_seconds(steps, repeats, warmup=1)
    eager_s, compiled_s = (statistics.median(times[k]) for k in ("eager", "compiled"))
    return {"eager s/step": eager_s, "compiled s/step": compiled_s, "compiled / eager": compiled_s / eager_s,
            "compile s": compile_s, "compiled": ", ".join(names), "batch": exp.train.batch_size}


def main() -> None:
    profile = "short" if torch.cuda.is_available() else "smoke"
    print(f"torch.compile of each model network vs eager, training step at the `{profile}` profile, on {hardware()}")
    print(table([{"config": c, **json_in_subprocess("benchmarks.compile_steps", c, profile)} for c in CONFIGS]))


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1], sys.argv[2])))
