"""python -m papers.iodine.pipeline {prepare,train,sweep,evaluate,report} --dataset D --profile P [--seed K]

`prepare` also makes Fig. 9's 7-9-object scenes (papers.iodine.data.prepare); `sweep` trains the
models with T = 1, 2, 4, 6 of Fig. 8 on the prepared data, for the given seed."""
from common.requirements import require

require("pipeline")  # before the imports that need it

import sys

from common import pipeline
from papers.iodine.data import prepare
from papers.iodine.evaluate import evaluate, sweep


def main(argv: list[str] | None = None) -> int:
    return pipeline.main("iodine", evaluate, argv, extra={"prepare": prepare, "sweep": sweep})


if __name__ == "__main__":
    sys.exit(main())
