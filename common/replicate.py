"""`make replicate PAPER=<name>`: run a paper's DVC pipeline on a profile, or say why it cannot."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAPERS = ("iodine", "emorl", "sri", "lom", "svq")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="make replicate", description=__doc__)
    p.add_argument("--paper", required=True)
    p.add_argument("--profile", default="smoke", choices=("smoke", "short", "paper"))
    p.add_argument("--dataset", default=None)
    args = p.parse_args(argv)
    if args.paper not in PAPERS:
        print(f"error: unknown paper '{args.paper}' (choose from {', '.join(PAPERS)})", file=sys.stderr)
        return 2
    pipeline = ROOT / "papers" / args.paper / "dvc.yaml"
    if not pipeline.is_file():
        print(f"error: papers/{args.paper} is not implemented yet: there is no {pipeline.relative_to(ROOT)} "
              f"to run. Nothing was trained or evaluated.", file=sys.stderr)
        return 2
    params = [f"{args.paper}.profile={args.profile}"]
    if args.dataset:
        params.append(f"{args.paper}.dataset={args.dataset}")
    cmd = ["dvc", "exp", "run", str(pipeline.relative_to(ROOT))]
    for value in params:
        cmd += ["-S", f"params.yaml:{value}"]
    print("+", " ".join(cmd))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.call(cmd, cwd=ROOT, env=env)  # stages call `python`/`dvc` from this venv


if __name__ == "__main__":
    sys.exit(main())
