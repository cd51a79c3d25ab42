"""python -m papers.lom.pipeline {prepare,train,evaluate,report,gather} --dataset D --profile P [--seed S]

The ShapeStacks evaluation's S-Acc judge is `common.profile_judge`'s (the root dvc.yaml's profile_judge stage).
The baselines of Table 2 come from their own code: GENESIS-v2 (`common/models/configs/genesis_v2`, trained by
SRI's pipeline as its baseline) and EfficientMORL (`papers/emorl`). `gather --dataset ablation` draws Fig. 6 (App.
A.5's Models 0-8) and `gather --dataset temperature` Fig. 7 (FID against tau on Objects Room) from every evaluated
seed of their configs (papers/lom/gather.py), into reports/lom/<ablation|temperature>-P.
"""
from common.requirements import require

require("pipeline")  # before the imports that need it

import sys
from pathlib import Path

from common import pipeline
from common.pipeline import Stage
from papers.lom import gather
from papers.lom.evaluate import evaluate


def gather_figure(stage: Stage) -> Path:
    """Figs. 6-7 across configs: the stage's dataset names the figure (`gather.FIGURES`), not a config."""
    return gather.write(stage.report_dir.parent, stage.dataset, stage.profile)


def main(argv: list[str] | None = None) -> int:
    return pipeline.main("lom", evaluate, argv, extra={"gather": gather_figure})


if __name__ == "__main__":
    sys.exit(main())
