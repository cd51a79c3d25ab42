"""EfficientMORL efficiency (§4.4, Fig. 10, App. E.3): forward and forward+backward seconds per call
for I = 0, 1, 3 at 64/96/128 px, batch 4, CLEVR6 architecture (K=7, D=64, IODINE-style decoder,
mixture likelihood), peak memory, and on a GPU the largest batch that fits a budget."""
from __future__ import annotations

import torch

from benchmarks.common import forward_timings, table
from common.provenance import hardware
from papers.emorl.model import EfficientMORL, EMORLConfig

SIZES, STEPS, BATCH = (64, 96, 128), (0, 1, 3), 4
BUDGET_GB = 16.0


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


def main() -> None:
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
