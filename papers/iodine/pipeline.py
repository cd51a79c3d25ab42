"""python -m papers.iodine.pipeline {prepare,train,sweep,evaluate,report} --dataset D --profile P

`prepare` also makes Fig. 9's 7-9-object scenes (papers.iodine.data.prepare); `sweep` trains the
models with T = 1, 2, 4, 6 of Fig. 8 on the prepared data."""
import sys

from common import pipeline
from papers.iodine.data import prepare
from papers.iodine.evaluate import evaluate, sweep

PREPARE = "iodine-prepare"  # common.pipeline.main runs its own `prepare` before `extra`: IODINE's goes by this name


def main(argv: list[str] | None = None) -> int:
    argv = [PREPARE if a == "prepare" else a for a in (sys.argv[1:] if argv is None else argv)]
    return pipeline.main("iodine", evaluate, argv, extra={PREPARE: prepare, "sweep": sweep})


if __name__ == "__main__":
    sys.exit(main())
