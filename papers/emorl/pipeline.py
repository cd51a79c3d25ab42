"""python -m papers.emorl.pipeline {prepare,train,baseline,evaluate,report} --dataset D --profile P

`baseline` trains the Slot Attention autoencoder (configs/<D>_slot_attention.yaml) on the same data,
for the disentanglement comparison of Table 3 / Fig. 9c-d. A dataset whose config sets `eval.run_of`
(CLEVR10, Fig. 7c) is evaluated with that dataset's run and has no training of its own.
"""
from common.requirements import require

require("pipeline")  # before the imports that need it

import sys

from common.config import ConfigError, from_dict
from common.pipeline import Stage, main, train
from papers.emorl.evaluate import EMORLEval, baseline_stage, evaluate


def train_model(stage: Stage, resume: bool = False, max_minutes: float | None = None):
    run_of = from_dict(EMORLEval, stage.experiment().eval, "eval").run_of
    if run_of is not None:
        raise ConfigError(f"{stage.dataset} is evaluated with the {run_of} run (eval.run_of) and trains nothing: "
                          f"python -m papers.emorl.pipeline train --dataset {run_of} --profile {stage.profile} "
                          f"--seed {stage.seed}")
    return train(stage, resume, max_minutes=max_minutes)


def train_baseline(stage: Stage):
    return train(baseline_stage(stage), data=stage)


if __name__ == "__main__":
    sys.exit(main("emorl", evaluate, extra={"baseline": train_baseline}, train_stage=train_model))
