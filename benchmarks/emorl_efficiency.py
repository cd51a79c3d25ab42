"""EfficientMORL efficiency (§4.4, Fig. 10, App. E.3): forward and forward+backward seconds per call
for I = 0, 1, 3 at 64/96/128 px, batch 4, CLEVR6 architecture (K=7, D=64, IODINE-style decoder,
mixture likelihood), peak memory, and on a GPU the largest batch that fits a budget.

Then the official code at 96 px, I=3: with `--official PATH` (a checkout of pemami4911/EfficientMORL,
imported at run time; see benchmarks/official.py) its forward+backward and ours are timed alternately
in this run and the ratio is measured side by side (plain ELBO on both sides, its CLEVR6 96x96 JSON
config at batch 4). Without it, or when sacred or the checkout is missing (one line says which), the
recorded anchor is shown instead: 17.0 s per full optimiser step measured once on a 2-core CPU
(implementation-notes §9), labelled as such, and no ratio to it."""
from __future__ import annotations

import torch

from benchmarks.common import forward_timings, table
from benchmarks.official import (ANCHOR_LABEL, NO_ANCHOR_RATIO, alternating_seconds, describe, load_emorl,
                                 load_official, official_emorl_forward_backward, parameters, side_by_side)
from common.provenance import hardware
from papers.emorl.model import EfficientMORL, EMORLConfig

SIZES, STEPS, BATCH = (64, 96, 128), (0, 1, 3), 4
BUDGET_GB = 16.0
COMPARED = (96, 3)  # (size, I) timed against the official code
ANCHOR_S = 17.0  # the official full optimiser step there, 2-core CPU (implementation-notes §9)
OFFICIAL_CONFIG = "configs/train/clevr6-96x96/EMORL.json"


def model_for(size: int, device: str) -> EfficientMORL:
    cfg = EMORLConfig(resolution=(size, size), num_slots=7, slot_dim=64, decoder="iodine", likelihood="mixture",
                      sigma=0.1)
    return EfficientMORL(cfg).to(device)


def timings(model, size: int, steps: int, device: str, repeats: int) -> dict:
    x = torch.rand(BATCH, 3, size, size, device=device)
    return {"size": size, "I": steps, **forward_timings(model, x, repeats, steps=steps)}


def largest_batch(model, size: int, steps: int) -> int:
    """Largest fwd+bwd batch within BUDGET_GB (doubling, then bisection)."""
    def fits(b):
        try:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            model(torch.rand(b, 3, size, size, device="cuda"), steps=steps).loss.backward()
            return torch.cuda.max_memory_allocated() / 2**30 <= BUDGET_GB
        except torch.OutOfMemoryError:
            return False
        finally:
            model.zero_grad(set_to_none=True)
    lo, hi = 0, 1
    while fits(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def compare(official: str | None, device: str, ours_s: float, size: int = COMPARED[0], steps: int = COMPARED[1],
            repeats: int = 3, warmup: int = 1) -> None:
    """Ours against the official code at `size`, I=`steps`, batch BATCH, forward+backward: side by side
    when the checkout at `official` can be run, else `ours_s` (from the table) beside the anchor."""
    theirs = load_official(load_emorl, official, OFFICIAL_CONFIG, BATCH, device)
    what = f"{size}x{size}, I={steps}, batch {BATCH}"
    if theirs is None:
        print(f"official code at {what}: {ANCHOR_S} s per optimiser step on a 2-core CPU, {ANCHOR_LABEL}; "
              f"ours forward+backward here {ours_s:.3g} s; {NO_ANCHOR_RATIO}")
        return
    if list(theirs.model.input_size[1:]) != [size, size]:
        raise ValueError(f"{OFFICIAL_CONFIG} is for {theirs.model.input_size[1:]} px, not {size}")
    model, x = model_for(size, device), torch.rand(BATCH, 3, size, size, device=device)

    def ours() -> None:
        model.zero_grad(set_to_none=True)
        model(x, steps=steps).loss.backward()

    fns = {"ours": ours, "official": official_emorl_forward_backward(theirs, x, steps)}
    rows, line = side_by_side(alternating_seconds(fns, repeats, warmup), "ours", "official")
    for row, m in zip(rows, (model, theirs.model)):
        row["params"] = parameters(m)
    print(f"forward+backward at {what}, plain ELBO; {describe(official, repeats, warmup)}")
    print(table(rows))
    print(line)


def main(official: str | None = None) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    repeats = 10 if device == "cuda" else 3
    rows = []
    for size in SIZES:
        model = model_for(size, device)
        for steps in STEPS:
            row = timings(model, size, steps, device, repeats)
            if device == "cuda":
                row[f"max batch in {BUDGET_GB:g} GB"] = largest_batch(model, size, steps)
            rows.append(row)
    print(f"EfficientMORL CLEVR6 architecture, batch {BATCH}, on {hardware()}")
    print(table(rows))
    ours_s = next(r["fwd+bwd s"] for r in rows if (r["size"], r["I"]) == COMPARED)
    compare(official, device, ours_s, repeats=repeats, warmup=1 if device == "cpu" else 2)
