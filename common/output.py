"""The one output contract every model's forward returns; shared evaluation relies on it alone."""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class ModelOutput:
    """loss: scalar to minimise; recon [B,3,H,W] in [0,1]; masks [B,K,1,H,W] summing to 1 over K;
    slots [B,K,D]; logs: scalar diagnostics (floats or 0-d tensors) for the training log."""

    loss: Tensor
    recon: Tensor
    masks: Tensor
    slots: Tensor
    logs: dict[str, Tensor | float] = field(default_factory=dict)

    def check(self, images: Tensor) -> None:
        """Raise ValueError naming the field whose shape breaks the contract for input `images`."""
        b, _, h, w = images.shape
        if self.loss.dim() != 0:
            raise ValueError(f"ModelOutput.loss must be a scalar, got shape {tuple(self.loss.shape)}")
        if tuple(self.recon.shape) != (b, 3, h, w):
            raise ValueError(f"ModelOutput.recon must be {(b, 3, h, w)}, got {tuple(self.recon.shape)}")
        if self.masks.dim() != 5 or self.masks.shape[0] != b or tuple(self.masks.shape[2:]) != (1, h, w):
            raise ValueError(f"ModelOutput.masks must be [B,K,1,H,W] with B={b}, H={h}, W={w}, "
                             f"got {tuple(self.masks.shape)}")
        if self.slots.dim() != 3 or self.slots.shape[:2] != self.masks.shape[:2]:
            raise ValueError(f"ModelOutput.slots must be [B,K,D] matching masks, got {tuple(self.slots.shape)}")
