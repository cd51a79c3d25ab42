"""Learning-rate schedules: linear warm-up then exponential decay (Slot Attention, EMORL §4)."""
from __future__ import annotations

from collections.abc import Callable


def warmup_decay(warmup_steps: int, decay_rate: float, decay_steps: int,
                 decay_after_warmup: bool = True) -> Callable[[int], float]:
    """LR factor at step t: min(1, t / warmup) * decay_rate ** (t' / decay_steps).

    t' counts from the end of warm-up (EMORL: 0.5 ** (t' / 1e5) after 10K warm-up steps) or from
    step 0 when `decay_after_warmup=False` (Slot Attention).
    """
    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
        t = max(0, step - warmup_steps) if decay_after_warmup else step
        return warm * decay_rate ** (t / decay_steps)
    return factor
