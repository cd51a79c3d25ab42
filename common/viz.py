"""PNG grids: input | reconstruction | mask segmentation | per-slot components, and samples."""
from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

PALETTE = torch.tensor([
    [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
    [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [220, 190, 255],
], dtype=torch.float32) / 255.0


def colour_masks(masks: Tensor) -> Tensor:
    """masks [B,K,1,H,W] -> argmax segmentation coloured by slot [B,3,H,W]."""
    k = masks.shape[1]
    colours = PALETTE[torch.arange(k) % len(PALETTE)].to(masks.device)  # [K,3]
    labels = masks[:, :, 0].argmax(1)  # [B,H,W]
    return colours[labels].permute(0, 3, 1, 2)


def colour_labels(labels: Tensor, num_background: int = 1) -> Tensor:
    """Instance label maps [B,H,W] -> [B,3,H,W]: background labels dark grey, objects by palette."""
    labels = labels.long()
    colours = torch.cat([torch.full((num_background, 3), 0.15), PALETTE.repeat(32, 1)])  # [>=256,3]
    return colours[labels].permute(0, 3, 1, 2)


def grid(rows: list[Tensor], pad: int = 2) -> Tensor:
    """rows: R tensors [C,3,H,W] (equal shapes) -> one image [3, R(H+pad)+pad, C(W+pad)+pad] on white."""
    r, (c, _, h, w) = len(rows), rows[0].shape
    canvas = torch.ones(3, r * (h + pad) + pad, c * (w + pad) + pad)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            canvas[:, y:y + h, x:x + w] = img.detach().float().cpu().clamp(0, 1)
    return canvas


def decomposition_rows(images: Tensor, recon: Tensor, masks: Tensor, components: Tensor | None = None) -> list[Tensor]:
    """One row per image: input, reconstruction, coloured masks, then mask * component per slot.

    images, recon [B,3,H,W]; masks [B,K,1,H,W]; components [B,K,3,H,W] (default: slot-coloured masks).
    """
    seg = colour_masks(masks)
    comps = masks * (components if components is not None else torch.ones_like(masks).expand(-1, -1, 3, -1, -1))
    return [torch.cat([torch.stack([images[b], recon[b], seg[b]]), comps[b]]) for b in range(len(images))]


def save_png(image: Tensor, path: str | Path, scale: int = 1) -> Path:
    """[3,H,W] in [0,1] -> PNG (nearest-neighbour upscaled by `scale`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    pil = Image.fromarray(array)
    if scale > 1:
        pil = pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)
    pil.save(path)
    return path


def save_decomposition(path, images, recon, masks, components=None, scale: int = 2) -> Path:
    return save_png(grid(decomposition_rows(images, recon, masks, components)), path, scale)


def save_samples(path, samples: Tensor, per_row: int = 8, scale: int = 2) -> Path:
    """samples [N,3,H,W] -> a grid with `per_row` columns."""
    rows = [samples[i:i + per_row] for i in range(0, len(samples), per_row)]
    if len(rows) > 1 and len(rows[-1]) < per_row:
        rows[-1] = torch.cat([rows[-1], torch.ones(per_row - len(rows[-1]), *samples.shape[1:])])
    return save_png(grid(rows), path, scale)
