"""Automated judges for generation accuracy (SVQ §5.1.1) and S-Acc (SRI §5.3, LOM §4), work in progress:
the rules, the Wilson interval, labelled generator scenes and a counting judge for sprites. See rules.py."""
from common.metrics.judges.rules import odd_one_out_valid, stack_plausible, unique_values, wilson_interval

__all__ = ["odd_one_out_valid", "stack_plausible", "unique_values", "wilson_interval"]
