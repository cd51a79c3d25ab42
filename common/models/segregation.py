"""The segregation interface: an orderless slot posterior from a backbone, as SRI's Segregate step
(Algorithm 2) and LOM's step 1 (§3.2) consume it. GENESIS-v2 (`common.models.genesis_v2`) and
EfficientMORL (`papers.emorl.model`) implement it; SRI and LOM use nothing else of the backbone but
its public `decode` and `after_step`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from common.output import ModelOutput
from common.prob import GECOMultiplicativeKL
from common.prob.likelihood import HALF_LOG_2PI


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


class OnBackbone:
    """What an ordered scene model built on a segregation backbone shares (SRI, LOM): the model has `backbone`
    (a Segregator), its own `geco` (or None), `infer(images) -> t` with t["z"], `decode(z)` and
    `kl_terms(t)` with per-image "scene_kl" and "slot_kl"; its forward logs the backbone's logs as "seg_*" and
    its own reconstruction error as "err"."""

    def geco_logs(self) -> dict[str, Tensor]:
        if isinstance(self.geco, GECOMultiplicativeKL):
            return {"geco_beta": self.geco.beta.detach()}
        return {} if self.geco is None else {"geco_weight": self.geco.weight.detach()}

    def after_step(self, out: ModelOutput, ok: Tensor | bool = True) -> None:
        """Both GECOs' updates: the backbone's from its own logs, the model's from its reconstruction error."""
        seg_logs = {n[4:]: v for n, v in out.logs.items() if n.startswith("seg_")}
        self.backbone.after_step(ModelOutput(out.loss, out.recon, out.masks, out.slots, seg_logs), ok)
        if self.geco is not None:
            self.geco.update(out.logs["err"], ok)

    @torch.no_grad()
    def negative_elbo(self, images: Tensor) -> Tensor:
        """Single-sample -ELBO per image [B] in nats: NLL + scene KL + slot KL (no free bits, no auxiliary
        terms), under the normalised density on [0,1] pixels whatever the backbone's likelihood drops."""
        t = self.infer(images)
        rgb, log_m = self.decode(t["z"])
        kls = self.kl_terms(t)
        normalised = getattr(self.backbone.config, "normalised", False)  # GENESIS-v2's flag; EMORL drops it
        constant = 0.0 if normalised else HALF_LOG_2PI * images[0].numel()
        return self.backbone.nll(images, rgb, log_m) + constant + kls["scene_kl"] + kls["slot_kl"]

    @torch.no_grad()
    def encoder_masks(self, images: Tensor) -> Tensor:
        """The backbone's own masks [B,K,1,H,W] in its order (GENESIS-v2's IC-SBP masks, SRI-SA*'s attention)."""
        if hasattr(self.backbone, "encoder_masks"):
            return self.backbone.encoder_masks(images)
        return self.backbone.segregate(images).output.masks
