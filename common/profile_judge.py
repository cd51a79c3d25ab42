"""python -m common.profile_judge --profile P: the S-Acc judge that SRI's and LOM's evaluations use at profile P,
runs/judges/s_acc-<profile> (the root dvc.yaml's `profile_judge` stage). On the smoke profile a tiny one in a
minute (its accuracy in its card says how little it means); otherwise one with the settings of the judge of
record (params.yaml `judges`; its accuracy is in reports/judges)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from common.pipeline import ROOT, output_root

SMOKE = {"n_train": 300, "n_test": 100, "steps": 60, "n_anchor": 40}


def profile_judge(profile: str) -> Path:
    return output_root() / "runs" / "judges" / f"s_acc-{profile}"


def train_profile_judge(profile: str) -> Path:
    from common.metrics.judges.train import train
    if profile == "smoke":
        sizes = SMOKE
    else:
        judges = yaml.safe_load((ROOT / "params.yaml").read_text())["judges"]
        sizes = {"n_train": judges["n_train"], "steps": judges["tasks"]["s_acc"]["steps"]}
    out = profile_judge(profile)
    train("s_acc", out, seed=0, **sizes)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m common.profile_judge", description=__doc__)
    p.add_argument("--profile", required=True, choices=["smoke", "short", "paper"])
    print(f"judge: {train_profile_judge(p.parse_args(argv).profile)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
