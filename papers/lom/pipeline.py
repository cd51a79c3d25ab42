"""python -m papers.lom.pipeline {prepare,train,evaluate,report} --dataset D --profile P [--seed S]

The ShapeStacks evaluation's S-Acc judge is `common.profile_judge`'s (the root dvc.yaml's profile_judge stage).
The baselines of Table 2 come from their own code: GENESIS-v2 (`common/models/configs/genesis_v2`, trained by
SRI's pipeline as its baseline) and EfficientMORL (`papers/emorl`).
"""
from common.requirements import require

require("pipeline")  # before the imports that need it

import sys

from common.pipeline import main
from papers.lom.evaluate import evaluate

if __name__ == "__main__":
    sys.exit(main("lom", evaluate))
