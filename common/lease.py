"""One paper/dataset/profile/seed through its pipeline inside a wall-clock budget, on a machine lent for
minutes (a leased GPU, a pre-emptible job), and the bundle that carries its result or its unfinished run back.

    python -m common.lease stamp          # here: commit-stamp.json, sent with the tree
    python -m common.lease run --paper emorl --dataset tetrominoes --profile short --minutes 9 --out DIR
    python -m common.lease unpack DIR/emorl-tetrominoes-short-seed0.tar.gz*

`run` calls `python -m papers.<paper>.pipeline` stage by stage (prepare, train, the `--extra` stages, evaluate,
report), each in its own process with its output in a log and a hard stop at the budget's end. Training gets
what is left after `--reserve` minutes for the stages after it; a run that has its model already (the main run,
or one an extra stage trains, such as IODINE's sweep models) is not trained again. A stage that fails, or stops
at its budget (exit 3), ends the lease. The bundle is written right after training and again at the end: a
gzipped tar of the run folders this lease wrote and its main run (an unfinished run keeps only its latest
checkpoint, a finished one only its model) and of the report files it wrote, split into parts of at most
`--part-mib` MiB, with `<name>.lease.json` (stages, status, exit codes and seconds, the main run's step,
hardware, commit, the parts and their SHA-256) beside them. `unpack` checks the parts and puts the folders back
under the output root; running the same `run` again where the run folder is resumes the unfinished run (the
train stage's own rule). Files are renamed into place when complete. A tree sent without .git names its commit
from the stamp beside it (`common.provenance.stamped`: "-dirty" where a file differs from the stamp), in
lease.json and in every stage's provenance.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from common.provenance import STAMP, git_commit, hardware, write_stamp
from common.requirements import require
from common.train.loop import EXIT_BUDGET, checkpoint_folders

EXIT_TIMEOUT = 124  # a stage stopped at the lease's end (as timeout(1) reports it)
BUNDLE_SECONDS = 30  # kept at the end for the last bundle
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

    @property
    def stage(self):
        """The pipeline's view of this paper/dataset/profile/seed: its run and report folders."""
        from common.pipeline import Stage  # after require("pipeline"): it needs datasets
        return Stage(self.paper, self.dataset, self.profile, self.overrides, self.seed)

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


def spawn(cmd: list[str], log: Path, env: dict, timeout: float) -> int:
    """Run `cmd` with its output in `log`; its exit status, EXIT_TIMEOUT when it was killed after `timeout` s."""
    with open(log, "w") as f:
        try:
            return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            return EXIT_TIMEOUT


def run_stage(lease: Lease, stage: str, logs: Path, timeout: float, max_minutes: float | None = None,
              env: dict | None = None) -> int:
    """One pipeline stage in its own process, its output in logs/<stage>.log; prints its last lines."""
    from common.pipeline import KEEP_FINISHED_ENV
    logs.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    quiet = {"TQDM_MININTERVAL": "5"}  # a progress line every 5 s, not 10 a second: the logs travel and are kept
    keep = {KEEP_FINISHED_ENV: "1"}  # what an earlier lease finished (IODINE's sweep models) is not trained again
    code = spawn(lease.command(stage, max_minutes), logs / f"{stage}.log",
                 {**quiet, **os.environ, **keep, **(env or {})}, max(timeout, 1.0))
    status = {0: "done", EXIT_BUDGET: "budget spent", EXIT_TIMEOUT: "stopped at the lease's end"}.get(code, "failed")
    note(lease, stage, status, time.monotonic() - start, code)
    tail = _last_lines((logs / f"{stage}.log").read_text(errors="replace"), 8)
    print(*("   " + t for t in tail), sep="\n")
    return code


def note(lease: Lease, stage: str, status: str, seconds: float = 0.0, code: int | None = None) -> None:
    lease.stages.append({"stage": stage, "status": status, "exit": code, "seconds": round(seconds, 1)})
    print(f"== {stage}: {status}" + ("" if code is None else f" (exit {code}, {seconds:.1f} s)"))


def _last_lines(text: str, n: int) -> list[str]:
    """The last n lines, progress-bar updates (tqdm's "it/s" or "s/it" redraws) reduced to the last one."""
    lines = text.splitlines()
    bars = [i for i, line in enumerate(lines) if "it/s" in line or "s/it" in line]
    return [line for i, line in enumerate(lines) if i not in bars[:-1]][-n:]


def run(lease: Lease, out: Path, part_mib: float = 16, max_parts: int = 7, max_total_mib: float = 60) -> dict:
    """The lease: stages within the budget, a bundle after training and one at the end in `out`. Returns the
    summary written beside the bundle as <name>.lease.json."""
    from common.pipeline import BUDGET_ENV, finished, output_root  # after require("pipeline"): it needs datasets
    start, since, root = time.monotonic(), time.time(), output_root()
    end = start + 60 * lease.minutes - BUNDLE_SECONDS  # every stage is stopped by then
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())  # each lease's logs in their own folder
    logs = lease.stage.report_dir / "leases" / f"seed{lease.seed}-{stamp}"
    pack = functools.partial(bundle, lease, root, since, start, out, part_mib, max_parts, max_total_mib)
    ok = run_stage(lease, "prepare", logs, end - time.monotonic()) == 0
    if ok and finished(lease.stage):  # its budget would be wasted: training would keep the run
        note(lease, "train", "already trained")
    elif ok:
        try:
            budget = training_minutes(lease, time.monotonic() - start)
        except LeaseError as err:
            note(lease, "train", f"skipped: {err}")
            return pack()
        ok = run_stage(lease, "train", logs, end - time.monotonic(), budget) == 0
        if not ok:  # nothing runs after this: the bundle at the end is the only one
            return pack()
        pack()  # what training made comes back even if a later stage overruns the machine's limit
    for stage in lease.extra:
        left = max((end - time.monotonic()) / 60 - lease.reserve, 0.1)
        budget = {BUDGET_ENV: f"{left:.2f}"}  # the stage's own trainings stop and save by then
        ok = ok and run_stage(lease, stage, logs, end - time.monotonic(), env=budget) == 0
    if ok and run_stage(lease, "evaluate", logs, end - time.monotonic()) == 0 and lease.report:
        run_stage(lease, "report", logs, end - time.monotonic())  # one that fails here renders where the bundle goes
    return pack()


def bundle(lease: Lease, root: Path, since: float, start: float, out: Path, part_mib: float, max_parts: int,
           max_total_mib: float) -> dict:
    """Write the bundle and <name>.lease.json (also when the bundle is refused: then with its reason)."""
    run_dir = lease.stage.run_dir
    summary = {"lease": lease.name, "paper": lease.paper, "dataset": lease.dataset, "profile": lease.profile,
               "seed": lease.seed, "minutes": lease.minutes, "overrides": list(lease.overrides),
               "commit": git_commit(), "hardware": hardware(), "trained": (run_dir / "model").is_dir(),
               "evaluated": any(s["stage"] == "evaluate" and s["status"] == "done" for s in lease.stages),
               "step": latest_step(run_dir), "stages": lease.stages,
               "wall_seconds": round(time.monotonic() - start, 1), "parts": []}
    try:
        files = bundle_paths(root, lease, since)
        summary["parts"] = write_bundle(root, files, out, lease.name, part_mib, max_parts, max_total_mib)
    except LeaseError as err:
        summary["bundle_error"] = str(err)
    _write_atomic(out / f"{lease.name}.lease.json", json.dumps(summary, indent=1).encode())
    return summary


def exit_status(summary: dict) -> int:
    """0: evaluated; 3: stopped at its budget, to be resumed; 2: no bundle; 1: a stage failed."""
    if summary.get("bundle_error"):
        return 2
    if summary["evaluated"]:
        return 0
    return EXIT_BUDGET if summary["stages"][-1]["status"] == "budget spent" else 1


# -- what travels -------------------------------------------------------------------------------
def bundle_paths(root: Path, lease: Lease, since: float | None = None) -> list[Path]:
    """Files under `root` that carry the lease back: the main run and every run folder of the paper that changed
    since `since` (time.time(); None: all of them), an unfinished one with its latest checkpoint only, a finished
    one without checkpoints, and the files of this dataset/profile's reports that changed since `since`."""
    def fresh(f: Path) -> bool:
        return since is None or f.stat().st_mtime >= since

    runs = root / "runs" / lease.paper
    folders = {p.parent.parent for p in runs.glob("**/checkpoints/step_*")} if runs.is_dir() else set()
    folders = {d for d in folders if d == lease.stage.run_dir or any(fresh(f) for f in d.rglob("*") if f.is_file())}
    files = []
    for run_dir in sorted(folders):
        saved = checkpoint_folders(run_dir / "checkpoints")  # {step: folder}
        keep = None if (run_dir / "model").is_dir() else saved[max(saved)]  # the latest, if unfinished
        for f in run_dir.rglob("*"):
            checkpoint = f.relative_to(run_dir).parts[0] == "checkpoints"
            if f.is_file() and (not checkpoint or (keep is not None and f.is_relative_to(keep))):
                files.append(f)
    reports = lease.stage.report_dir
    files += [f for f in reports.rglob("*") if f.is_file() and fresh(f)] if reports.is_dir() else []
    return sorted(set(files))


def latest_step(run_dir: Path) -> int | None:
    """The run's highest checkpointed step (common.train.loop.checkpoint_folders)."""
    return max(checkpoint_folders(run_dir / "checkpoints"), default=None)


def write_bundle(root: Path, files: list[Path], out: Path, name: str, part_mib: float, max_parts: int,
                 max_total_mib: float = float("inf")) -> list[dict]:
    """A gzipped tar of `files` (paths relative to root) as out/<name>.tar.gz, or .partNN files when larger than
    part_mib; refuses, naming the largest files, beyond max_parts parts or max_total_mib in all. Replaces the
    parts of an earlier bundle of the same name."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for f in files:
            tar.add(f, arcname=str(f.relative_to(root)))
    data, size = buffer.getvalue(), int(part_mib * MIB)
    chunks = [data[i:i + size] for i in range(0, len(data), size)] or [b""]
    if len(chunks) > max_parts or len(data) > max_total_mib * MIB:
        largest = sorted(files, key=lambda f: f.stat().st_size, reverse=True)[:3]
        raise LeaseError(f"the bundle is {len(data) / MIB:.1f} MiB compressed: more than {max_parts} parts of "
                         f"{part_mib} MiB or {max_total_mib} MiB in all; largest files: " + ", ".join(
                             f"{f.relative_to(root)} ({f.stat().st_size / MIB:.1f} MiB)" for f in largest))
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob(f"{name}.tar.gz*"):
        old.unlink()
    names = [f"{name}.tar.gz"] if len(chunks) == 1 else [f"{name}.tar.gz.part{i:02d}" for i in range(len(chunks))]
    for part, chunk in zip(names, chunks):
        _write_atomic(out / part, chunk)
    return [{"file": n, "bytes": len(c), "sha256": hashlib.sha256(c).hexdigest()} for n, c in zip(names, chunks)]


def unpack(parts: list[Path], root: Path, replace: bool = False) -> list[str]:
    """Join and check the parts of one bundle (against the lease.json beside them, when there), and extract it
    under `root`. A file that exists with other bytes is refused unless `replace`, which replaces each run
    folder of the bundle whole (no checkpoint of an older stretch stays beside a newer config). Returns the
    files written."""
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
    else:
        print(f"warning: no {summary.name} beside the parts: their SHA-256 is not checked", file=sys.stderr)
    with tarfile.open(fileobj=io.BytesIO(b"".join(p.read_bytes() for p in parts)), mode="r:gz") as tar:
        files = {}
        for m in tar.getmembers():
            if not m.isfile() or Path(m.name).is_absolute() or ".." in Path(m.name).parts:
                raise LeaseError(f"refusing bundle member {m.name!r}: only relative paths of files")
            files[m.name] = tar.extractfile(m).read()
    clash = [n for n, data in files.items() if (root / n).is_file() and (root / n).read_bytes() != data]
    if clash and not replace:
        raise LeaseError(f"{len(clash)} files exist already under {root} with other bytes (first: {clash[0]}); "
                         f"pass --replace to replace them and the run folders they belong to")
    if replace:
        for run_dir in {Path(*Path(n).parts[:4]) for n in files if n.startswith("runs/")}:
            shutil.rmtree(root / run_dir, ignore_errors=True)  # runs/<paper>/<dataset>-<profile>/seed<k>
    for name, data in files.items():
        _write_atomic(root / name, data)
    return sorted(files)


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
    r.add_argument("--no-report", action="store_true", help="leave the report for where the bundle goes")
    r.add_argument("--out", type=Path, required=True, help="where the bundle and lease.json go")
    r.add_argument("--part-mib", type=float, default=16)
    r.add_argument("--max-parts", type=int, default=7, help="parts at most (with lease.json: 8 files)")
    r.add_argument("--max-total-mib", type=float, default=60, help="the bundle's size at most")
    sub.add_parser("stamp", help=f"here, before sending the tree: its commit and files' SHA-256 in {STAMP}, which "
                   f"names the commit there (carry it)")
    u = sub.add_parser("unpack", help="put a bundle's folders back under the output root")
    u.add_argument("parts", nargs="+", type=Path)
    u.add_argument("--replace", action="store_true", help="replace existing files and their run folders")
    args = p.parse_args(argv)
    if args.command == "stamp":
        path = write_stamp()
        print(f"{path.name}: {json.loads(path.read_text())['commit']} (a result made from a copy with other files "
              f"says -dirty)")
        return 0
    require("pipeline")  # one line naming what is missing, exit 2
    from common.pipeline import OUTPUT_ROOT_ENV, output_root
    try:
        if args.command == "unpack":
            written = unpack(args.parts, output_root(), args.replace)
            print(f"unpacked {len(written)} files under {output_root()} (${OUTPUT_ROOT_ENV} to choose another)")
            return 0
        if args.minutes <= 0 or args.reserve < 0:
            raise LeaseError(f"--minutes must be > 0 and --reserve >= 0, got {args.minutes} and {args.reserve}")
        lease = Lease(args.paper, args.dataset, args.profile, args.minutes, args.seed, args.reserve,
                      tuple(args.extra), tuple(args.overrides), not args.no_report)
        summary = run(lease, args.out, args.part_mib, args.max_parts, args.max_total_mib)
    except LeaseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    keys = ("lease", "trained", "evaluated", "step", "hardware", "wall_seconds", "bundle_error")
    print(json.dumps({k: summary[k] for k in keys if k in summary}))
    return exit_status(summary)


if __name__ == "__main__":
    sys.exit(main())
