"""python -m common.profile_judge --profile P [--task T]: the judge that the evaluations use at profile P,
runs/judges/<task>-<profile> (the root dvc.yaml's `profile_judge` stage): S-Acc (`s_acc`, SRI and LOM) or
generation accuracy (`generation_accuracy`, SVQ). On the smoke profile a tiny one in a minute (its accuracy in
its card says how little it means); otherwise one with the settings of the judge of record (params.yaml
`judges`; its accuracy is in reports/judges)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from common.pipeline import ROOT, output_root

SMOKE = {"n_train": 300, "n_test": 100, "steps": 60, "n_anchor": 40}


TASKS = ("s_acc", "generation_accuracy")


def profile_judge(profile: str, task: str = "s_acc") -> Path:
    return output_root() / "runs" / "judges" / f"{task}-{profile}"


def train_profile_judge(profile: str, task: str = "s_acc") -> Path:
    from common.metrics.judges.train import train
    if profile == "smoke":
        sizes = SMOKE
    else:
        settings = yaml.safe_load((ROOT / "params.yaml").read_text())["judges"]["tasks"][task]
        sizes = {"n_train": settings["n_train"], "steps": settings["steps"]}
    out = profile_judge(profile, task)
    train(task, out, seed=0, **sizes)
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
