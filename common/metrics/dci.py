"""DCI (Eastwood & Williams 2018) with disentanglement_lib's formulas, for slot representations.

EMORL App. E.2: per test image, slots are matched to ground-truth objects by mask IoU (Hungarian),
matched (code, factors) pairs are pooled, split 50/50, and one gradient-boosted-tree model is fit per
factor: a classifier for discrete factors, a regressor for continuous ones (`estimator="paper"`).
Each factor's informativeness is its test accuracy (discrete) or test R^2 (continuous); the two kinds
are reported apart, never averaged together. disentanglement_lib defines informativeness as a
prediction accuracy, so the number set beside a paper's I is the mean accuracy over discrete factors.

`estimator="official"` reproduces EfficientMORL's released DCI (a copy of disentanglement_lib's with a
loop-variable bug): the first factor's estimator type is fitted for every factor, and every factor is
scored by exact-equality accuracy of the predictions.
"""
from __future__ import annotations

import numpy as np
import scipy.stats
import torch
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
from torch import Tensor

from common.matching import hungarian_matching

KINDS = ("categorical", "continuous")


def _entropy_rows(p: np.ndarray, base: int) -> np.ndarray:
    return scipy.stats.entropy(p.T + 1e-11, base=base)


def disentanglement(importance: np.ndarray) -> float:
    """importance [D codes, F factors]: sum_i rho_i (1 - H_F(P_i.)), rho_i = code i's share of importance."""
    per_code = 1.0 - _entropy_rows(importance, base=importance.shape[1])
    total = importance.sum()
    rho = np.ones(len(importance)) / len(importance) if total == 0 else importance.sum(1) / total
    return float((per_code * rho).sum())


def completeness(importance: np.ndarray) -> float:
    """sum_j w_j (1 - H_D(P_.j)), w_j = factor j's share of importance."""
    per_factor = 1.0 - _entropy_rows(importance.T, base=importance.shape[0])
    imp = np.ones_like(importance) if importance.sum() == 0 else importance
    return float((per_factor * imp.sum(0) / imp.sum()).sum())


ESTIMATORS = ("paper", "official")


def _estimator(kind: str, seed: int):
    cls = GradientBoostingClassifier if kind == "categorical" else GradientBoostingRegressor
    return cls(random_state=seed)


def fit_importance(codes_train, factors_train, codes_test, factors_test, kinds, seed: int = 0,
                   estimator: str = "paper"):
    """One GBT per factor -> importance [D, F], test score per factor [F] and each score's metric [F].

    paper: classifier + accuracy for categorical factors, regressor + R^2 for continuous ones.
    official: the first factor's estimator for all factors, exact-equality accuracy for all.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"DCI estimator must be one of {ESTIMATORS}, got {estimator!r}")
    for j, kind in enumerate(kinds):
        if kind not in KINDS:
            raise ValueError(f"factor {j}: kind must be one of {KINDS}, got {kind!r}")
    if estimator == "official" and kinds[0] == "categorical" and "continuous" in kinds:
        raise ValueError("the official estimator fits the first factor's classifier to every factor, which cannot "
                         "fit a continuous factor: put a continuous factor first (as CLEVR6's x) or use 'paper'")
    importance = np.zeros((codes_train.shape[1], len(kinds)))
    scores, metrics = np.zeros(len(kinds)), []
    for j, kind in enumerate(kinds):
        model = _estimator(kind if estimator == "paper" else kinds[0], seed).fit(codes_train, factors_train[:, j])
        importance[:, j] = np.abs(model.feature_importances_)
        if estimator == "official" or kind == "categorical":
            scores[j], metric = np.mean(model.predict(codes_test) == factors_test[:, j]), "accuracy"
        else:
            scores[j], metric = model.score(codes_test, factors_test[:, j]), "r2"
        metrics.append(metric)
    return importance, scores, metrics


def split_indices(n: int, seed: int, train_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random train/test split of n rows (App. E.2: 50/50)."""
    order = np.random.default_rng(seed).permutation(n)
    cut = int(n * train_fraction)
    return order[:cut], order[cut:]


def _mean(scores: np.ndarray, keep: list[bool]) -> float | None:
    return float(scores[keep].mean()) if any(keep) else None


def dci(codes: np.ndarray, factors: np.ndarray, kinds: list[str], seed: int = 0, train_fraction: float = 0.5,
        estimator: str = "paper") -> dict:
    """codes [N,D], factors [N,F] -> D, C, informativeness (see the module docstring) and importance [D,F].

    `informativeness` is the number compared with a paper's I: the mean test accuracy over the factors
    scored by accuracy (all of them for `official`). `informativeness_r2` is the mean test R^2 over
    continuous factors (paper estimator only).
    """
    if len(codes) != len(factors):
        raise ValueError(f"{len(codes)} codes but {len(factors)} factor rows")
    if len(codes) < 4:
        raise ValueError(f"DCI needs at least 4 matched objects, got {len(codes)}")
    tr, te = split_indices(len(codes), seed, train_fraction)
    importance, scores, metrics = fit_importance(codes[tr], factors[tr], codes[te], factors[te], kinds, seed,
                                                 estimator)
    return {
        "disentanglement": disentanglement(importance),
        "completeness": completeness(importance),
        "informativeness": _mean(scores, [m == "accuracy" for m in metrics]),
        "informativeness_r2": _mean(scores, [m == "r2" for m in metrics]),
        "informativeness_per_factor": scores.tolist(),
        "score_metric_per_factor": metrics,
        "estimator": estimator,
        "importance": importance,
        "n_objects": int(len(codes)),
    }


def mask_iou(pred_masks: Tensor, true_mask: Tensor, object_ids: list[int]) -> Tensor:
    """pred_masks [K,H,W] (hard or soft), true_mask [H,W] labels -> IoU [n_objects, K]."""
    pred = pred_masks.flatten(1).float()  # [K,N]
    true = torch.stack([(true_mask.flatten() == i).float() for i in object_ids])  # [M,N]
    inter = true @ pred.T  # [M,K]
    union = true.sum(1, keepdim=True) + pred.sum(1)[None] - inter
    return inter / union.clamp(min=1e-8)


def match_slots(pred_masks: Tensor, true_mask: Tensor, object_ids: list[int], min_iou: float = 0.1) -> list[tuple[int, int]]:
    """Hungarian on IoU: [(object index, slot index)] for matches with IoU >= min_iou (EMORL App. E.2)."""
    if not object_ids:
        return []
    pred_hard = torch.nn.functional.one_hot(pred_masks.argmax(0), pred_masks.shape[0]).permute(2, 0, 1)
    iou = mask_iou(pred_hard, true_mask, object_ids)  # [M,K]
    rows, cols = hungarian_matching(iou[None], maximize=True)[0]
    return [(int(r), int(c)) for r, c in zip(rows, cols) if iou[r, c] >= min_iou]


def select_factors(specs, names=None) -> list:
    """The dataset's factor specs named in `names`, in the order of `names` (all of them, as stored, when None).
    The order matters: the official estimator fits the first factor's kind to every factor, so EMORL App. E.2's
    list starts with CLEVR6's continuous x, while our generators store shape first."""
    if names is None:
        return list(specs)
    by_name = {f.name: f for f in specs}
    return [by_name[n] for n in names if n in by_name]


def slot_factor_table(masks: Tensor, slots: Tensor, true_mask: Tensor, visibility: Tensor,
                      factors: dict[str, Tensor], specs, num_background: int = 1, min_iou: float = 0.1):
    """Pool (slot code, object factors) pairs over images for DCI (EMORL App. E.2).

    masks [N,K,1,H,W], slots [N,K,D], true_mask [N,H,W], visibility [N,M], factors {name: [N,M,*shape]},
    specs: the dataset's FactorSpecs. Vector factors become one column per component.
    Returns codes [P,D], factor table [P,F'], kinds [F'], names [F'].
    """
    names, kinds = [], []
    for spec in specs:
        width = int(np.prod(spec.shape)) if spec.shape else 1
        names += [spec.name] if width == 1 else [f"{spec.name}_{i}" for i in range(width)]
        kinds += [spec.kind] * width
    codes, rows = [], []
    for i in range(len(masks)):
        objects = [j for j in range(visibility.shape[1]) if visibility[i, j]]
        ids = [num_background + j for j in objects]
        for obj, slot in match_slots(masks[i, :, 0], true_mask[i], ids, min_iou):
            j = objects[obj]
            codes.append(slots[i, slot].float().cpu().numpy())
            rows.append(np.concatenate([np.atleast_1d(factors[s.name][i, j].cpu().numpy()).reshape(-1) for s in specs]))
    return np.array(codes), np.array(rows), kinds, names
