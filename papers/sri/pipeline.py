"""python -m papers.sri.pipeline {prepare,judge,train,baseline,evaluate,report} --dataset D --profile P

`judge` trains the S-Acc judge the ShapeStacks evaluation uses (runs/sri/judge-<profile>): on the smoke
profile a tiny one in a minute (its accuracy in its card says how little it means), otherwise the judge of
record's settings (params.yaml `judges`). `baseline` trains GENESIS-v2 with its autoregressive prior and the
same likelihood on the same data (Table 2's GENv2 rows; evaluate.baseline_stage).
"""
from common.requirements import require

require("pipeline")  # before the imports that need it

import sys

import yaml

from common.config import ConfigError
from common.pipeline import ROOT, Stage, main, train
from papers.sri.evaluate import baseline_stage, evaluate, judge_dir

SMOKE_JUDGE = {"n_train": 300, "n_test": 100, "steps": 60, "n_anchor": 40}


def train_baseline(stage: Stage):
    base = baseline_stage(stage)
    if base is None:
        raise ConfigError(f"{stage.dataset} has no GENESIS-v2 baseline: SRI-EMORL compares with papers/emorl's runs, "
                          f"and Table 4's GENv2 + scene variable is itself a baseline")
    return train(base, data=stage)


def train_judge(stage: Stage):
    from common.metrics.judges.train import train as train_s_acc
    if stage.profile == "smoke":
        sizes = SMOKE_JUDGE
    else:
        judges = yaml.safe_load((ROOT / "params.yaml").read_text())["judges"]
        sizes = {"n_train": judges["n_train"], "steps": judges["tasks"]["s_acc"]["steps"]}
    out = judge_dir(stage.profile)
    train_s_acc("s_acc", out, seed=0, **sizes)
    return out


if __name__ == "__main__":
    sys.exit(main("sri", evaluate, extra={"baseline": train_baseline, "judge": train_judge}))
