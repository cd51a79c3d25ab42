"""Run the benchmarks: python -m benchmarks [NAME ...] (default: all)."""
from __future__ import annotations

import importlib
import sys

BENCHMARKS = ["generators", "generators3d", "readers", "train_step", "emorl_step", "emorl_efficiency", "iodine_vs_emorl"]


def main(argv: list[str]) -> int:
    names = argv or BENCHMARKS
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"error: unknown benchmark {unknown[0]!r} (available: {', '.join(BENCHMARKS)})", file=sys.stderr)
        return 2
    for name in names:
        print(f"== {name}")
        importlib.import_module(f"benchmarks.{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
