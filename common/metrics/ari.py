"""Adjusted Rand index on foreground pixels (ARI-FG), batched in torch.

Equal to `sklearn.metrics.adjusted_rand_score(true[fg], pred[fg])` per image, computed from the
pair-confusion matrix as scikit-learn does, including its conventions: a perfect (or trivially
identical, e.g. single-cluster or empty) labelling scores 1.0.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _counts(labels: Tensor, weight: Tensor) -> Tensor:
    """labels [B,N] ints -> one-hot [B,N,C] float64, rows zeroed where weight is 0."""
    labels = labels.long()
    onehot = F.one_hot(labels, int(labels.max()) + 1 if labels.numel() else 1)
    return onehot.double() * weight.unsqueeze(-1)


def adjusted_rand_index(true_labels: Tensor, pred_labels: Tensor, weight: Tensor | None = None) -> Tensor:
    """ARI per image over the pixels with weight 1: true, pred [B,N] integer labels -> [B] float64."""
    if true_labels.shape != pred_labels.shape:
        raise ValueError(f"label maps differ in shape: {tuple(true_labels.shape)} vs {tuple(pred_labels.shape)}")
    weight = torch.ones_like(true_labels, dtype=torch.float64) if weight is None else weight.double()
    contingency = torch.einsum("bnc,bnk->bck", _counts(true_labels, weight), _counts(pred_labels, weight))
    n = weight.sum(1)  # [B]
    sum_squares = (contingency**2).sum((1, 2))  # [B]
    a, b = contingency.sum(2), contingency.sum(1)  # true / predicted cluster sizes
    tp = sum_squares - n
    fp = (b**2).sum(1) - sum_squares
    fn = (a**2).sum(1) - sum_squares
    tn = n**2 - fp - fn - sum_squares
    denom = (tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)
    ari = 2.0 * (tp * tn - fn * fp) / denom.where(denom != 0, torch.ones_like(denom))
    return torch.where((fn == 0) & (fp == 0), torch.ones_like(ari), ari)


def ari_fg(true_mask: Tensor, pred: Tensor, background: int | tuple[int, ...] = 0) -> Tensor:
    """ARI-FG per image, background pixels excluded.

    true_mask [B,H,W] (or [B,N]) instance labels; `background` lists the label ids that count as
    background (Objects Room has several). pred: labels [B,H,W] or soft masks [B,K,1,H,W] / [B,K,H,W]
    (argmax over K). Returns [B] float64.
    """
    if pred.dim() == true_mask.dim() + 1 or pred.dim() == 5:
        pred = pred.reshape(pred.shape[0], pred.shape[1], -1).argmax(1)  # [B,N]
    true = true_mask.reshape(true_mask.shape[0], -1).long()
    pred = pred.reshape(pred.shape[0], -1).long()
    bg = torch.tensor(background if isinstance(background, tuple) else (background,), device=true.device)
    fg = (~torch.isin(true, bg)).double()  # [B,N]
    return adjusted_rand_index(true, pred, fg)
