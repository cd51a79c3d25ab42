"""A tiny procedural scene set (squares and discs on black) for tests and pipeline smoke runs.

Not a replication dataset: the paper datasets come from the generators of the Datasets issues.
"""
from __future__ import annotations

import torch
from torch import Tensor


def toy_shapes(n: int, size: int = 32, max_objects: int = 3, seed: int = 0) -> dict[str, Tensor]:
    """n scenes of 1..max_objects objects: {"image": uint8 [n,H,W,3], "mask": uint8 [n,H,W] (0 = bg)}.

    Objects are drawn in order, later ones occluding earlier ones; deterministic given `seed`.
    """
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")  # [H,W]
    image = torch.zeros(n, size, size, 3, dtype=torch.uint8)
    mask = torch.zeros(n, size, size, dtype=torch.uint8)
    count = torch.randint(1, max_objects + 1, (n,), generator=gen)  # [n]
    for k in range(max_objects):
        r = torch.randint(size // 8, size // 4 + 1, (n, 1, 1), generator=gen).float()
        cy, cx = (torch.rand(2, n, 1, 1, generator=gen) * (size - 2 * r) + r).unbind(0)
        disc = torch.rand(n, 1, 1, generator=gen) < 0.5
        inside = torch.where(disc, (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2,
                             ((yy - cy).abs() <= r) & ((xx - cx).abs() <= r))  # [n,H,W]
        inside &= (k < count)[:, None, None]
        colour = (torch.rand(n, 3, generator=gen) * 200 + 55).to(torch.uint8)  # [n,3]
        image = torch.where(inside[..., None], colour[:, None, None, :], image)
        mask = torch.where(inside, torch.tensor(k + 1, dtype=torch.uint8), mask)
    return {"image": image, "mask": mask}
