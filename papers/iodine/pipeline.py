"""python -m papers.iodine.pipeline {prepare,train,evaluate,report} --dataset D --profile P"""
import sys

from common.pipeline import main
from papers.iodine.evaluate import evaluate

if __name__ == "__main__":
    sys.exit(main("iodine", evaluate))
