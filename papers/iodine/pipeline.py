"""python -m papers.iodine.pipeline {prepare,train,sweep,evaluate,report} --dataset D --profile P

`sweep` trains the models with T = 1, 2, 4, 6 of Fig. 8 on the prepared data."""
import sys

from common.pipeline import main
from papers.iodine.evaluate import evaluate, sweep

if __name__ == "__main__":
    sys.exit(main("iodine", evaluate, extra={"sweep": sweep}))
