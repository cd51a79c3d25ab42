"""Evaluation metrics: ARI-FG, MSE, DCI, activeness, FID."""
from common.metrics.activeness import activeness
from common.metrics.ari import adjusted_rand_index, ari_fg
from common.metrics.dci import completeness, dci, disentanglement, match_slots
from common.metrics.fid import (
    FIDUnavailable,
    compute_fid,
    fid_or_unavailable,
    frechet_distance,
)
from common.metrics.image import mse
from common.metrics.probe import linear_probe

__all__ = [
    "activeness", "adjusted_rand_index", "ari_fg", "completeness", "dci", "disentanglement",
    "match_slots", "FIDUnavailable", "compute_fid", "fid_or_unavailable", "frechet_distance", "linear_probe", "mse",
]
