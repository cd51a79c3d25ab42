"""One paper/dataset/profile/seed through its pipeline inside a wall-clock budget, on a machine lent for
minutes (a leased GPU, a pre-emptible job), and the bundle that carries its result or its unfinished run back.

    python -m common.lease run --paper emorl --dataset tetrominoes --profile short --minutes 9 --out DIR
    python -m common.lease unpack DIR/emorl-tetrominoes-short-seed0.tar.gz*

`run` calls `python -m papers.<paper>.pipeline` stage by stage (prepare, train, the `--extra` stages, evaluate,
report), each in its own process with its output in a log. Training gets the budget that is left after
`--reserve` minutes for the stages after it; when it stops at that budget (exit 3) the later stages are
skipped. Then the bundle: a gzipped tar of the paper's run folders (an unfinished run keeps only its latest
checkpoint, a finished one only its model) and of this dataset/profile's reports, split into parts of at most
`--part-mib` MiB, with `lease.json` (stages, their status and seconds, the step reached, hardware, parts and
their SHA-256) beside it. `unpack` checks the parts and puts the folders back under the output root; running
the same `run` again where the run folder is resumes the unfinished run (the train stage's own rule).
Nothing half-written is left: the bundle and `lease.json` are renamed into place when complete.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from common.provenance import COMMIT_ENV, git_commit, hardware
from common.requirements import require

EXIT_BUDGET = 3  # common.train.loop.EXIT_BUDGET (the stages run in their own processes)
MIB = 2 ** 20


class LeaseError(Exception):
    """Bad arguments or a bundle that cannot be written or read; the message says which."""


@dataclass
class Lease:
    paper: str
    dataset: str
    profile: str
    minutes: float  # wall-clock budget of the whole lease
    seed: int = 0
    reserve: float = 2.0  # minutes kept for the stages after training and the bundle
    extra: tuple[str, ...] = ()  # paper stages between train and evaluate (IODINE's sweep, EMORL's baseline)
    overrides: tuple[str, ...] = ()
    report: bool = True
    stages: list[dict] = field(default_factory=list)  # what ran: name, status, exit code, seconds

    @property
    def name(self) -> str:
        return f"{self.paper}-{self.dataset}-{self.profile}-seed{self.seed}"

    def command(self, stage: str, max_minutes: float | None = None) -> list[str]:
        """`python -m papers.<paper>.pipeline STAGE ...` with this lease's dataset, profile, seed and overrides."""
        cmd = [sys.executable, "-m", f"papers.{self.paper}.pipeline", stage, "--dataset", self.dataset,
               "--profile", self.profile, "--seed", str(self.seed)]
        cmd += [a for o in self.overrides for a in ("--set", o)]
        return cmd + (["--max-minutes", f"{max_minutes:.2f}"] if max_minutes is not None else [])


def training_minutes(lease: Lease, elapsed_s: float) -> float:
    """What the budget leaves for training after `elapsed_s` and the reserve; refuses a budget already spent."""
    left = lease.minutes - elapsed_s / 60 - lease.reserve
    if left <= 0:
        raise LeaseError(f"no time left to train: budget {lease.minutes} min, {elapsed_s / 60:.1f} min spent before "
                         f"training, {lease.reserve} min reserved for evaluation and the bundle (--minutes, --reserve)")
    return left


def spawn(cmd: list[str], log: Path, env: dict) -> int:
    """Run `cmd` with its output in `log`; its exit status."""
    with open(log, "w") as f:
        return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode


def run_stage(lease: Lease, stage: str, logs: Path, max_minutes: float | None = None, env: dict | None = None) -> int:
    """One pipeline stage in its own process, its output in logs/<stage>.log; prints its last lines."""
    logs.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    quiet = {"TQDM_MININTERVAL": "5"}  # a progress line every 5 s, not 10 a second: the logs travel and are kept
    code = spawn(lease.command(stage, max_minutes), logs / f"{stage}.log", {**quiet, **os.environ, **(env or {})})
    status = {0: "done", EXIT_BUDGET: "budget spent"}.get(code, "failed")
    lease.stages.append({"stage": stage, "status": status, "exit": code, "seconds": round(time.monotonic() - start, 1)})
    tail = _last_lines((logs / f"{stage}.log").read_text(errors="replace"), 8)
    print(f"== {stage}: {status} (exit {code}, {lease.stages[-1]['seconds']} s)", *("   " + t for t in tail), sep="\n")
    return code


def _last_lines(text: str, n: int) -> list[str]:
    """The last n lines, progress-bar updates (tqdm's "it/s" or "s/it" redraws) reduced to the last one."""
    lines = text.splitlines()
    bars = [i for i, line in enumerate(lines) if "it/s" in line or "s/it" in line]
    return [line for i, line in enumerate(lines) if i not in bars[:-1]][-n:]


def run(lease: Lease, out: Path, part_mib: float = 16, max_parts: int = 8) -> dict:
    """The lease: stages within the budget, then the bundle in `out`. Returns the summary written as lease.json."""
    from common.pipeline import output_root  # after require("pipeline"): it needs datasets
    start, root = time.monotonic(), output_root()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())  # each lease's logs in their own folder
    logs = root / "reports" / lease.paper / f"{lease.dataset}-{lease.profile}" / "leases" / f"seed{lease.seed}-{stamp}"
    finished = run_stage(lease, "prepare", logs) == 0
    if finished:
        budget = training_minutes(lease, time.monotonic() - start)
        finished = run_stage(lease, "train", logs, budget) == 0
    for stage in lease.extra if finished else ():
        left = max(lease.minutes - (time.monotonic() - start) / 60 - lease.reserve, 0.1)
        finished = run_stage(lease, stage, logs, env={"OCREPRO_MAX_MINUTES": f"{left:.2f}"}) == 0 and finished
    evaluated = finished and run_stage(lease, "evaluate", logs) == 0
    if evaluated and lease.report:  # a report that fails here can be rendered where the bundle goes
        run_stage(lease, "report", logs)
    summary = {"lease": lease.name, "paper": lease.paper, "dataset": lease.dataset, "profile": lease.profile,
               "seed": lease.seed, "minutes": lease.minutes, "overrides": list(lease.overrides),
               "commit": git_commit(), "hardware": hardware(),
               "trained": finished, "evaluated": evaluated, "step": latest_step(root / "runs" / lease.paper),
               "stages": lease.stages, "wall_seconds": round(time.monotonic() - start, 1)}
    summary["parts"] = write_bundle(root, bundle_paths(root, lease), out, lease.name, part_mib, max_parts)
    _write_atomic(out / f"{lease.name}.lease.json", json.dumps(summary, indent=1).encode())
    return summary


# -- what travels -------------------------------------------------------------------------------
def bundle_paths(root: Path, lease: Lease) -> list[Path]:
    """Files under `root` that carry the lease back: every run folder of the paper (an unfinished one with its
    latest checkpoint only, a finished one without checkpoints) and this dataset/profile's reports."""
    files = []
    runs = root / "runs" / lease.paper
    for run_dir in sorted({p.parent.parent for p in runs.glob("**/checkpoints/step_*")}) if runs.is_dir() else []:
        keep = None if (run_dir / "model").is_dir() else _latest(run_dir / "checkpoints")
        for f in run_dir.rglob("*"):
            inside = f.relative_to(run_dir).parts
            if f.is_file() and (inside[0] != "checkpoints" or (keep is not None and inside[1] == keep.name)):
                files.append(f)
    reports = root / "reports" / lease.paper / f"{lease.dataset}-{lease.profile}"
    files += [f for f in reports.rglob("*") if f.is_file()] if reports.is_dir() else []
    return sorted(set(files))


def _latest(checkpoints: Path) -> Path:
    return max(checkpoints.glob("step_*"), key=lambda p: int(p.name.split("_")[1]))


def latest_step(runs: Path) -> int | None:
    """The highest checkpointed step of any run of the paper."""
    steps = [int(p.name.split("_")[1]) for p in runs.glob("**/checkpoints/step_*")] if runs.is_dir() else []
    return max(steps, default=None)


def write_bundle(root: Path, files: list[Path], out: Path, name: str, part_mib: float, max_parts: int) -> list[dict]:
    """A gzipped tar of `files` (paths relative to root) as out/<name>.tar.gz, or .partNN files when larger
    than part_mib; refuses, naming the largest files, when more than max_parts would be needed."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for f in files:
            tar.add(f, arcname=str(f.relative_to(root)))
    data, size = buffer.getvalue(), int(part_mib * MIB)
    chunks = [data[i:i + size] for i in range(0, len(data), size)] or [b""]
    if len(chunks) > max_parts:
        largest = sorted(files, key=lambda f: f.stat().st_size, reverse=True)[:3]
        raise LeaseError(f"the bundle is {len(data) / MIB:.1f} MiB compressed: more than {max_parts} parts of "
                         f"{part_mib} MiB; largest files: " + ", ".join(
                             f"{f.relative_to(root)} ({f.stat().st_size / MIB:.1f} MiB)" for f in largest))
    out.mkdir(parents=True, exist_ok=True)
    names = [f"{name}.tar.gz"] if len(chunks) == 1 else [f"{name}.tar.gz.part{i:02d}" for i in range(len(chunks))]
    for part, chunk in zip(names, chunks):
        _write_atomic(out / part, chunk)
    return [{"file": n, "bytes": len(c), "sha256": hashlib.sha256(c).hexdigest()} for n, c in zip(names, chunks)]


def unpack(parts: list[Path], root: Path, replace: bool = False) -> list[str]:
    """Join and check the parts of one bundle (against the lease.json beside them, when there), and extract it
    under `root`. Refuses to overwrite a file that exists, unless `replace`; returns the files written."""
    parts = sorted(parts, key=lambda p: p.name)
    stem = parts[0].name.split(".tar.gz")[0]
    summary = parts[0].parent / f"{stem}.lease.json"
    if summary.is_file():
        expected = {p["file"]: p["sha256"] for p in json.loads(summary.read_text())["parts"]}
        if sorted(expected) != [p.name for p in parts]:
            raise LeaseError(f"{summary.name} lists parts {sorted(expected)}, given {[p.name for p in parts]}")
        for p in parts:
            if hashlib.sha256(p.read_bytes()).hexdigest() != expected[p.name]:
                raise LeaseError(f"{p} does not match its SHA-256 in {summary.name}: damaged in transit")
    data = b"".join(p.read_bytes() for p in parts)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = tar.getmembers()
        for m in members:
            if not m.isfile() or Path(m.name).is_absolute() or ".." in Path(m.name).parts:
                raise LeaseError(f"refusing bundle member {m.name!r}: only relative paths of files")
        clash = [m.name for m in members if (root / m.name).exists()]
        if clash and not replace:
            raise LeaseError(f"{len(clash)} files exist already under {root} (first: {clash[0]}); "
                             f"pass --replace to overwrite them")
        for m in members:
            _write_atomic(root / m.name, tar.extractfile(m).read())
    return [m.name for m in members]


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


# -- command line --------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m common.lease", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="the pipeline stages within --minutes, then the bundle in --out")
    r.add_argument("--paper", required=True, choices=("iodine", "emorl", "sri", "lom", "svq"))
    r.add_argument("--dataset", required=True)
    r.add_argument("--profile", default="short", choices=("smoke", "short", "paper"))
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--minutes", type=float, required=True, help="wall-clock budget of the whole lease")
    r.add_argument("--reserve", type=float, default=2.0, help="minutes kept for evaluation, report and bundle")
    r.add_argument("--extra", action="append", default=[], metavar="STAGE",
                   help="a paper stage between train and evaluate (iodine: sweep; emorl: baseline)")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    r.add_argument("--commit", default=None, help=f"the commit of the tree sent here, where it has no .git "
                   f"(sets ${COMMIT_ENV} for every stage's provenance)")
    r.add_argument("--no-report", action="store_true", help="leave the report for where the bundle goes")
    r.add_argument("--out", type=Path, required=True, help="where the bundle and lease.json go")
    r.add_argument("--part-mib", type=float, default=16)
    r.add_argument("--max-parts", type=int, default=8)
    u = sub.add_parser("unpack", help="put a bundle's folders back under the output root")
    u.add_argument("parts", nargs="+", type=Path)
    u.add_argument("--replace", action="store_true", help="overwrite files that exist")
    args = p.parse_args(argv)
    require("pipeline")  # one line naming what is missing, exit 2
    from common.pipeline import OUTPUT_ROOT_ENV, output_root
    try:
        if args.command == "unpack":
            written = unpack(args.parts, output_root(), args.replace)
            print(f"unpacked {len(written)} files under {output_root()} (${OUTPUT_ROOT_ENV} to choose another)")
            return 0
        if args.commit:
            os.environ[COMMIT_ENV] = args.commit
        if args.minutes <= 0 or args.reserve < 0:
            raise LeaseError(f"--minutes must be > 0 and --reserve >= 0, got {args.minutes} and {args.reserve}")
        lease = Lease(args.paper, args.dataset, args.profile, args.minutes, args.seed, args.reserve,
                      tuple(args.extra), tuple(args.overrides), not args.no_report)
        summary = run(lease, args.out, args.part_mib, args.max_parts)
    except LeaseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({k: summary[k] for k in ("lease", "trained", "evaluated", "step", "hardware", "wall_seconds")}))
    return 0 if summary["evaluated"] or summary["stages"][-1]["status"] == "budget spent" else 1


if __name__ == "__main__":
    sys.exit(main())
