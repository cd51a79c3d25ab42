"""The segregation interface: an orderless slot posterior from a backbone, as SRI's Segregate step
(Algorithm 2) and LOM's step 1 (§3.2) consume it. GENESIS-v2 (`common.models.genesis_v2`) and
EfficientMORL (`papers.emorl.model`) implement it; SRI and LOM use nothing else of the backbone but
its public `decode` and `after_step`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from torch import Tensor, nn

from common.output import ModelOutput


@dataclass
class Segregation:
    """One forward pass of a backbone: its posterior q(z_k | x) per slot, in the backbone's own arbitrary
    slot order, the sample it decoded, and its own output (loss to add to the objective, recon, masks, logs)."""

    mean: Tensor  # [B,K,D]
    std: Tensor  # [B,K,D]
    sample: Tensor  # [B,K,D], decoded into output.recon
    output: ModelOutput


@runtime_checkable
class Segregator(Protocol):
    """What a segregation backbone offers. `decode(z, decoder=None)` maps slots [B,K,D] to RGB means
    [B,K,3,H,W] and log masks [B,K,1,H,W] with its `decoder` module or a copy of it; `nll(images, rgb,
    log_masks)` is its likelihood per image [B]; `after_step(output, ok)` runs its own training-state
    updates (GECO)."""

    @property
    def num_slots(self) -> int: ...

    @property
    def slot_dim(self) -> int: ...

    def segregate(self, images: Tensor, step: int | None = None) -> Segregation: ...

    def decode(self, z: Tensor, decoder=None) -> tuple[Tensor, Tensor]: ...

    def nll(self, images: Tensor, rgb: Tensor, log_masks: Tensor) -> Tensor: ...

    def after_step(self, out: ModelOutput, ok: Tensor | bool = True) -> None: ...


def fresh_copy(module: nn.Module) -> nn.Module:
    """The same architecture with its own, newly initialised weights: a decoder of the backbone's
    architecture for the ordered model (SRI's official code, LOM §3.3), so that no gradient of the ordered
    model's likelihood reaches the backbone's decoder."""
    twin = copy.deepcopy(module)
    for m in twin.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return twin
