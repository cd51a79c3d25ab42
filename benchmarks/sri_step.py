"""SRI training step at the speed anchor's config: GENv2-MoG backbone, ShapeStacks 64x64, K=9, |z|=64,
|s|=128, L=3, batch 32, two GECOs, one full optimiser step (forward, backward, Adam, both GECO updates)
through the shared Trainer; with the paper's architecture (our default: one shared decoder, Eq. 30's linear
W_v) and with the official code's (`decoder: separate`, `relate_values: official`: the same parameter count).

`python -m benchmarks sri_step --official PATH` builds the official model from a checkout of
pemami4911/segregate-relate-imagine (benchmarks/official.py: `load_sri`, `official_sri_step`) and times it
alternating with ours in this run, on the same inputs; ours / official is then a side-by-side ratio. Our
Trainer turns on `common.train.memory.keep_freed_memory()`, a process-wide allocator setting, so both sides
run with it. Without --official (or when the checkout cannot be used: one line says why) it prints ours
beside the recorded anchor, 15.26 s/step measured once for the official code on a 2-core CPU with torch 2.13
(implementation-notes §9, 3.63 M parameters), labelled as such, and no ratio to it.
"""
from __future__ import annotations

import statistics
import tempfile

import torch

from benchmarks.common import dispatched_ops, gflop, median_seconds, table, trainer_step
from benchmarks.official import (ANCHOR_LABEL, NO_ANCHOR_RATIO, add_kernels, add_work, alternating_seconds, describe,
                                 load_official, load_sri, official_sri_step, parameters, side_by_side)
from common.data import generate_split
from common.provenance import hardware
from common.train.loop import to_float_images
from papers.sri.model import SRI, SRIConfig

ANCHOR_S = 15.26
SHARED, SEPARATE, OFFICIAL = ("ours, the paper's architecture", "ours, the official architecture",
                              "official (its train.py step)")


def _model(official: bool) -> SRI:
    torch.manual_seed(0)
    if official:
        return SRI(SRIConfig(decoder="separate", relate_values="official"))
    return SRI(SRIConfig())


def main(official: str | None = None, *, batch_size: int = 32, repeats: int = 5, warmup: int = 1) -> None:
    print(f"SRI-MoG (GENESIS-v2 backbone) 64x64, K=9, |z|=64, |s|=128, L=3, two GECOs, batch {batch_size}, "
          f"one optimiser step, on {hardware()}")
    images = torch.from_numpy(generate_split("shapestacks", batch_size, 0)[1]["image"])
    models = {SHARED: _model(False), SEPARATE: _model(True)}
    theirs = load_official(load_sri, official)
    with tempfile.TemporaryDirectory() as out:
        steps = {name: trainer_step(m, images, batch_size, f"{out}/{i}") for i, (name, m) in enumerate(models.items())}
        if theirs is None:
            rows = [{"code": name, "median s": median_seconds(step, repeats, warmup),
                     "params": parameters(models[name])}
                    for name, step in steps.items()]
            rows.append({"code": f"official: {ANCHOR_LABEL}", "median s": ANCHOR_S, "params": "3.63 M"})
            print(table(rows))
            print(NO_ANCHOR_RATIO)
            return
        steps[OFFICIAL] = official_sri_step(theirs, to_float_images(images))
        times = alternating_seconds(steps, repeats, warmup)
        work = {name: gflop(step) for name, step in steps.items()}
        counts = {**{name: dispatched_ops(steps[name]) for name in models},
                  OFFICIAL: dispatched_ops(official_sri_step(theirs, to_float_images(images), foreach=True),
                                           [theirs.optimiser])}
    rows, line = side_by_side({n: times[n] for n in (SEPARATE, OFFICIAL)}, SEPARATE, OFFICIAL,
                              note="; the same architecture; target <= 0.5")
    shared = statistics.median(times[SHARED]) / statistics.median(times[OFFICIAL])
    rows.insert(0, side_by_side({n: times[n] for n in (SHARED, OFFICIAL)}, SHARED, OFFICIAL)[0][0])
    for row in rows:
        row["params"] = parameters(theirs.model if row["code"] == OFFICIAL else models[row["code"]])
    work_line = add_work(rows, work, SEPARATE, OFFICIAL)
    kernel_line = add_kernels(rows, counts, SEPARATE, OFFICIAL)
    print(describe(official, repeats, warmup))
    print(table(rows))
    print(line)
    print(f"ours with the paper's architecture / official: {shared:.2f}")
    if work_line:
        print(work_line)
    print(kernel_line)


if __name__ == "__main__":
    main()
