"""Timing helpers: median wall time of a callable after warm-up, on CPU or CUDA."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def median_seconds(fn: Callable[[], object], repeats: int = 10, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        tic = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def table(rows: list[dict]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r[k]) for k in keys) + " |")
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.4g}"
    return str(v)


def forward_timings(model, x: torch.Tensor, repeats: int, **kwargs) -> dict:
    """Median seconds of a no-grad forward and of forward + backward of `loss`; peak GB on a GPU."""
    def forward():
        with torch.no_grad():
            model(x, **kwargs)

    def forward_backward():
        model.zero_grad(set_to_none=True)
        model(x, **kwargs).loss.backward()

    out = {"fwd s": median_seconds(forward, repeats, 1), "fwd+bwd s": median_seconds(forward_backward, repeats, 1)}
    if x.is_cuda:
        torch.cuda.reset_peak_memory_stats()
        forward_backward()
        out["peak GB"] = torch.cuda.max_memory_allocated() / 2**30
    return out
