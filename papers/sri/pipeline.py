"""python -m papers.sri.pipeline {prepare,train,baseline,evaluate,report} --dataset D --profile P

The ShapeStacks evaluation's S-Acc judge is `common.profile_judge`'s (the root dvc.yaml's profile_judge
stage). `baseline` trains GENESIS-v2 with its autoregressive prior and the same likelihood on the same data
(Table 2's GENv2 rows; evaluate.baseline_stage); Table 2's EMORL rows are configs (`*_emorl_baseline`).
"""
from common.requirements import require

require("pipeline")  # before the imports that need it

import sys

from common.config import ConfigError
from common.pipeline import Stage, main, train
from papers.sri.evaluate import NO_BASELINE, baseline_stage, evaluate


def train_baseline(stage: Stage):
    base = baseline_stage(stage)
    if base is None:
        raise ConfigError(f"{stage.dataset} has no GENESIS-v2 baseline: {NO_BASELINE}")
    return train(base, data=stage)


if __name__ == "__main__":
    sys.exit(main("sri", evaluate, extra={"baseline": train_baseline}))
