"""`make replicate PAPER=<name> [DATASET=..] [PROFILE=..] [SEEDS=0,1,2] [MAX_MINUTES=..] [STAGE=..]`: run a paper's DVC
pipeline up to the report of one dataset (`dvc exp run papers/<name>/dvc.yaml:report@<dataset>`) on a profile, or
say why it cannot. STAGE names another per-dataset stage to run up to (SVQ: `report_downstream`, Tables 4-5)."""
from __future__ import annotations
from common.requirements import require

require("replicate")  # before the imports that need it

import argparse
import fcntl
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import yaml

from common.pipeline import BUDGET_ENV, output_root, unfinished
from common.train.loop import EXIT_BUDGET

ROOT = Path(__file__).resolve().parents[1]
PAPERS = ("iodine", "emorl", "sri", "lom", "svq")


LOCK, PARAMS = ROOT / ".replicate.lock", ROOT / "params.yaml"


class Busy(RuntimeError):
    """Another `make replicate` holds this workspace."""


@contextmanager
def workspace_lock():
    """One `make replicate` per workspace: DVC experiments run in it share params.yaml and outputs."""
    with open(LOCK, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise Busy(f"another make replicate is running in this workspace ({holder}); wait for it to finish "
                       f"or run from a separate clone") from None
        handle.truncate(0)
        handle.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)


@contextmanager
def params_restored_on_failure(path: Path):
    """`dvc exp run -S` writes its settings into params.yaml; when the command fails (or is interrupted)
    the file gets its bytes back, so the next plain `make replicate` does not inherit them."""
    before = path.read_bytes()
    outcome = SimpleNamespace(code=1)
    try:
        yield outcome
    finally:
        if outcome.code != 0 and path.read_bytes() != before:
            tmp = path.with_suffix(".restore")
            tmp.write_bytes(before)
            tmp.replace(path)
            print(f"{path.name} restored: the failed command's settings do not outlive it", file=sys.stderr)


def stage_datasets(stage: dict, paper: str, settings: dict) -> list[str]:
    """The datasets a `foreach: ${<paper>.<list>}` stage runs over ([] for any other stage)."""
    ref = stage.get("foreach") if isinstance(stage, dict) else None
    prefix = "${" + paper + "."
    if not (isinstance(ref, str) and ref.startswith(prefix) and ref.endswith("}")):
        return []
    names = settings.get(ref[len(prefix):-1], [])
    return [n for n in names if isinstance(n, str)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="make replicate", description=__doc__)
    p.add_argument("--paper", required=True)
    p.add_argument("--profile", default="smoke", choices=("smoke", "short", "paper"))
    p.add_argument("--dataset", default=None)
    p.add_argument("--stage", default="report", help="the per-dataset stage to run up to (default: report)")
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
    settings = yaml.safe_load(PARAMS.read_text())[args.paper]
    stages = yaml.safe_load(pipeline.read_text())["stages"]
    choices = stage_datasets(stages.get(args.stage, {}), args.paper, settings)
    if not choices:
        per_dataset = [name for name, stage in stages.items() if stage_datasets(stage, args.paper, settings)]
        print(f"error: papers/{args.paper} has no per-dataset stage '{args.stage}' (choose from "
              f"{', '.join(per_dataset)})", file=sys.stderr)
        return 2
    dataset = args.dataset or (settings["dataset"] if args.stage == "report" else choices[0])
    if dataset not in choices:
        print(f"error: papers/{args.paper} has no dataset '{dataset}' for stage {args.stage} (choose from "
              f"{', '.join(choices)})", file=sys.stderr)
        return 2
    cmd = ["dvc", "exp", "run", f"{pipeline.relative_to(ROOT)}:{args.stage}@{dataset}",
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
    try:
        with workspace_lock(), params_restored_on_failure(PARAMS) as outcome:
            outcome.code = subprocess.call(cmd, cwd=ROOT, env=env)  # stages call `python`/`dvc` from this venv
    except Busy as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    code = outcome.code
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
