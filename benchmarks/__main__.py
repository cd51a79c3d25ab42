"""Run the benchmarks: python -m benchmarks [NAME ...] [--official PATH] (default: all)."""
from __future__ import annotations

import argparse
import importlib
import inspect
import sys

BENCHMARKS = ["generators", "generators3d", "readers", "train_step", "paper_steps", "emorl_step", "emorl_efficiency",
              "genesis_step", "sri_step", "lom_step", "svq_step", "svq_baselines", "svq_sampling", "iodine_vs_emorl",
              "compile_steps", "decoder_layout"]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"default: all of {', '.join(BENCHMARKS)}")
    parser.add_argument("--official", metavar="PATH",
                        help="a checkout of the official implementation, imported at run time (never vendored), "
                             "to time side by side in this run where a benchmark has one (emorl_step, "
                             "emorl_efficiency: pemami4911/EfficientMORL; needs the official-bench extra)")
    parser.add_argument("--only", metavar="GLOB",
                        help="the configs to run, for benchmarks that run many (paper_steps), e.g. 'emorl/*' or "
                             "'*/tetrominoes.yaml' (paths under papers/)")
    return parser.parse_args(argv)


def takes(module, name: str) -> bool:
    return name in inspect.signature(module.main).parameters


def main(argv: list[str]) -> int:
    args = parse(argv)
    names = args.names or BENCHMARKS
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"error: unknown benchmark {unknown[0]!r} (available: {', '.join(BENCHMARKS)})", file=sys.stderr)
        return 2
    for name in names:
        print(f"== {name}")
        module = importlib.import_module(f"benchmarks.{name}")
        kwargs = {k: v for k, v in (("official", args.official), ("only", args.only)) if takes(module, k)}
        for option, flag in (("official", "--official"), ("only", "--only")):
            if getattr(args, option) is not None and option not in kwargs:
                print(f"({name} does not take {flag}; it is not used here)")
        module.main(**kwargs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
