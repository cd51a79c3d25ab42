"""Automated judges for generation accuracy (SVQ §5.1.1) and S-Acc (SRI §5.3, LOM §4), with their own
accuracy measured: rules.py (the two rules, the Wilson interval), data.py (rule-labelled generator scenes
and near misses / failure modes), model.py (SpriteJudge, StackJudge), train.py (the seeded training and
measuring command), score.py (the one entry point: images in, accuracy with its interval out)."""
from common.metrics.judges.rules import odd_one_out_valid, stack_plausible, unique_values, wilson_interval

__all__ = ["odd_one_out_valid", "stack_plausible", "unique_values", "wilson_interval"]
