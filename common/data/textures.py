"""Procedural colour textures, stand-ins for DTD / CLEVRTex photo textures (nothing can be downloaded).

Each family maps a pattern in [0,1] through a random two-colour ramp: checker, stripes, dots, value
noise (fBm), marble (turbulent sine bands) and cells (Worley distance).
"""
from __future__ import annotations

import numpy as np

FAMILIES = ("checker", "stripes", "dots", "fbm", "marble", "cells")


def _coords(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    return yy, xx


def value_noise(size: int, rng: np.random.Generator, octaves: int = 4, base: int = 4) -> np.ndarray:
    """fBm of bilinearly interpolated lattice noise, [size,size] in [0,1]."""
    out, amp, total = np.zeros((size, size), np.float32), 1.0, 0.0
    for o in range(octaves):
        cells = base * 2**o
        lattice = rng.random((cells + 1, cells + 1)).astype(np.float32)
        t = np.linspace(0, cells, size, endpoint=False, dtype=np.float32)
        i, f = t.astype(int), t - t.astype(int)
        f = f * f * (3 - 2 * f)  # smoothstep
        rows = lattice[i] * (1 - f)[:, None] + lattice[i + 1] * f[:, None]  # [size, cells+1]
        out += amp * (rows[:, i] * (1 - f)[None] + rows[:, i + 1] * f[None])
        total += amp
        amp *= 0.5
    return out / total


def pattern(family: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A [size,size] pattern in [0,1]."""
    yy, xx = _coords(size)
    angle = rng.uniform(0, np.pi)
    u = np.cos(angle) * xx + np.sin(angle) * yy
    freq = rng.uniform(4, 12)
    if family == "checker":
        return ((np.floor(xx * freq) + np.floor(yy * freq)) % 2).astype(np.float32)
    if family == "stripes":
        return (np.sin(2 * np.pi * freq * u) > rng.uniform(-0.5, 0.5)).astype(np.float32)
    if family == "dots":
        fx, fy = (xx * freq) % 1 - 0.5, (yy * freq) % 1 - 0.5
        return (fx**2 + fy**2 < rng.uniform(0.04, 0.15)).astype(np.float32)
    if family == "fbm":
        return value_noise(size, rng)
    if family == "marble":
        return 0.5 + 0.5 * np.sin(2 * np.pi * (freq * u + 4 * value_noise(size, rng)))
    if family == "cells":
        points = rng.random((int(freq * 2), 2)).astype(np.float32)
        d = np.sqrt((yy[..., None] - points[:, 0]) ** 2 + (xx[..., None] - points[:, 1]) ** 2).min(-1)
        return np.clip(d * freq, 0, 1)
    raise ValueError(f"unknown texture family {family!r} (choose from {', '.join(FAMILIES)})")


def texture(size: int, rng: np.random.Generator, family: str | None = None) -> np.ndarray:
    """A random colour texture, uint8 [size,size,3]."""
    family = family or FAMILIES[rng.integers(len(FAMILIES))]
    a, b = rng.random(3), rng.random(3)
    t = pattern(family, size, rng)[..., None]
    return np.round((a * (1 - t) + b * t) * 255).astype(np.uint8)


def texture_bank(count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """count textures uint8 [count,size,size,3], cycling through the families."""
    return np.stack([texture(size, rng, FAMILIES[i % len(FAMILIES)]) for i in range(count)])
