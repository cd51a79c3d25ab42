"""python -m papers.emorl.pipeline {prepare,train,evaluate,report} --dataset D --profile P"""
import sys

from common.pipeline import main
from papers.emorl.evaluate import evaluate

if __name__ == "__main__":
    sys.exit(main("emorl", evaluate))
