"""Where a number came from: commit, hardware, software versions, time."""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TRAINING_RECORD = "training.json"  # training segments: in each checkpoint, the final model and the run folder
STAMP = "commit-stamp.json"  # a tree copied without .git: its commit and files (python -m common.lease stamp)
COMMIT_ENV = "OCREPRO_COMMIT"  # the commit of a tree copied without .git and without a stamp, as stated


def is_code(path: str) -> bool:
    """Whether a tracked file could change a result: everything but what the pipelines themselves write, results
    under reports/ (DVC deletes a stage's tracked outputs before it runs) and DVC's dvc.lock files."""
    return not (path.startswith("reports/") or path == "dvc.lock" or path.endswith("/dvc.lock"))


def code_changes(porcelain: str) -> list[str]:
    """The tracked files of `git status --porcelain` output that could change a result (`is_code`)."""
    paths = [line[3:].split(" -> ")[-1] for line in porcelain.splitlines() if line.strip()]
    return [p for p in paths if is_code(p)]


def git_commit() -> str:
    """HEAD, with "-dirty" when a tracked file other than the pipelines' own outputs differs from it; where the
    tree has no git repository, the commit its stamp names (`stamped`), else $OCREPRO_COMMIT as stated by whoever
    copied it there, else "unknown"."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                capture_output=True, text=True, timeout=10).stdout
        if out.returncode == 0:
            return out.stdout.strip() + ("-dirty" if code_changes(status) else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return stamped(ROOT) or os.environ.get(COMMIT_ENV) or "unknown"


def write_stamp(out: Path | None = None) -> Path:
    """Before copying the tree to a machine without git (a GPU lease): HEAD as `git_commit` gives it and the
    SHA-256 of every tracked file that could change a result, in ROOT/commit-stamp.json (or `out`)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    files = {f: _sha256(ROOT / f) for f in sorted(listed.split("\0")) if f and is_code(f) and (ROOT / f).is_file()}
    out = out or ROOT / STAMP
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps({"commit": git_commit(), "files": files}, indent=0))
    tmp.replace(out)
    return out


def stamped(root: Path) -> str | None:
    """The commit in root/commit-stamp.json, with "-dirty" when a file it lists is missing or has other bytes;
    None without a stamp."""
    path = root / STAMP
    if not path.is_file():
        return None
    stamp = json.loads(path.read_text())
    changed = [f for f, digest in stamp["files"].items() if _sha256(root / f) != digest]
    commit = stamp["commit"]
    return commit + "-dirty" if changed and not commit.endswith("-dirty") else commit


def _sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def hardware() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}"
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def float32_mode() -> str:
    """What float32 ran in on CUDA, which PyTorch sets apart from the dtype: convolutions in TF32 unless
    `torch.backends.cudnn.allow_tf32` is off (on by default), matrix products at
    `torch.get_float32_matmul_precision()` ("highest": full float32, the default)."""
    conv = "tf32" if torch.backends.cudnn.allow_tf32 else "fp32"
    return f"conv {conv}, matmul {torch.get_float32_matmul_precision()}"


def provenance(run: Path | None = None, weights: Path | None = None) -> dict:
    """Where a number is computed now; with a training `run` folder also `training`, the segments that trained
    the weights evaluated (`weights`: run/model, or a checkpoint folder; `common.train.loop.TrainState`), and
    `data_source`, where the run's training scenes came from (run/data.json); each absent where the run
    predates it."""
    record = {
        "commit": git_commit(),
        "hardware": hardware(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if torch.cuda.is_available():  # a GPU result says whether its float32 convolutions were TF32
        record["float32"] = float32_mode()
    if run is None:
        return record
    segments = training_record(weights or run / "model")
    if segments is not None:
        record["training"] = segments
    data = run / "data.json"
    source = json.loads(data.read_text()).get("source") if data.is_file() else None
    if source is not None:
        record["data_source"] = source
    return record


def training_record(weights: Path) -> list[dict] | None:
    """The training segments saved beside a model's weights (its training.json), None where there are none."""
    path = weights / TRAINING_RECORD
    return json.loads(path.read_text())["segments"] if path.is_file() else None
