"""Procedural 3D textures for the CLEVR-Tex stand-in: 58 materials (a pattern family, two colours and a
frequency each), evaluated at the hit point in the object's own frame (the ground in world space)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

FAMILIES = ("checker", "stripes", "dots", "noise", "marble", "waves")


@dataclass(frozen=True)
class Material:
    name: str
    family: int
    a: tuple[float, float, float]
    b: tuple[float, float, float]
    frequency: float


def _materials(count: int = 58, seed: int = 58) -> tuple[Material, ...]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        family = i % len(FAMILIES)
        a, b = rng.random(3), rng.random(3)
        out.append(Material(f"{FAMILIES[family]}_{i // len(FAMILIES)}", family, tuple(a), tuple(b),
                            float(rng.uniform(2.0, 6.0))))
    return tuple(out)


MATERIALS = _materials()
_TABLE = {k: torch.tensor([getattr(m, k) for m in MATERIALS], dtype=torch.float32) for k in ("a", "b", "frequency")}
_FAMILY = torch.tensor([m.family for m in MATERIALS])


def _hash(p: Tensor) -> Tensor:
    return torch.frac(torch.sin((p * torch.tensor([12.9898, 78.233, 37.719], device=p.device)).sum(-1)) * 43758.5453)


def value_noise(p: Tensor, octaves: int = 3) -> Tensor:
    """fBm of trilinear lattice noise in [0,1]: p [...,3] -> [...]."""
    out, amp, total = torch.zeros_like(p[..., 0]), 1.0, 0.0
    for _ in range(octaves):
        i, f = torch.floor(p), p - torch.floor(p)
        f = f * f * (3 - 2 * f)
        acc = torch.zeros_like(out)
        for corner in range(8):
            o = torch.tensor([(corner >> k) & 1 for k in range(3)], dtype=p.dtype, device=p.device)
            w = torch.where(o.bool(), f, 1 - f).prod(-1)
            acc = acc + w * _hash(i + o)
        out, total, amp, p = out + amp * acc, total + amp, amp * 0.5, p * 2
    return out / total


def _family(k: int, p: Tensor) -> Tensor:
    x, y, z = p.unbind(-1)
    if k == 0:
        return (torch.floor(x) + torch.floor(y) + torch.floor(z)) % 2
    if k == 1:
        return (torch.sin(2 * torch.pi * (x + 0.5 * y)) > 0).float()
    if k == 2:
        return ((p - torch.round(p)).norm(dim=-1) < 0.3).float()
    if k == 3:
        return value_noise(p)
    if k == 4:
        return 0.5 + 0.5 * torch.sin(2 * torch.pi * (x + 2 * value_noise(p)))
    return 0.5 + 0.5 * torch.sin(3 * x) * torch.sin(3 * y) * torch.sin(3 * z)


def pattern(family: Tensor, p: Tensor) -> Tensor:
    """Pattern value in [0,1] of each point's family: family [...], p [...,3] (already scaled).
    Each family is evaluated only on its own points."""
    out = torch.zeros_like(p[..., 0])
    for k in family.unique().tolist():
        sel = family == k
        out[sel] = _family(k, p[sel])
    return out


def textured_albedo(hit: dict, s) -> Tensor:
    """Albedo [B,P,3] from each scene's object materials (`s.material` [B,M]) and ground material."""
    on_object = hit["index"] >= 0
    mat = torch.where(on_object, s.material.gather(1, hit["object"]), s.ground_material[:, None])  # [B,P]
    p = torch.where(on_object[..., None], hit["local"], hit["point"])
    table = {k: v.to(p.device)[mat] for k, v in _TABLE.items()}
    t = pattern(_FAMILY.to(p.device)[mat], p * table["frequency"][..., None])[..., None]
    return table["a"] * (1 - t) + table["b"] * t
