"""python -m papers.emorl.pipeline {prepare,train,baseline,evaluate,report} --dataset D --profile P

`baseline` trains the Slot Attention autoencoder (configs/<D>_slot_attention.yaml) on the same data,
for the disentanglement comparison of Table 3 / Fig. 9c-d.
"""
import sys

from common.pipeline import Stage, main, train
from papers.emorl.evaluate import baseline_stage, evaluate


def train_baseline(stage: Stage):
    return train(baseline_stage(stage), data=stage)


if __name__ == "__main__":
    sys.exit(main("emorl", evaluate, extra={"baseline": train_baseline}))
