"""`make replicate PAPER=<name> [DATASET=..] [PROFILE=..] [SEEDS=0,1,2] [MAX_MINUTES=..]`: run a paper's DVC pipeline up to the report of one
dataset (`dvc exp run papers/<name>/dvc.yaml:report@<dataset>`) on a profile, or say why it cannot."""
from __future__ import annotations
from common.requirements import require

require("replicate")  # before the imports that need it

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from common.pipeline import BUDGET_ENV, output_root, unfinished
from common.train.loop import EXIT_BUDGET

ROOT = Path(__file__).resolve().parents[1]
PAPERS = ("iodine", "emorl", "sri", "lom", "svq")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="make replicate", description=__doc__)
    p.add_argument("--paper", required=True)
    p.add_argument("--profile", default="smoke", choices=("smoke", "short", "paper"))
    p.add_argument("--dataset", default=None)
    p.add_argument("--seeds", default=None, help="training seeds, e.g. 0,1,2 (default: params.yaml's <paper>.seeds)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="time budget of each training stage: it saves and stops; the same command resumes")
    args = p.parse_args(argv)
    if args.paper not in PAPERS:
        print(f"error: unknown paper '{args.paper}' (choose from {', '.join(PAPERS)})", file=sys.stderr)
        return 2
    pipeline = ROOT / "papers" / args.paper / "dvc.yaml"
    if not pipeline.is_file():
        print(f"error: papers/{args.paper} is not implemented yet: there is no {pipeline.relative_to(ROOT)} "
              f"to run. Nothing was trained or evaluated.", file=sys.stderr)
        return 2
    settings = yaml.safe_load((ROOT / "params.yaml").read_text())[args.paper]
    dataset = args.dataset or settings["dataset"]
    if dataset not in settings["datasets"]:
        print(f"error: papers/{args.paper} has no dataset '{dataset}' (choose from {', '.join(settings['datasets'])})",
              file=sys.stderr)
        return 2
    cmd = ["dvc", "exp", "run", f"{pipeline.relative_to(ROOT)}:report@{dataset}",
           "-S", f"params.yaml:{args.paper}.profile={args.profile}"]
    if args.seeds:
        try:
            seeds = [int(k) for k in args.seeds.split(",")]
        except ValueError:
            print(f"error: SEEDS takes comma-separated integers, got {args.seeds!r}", file=sys.stderr)
            return 2
        cmd += ["-S", f"params.yaml:{args.paper}.seeds=[{','.join(map(str, seeds))}]"]
    print("+", " ".join(cmd))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if args.max_minutes is not None:
        env[BUDGET_ENV] = str(args.max_minutes)
    start = time.time()
    code = subprocess.call(cmd, cwd=ROOT, env=env)  # stages call `python`/`dvc` from this venv
    runs = output_root() / "runs" / args.paper
    stopped = [r for r in [*runs.glob("*/seed*"), *runs.glob("*/seed*/T*")]  # runs, and IODINE's sweep runs
               if unfinished(r) and (r / "checkpoints").stat().st_mtime >= start]
    if code and stopped:
        print(f"stopped by the {args.max_minutes:g}-minute budget with a checkpoint in "
              f"{', '.join(str(r) for r in stopped)}: run the same command again to resume", file=sys.stderr)
        return EXIT_BUDGET
    return code


if __name__ == "__main__":
    sys.exit(main())
