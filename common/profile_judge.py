"""python -m common.profile_judge --profile P [--task T]: the judge that the evaluations use at profile P,
runs/judges/<task>-<profile> (the root dvc.yaml's `profile_judge` stage): S-Acc (`s_acc`, SRI and LOM) or
generation accuracy (`generation_accuracy`, SVQ). On the smoke profile a tiny one in a minute (its accuracy in
its card says how little it means); otherwise one with the settings of the judge of record (params.yaml
`judges`; its accuracy is in reports/judges). Where the judge of record (runs/judges/<task>, `dvc repro
judge@<task>`) was trained with those settings, it is copied instead of trained again: the same seeded command,
an hour of CPU saved, and a GPU lease (10-minute commands) can use a judge trained here and carried there."""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from common.pipeline import ROOT, output_root

SMOKE = {"n_train": 300, "n_test": 100, "steps": 60, "n_anchor": 40}
SOURCES = ("common/metrics/judges", "common/data")  # what a judge is made from (the judge stage's deps)


TASKS = ("s_acc", "generation_accuracy")


def profile_judge(profile: str, task: str = "s_acc") -> Path:
    return output_root() / "runs" / "judges" / f"{task}-{profile}"


def s_acc_judge(data_name: str, profile: str) -> Path | None:
    """The S-Acc judge that an evaluation of `data_name` scores its samples with at this profile, or None:
    S-Acc is a ShapeStacks measure (SRI §5.3, LOM §4). SRI's and LOM's dvc.yaml make the judge a dependency of
    exactly these evaluations."""
    return profile_judge(profile) if data_name == "shapestacks" else None


def sources_unchanged_since(commit: str) -> bool | None:
    """Whether the judge's sources (SOURCES) in the working tree are as they were at `commit`; None where git
    cannot tell (no repository, as on a device's copy of the tree, or an unknown commit)."""
    try:
        run = subprocess.run(["git", "diff", "--quiet", commit, "--", *SOURCES], cwd=ROOT, capture_output=True,
                             timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return {0: True, 1: False}.get(run.returncode)


def of_record(task: str, seed: int, sizes: dict) -> Path | None:
    """The judge of record (runs/judges/<task>) when its card says it was trained with this seed and these sizes,
    at a clean commit whose judge sources are today's (taken on trust, and said so, where git cannot tell)."""
    path = output_root() / "runs" / "judges" / task
    try:
        card = json.loads((path / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    same = card.get("task") == task and card.get("seed") == seed and all(card.get(k) == v for k, v in sizes.items())
    commit = card.get("provenance", {}).get("commit", "unknown")
    if not same or not (path / "model.safetensors").is_file() or commit == "unknown" or commit.endswith("-dirty"):
        return None
    unchanged = sources_unchanged_since(commit)
    if unchanged is None:
        print(f"cannot check that {path} (commit {commit}) was made from today's {' and '.join(SOURCES)}: using it")
    return None if unchanged is False else path


def train_profile_judge(profile: str, task: str = "s_acc") -> Path:
    from common.metrics.judges.train import train
    out, seed = profile_judge(profile, task), 0
    if profile == "smoke":
        sizes = SMOKE
    else:
        settings = yaml.safe_load((ROOT / "params.yaml").read_text())["judges"]["tasks"][task]
        sizes = {"n_train": settings["n_train"], "steps": settings["steps"]}
        record = of_record(task, seed, sizes)
        if record is not None:
            tmp = out.with_name(out.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(record, tmp)
            shutil.rmtree(out, ignore_errors=True)
            tmp.rename(out)
            print(f"judge of record {record} copied (same seed and settings)")
            return out
    train(task, out, seed=seed, **sizes)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m common.profile_judge", description=__doc__)
    p.add_argument("--profile", required=True, choices=["smoke", "short", "paper"])
    p.add_argument("--task", default="s_acc", choices=TASKS)
    args = p.parse_args(argv)
    print(f"judge: {train_profile_judge(args.profile, args.task)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
