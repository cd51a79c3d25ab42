"""The generative evaluation SRI, LOM and SVQ share: FID, KID and an extrapolated FID from one set of
Inception features, and the negative ELBO in bits per dimension.

Protocol (GENESIS-v2 / SRI, implementation-checked.md §4.3 and §5.2; `../shared/reference/generative.md`):
N real test scenes against N samples (the papers: N = 10,000), real and generated images through the same
preprocessing (uint8, torch bilinear resize to 299 outside the network, (x - 128) / 128, the TF-ported
Inception's pool3 in NVIDIA's TorchScript copy; GENESIS-v2 and SRI ran pytorch-fid's port of the same network,
which scales by 2 (x / 255) - 1, a difference of half a level we could not measure offline; a clean-fid "clean"
score, PIL bicubic, would not be comparable). `quantisation` says how images become uint8: "round" rounds the
samples (unbiased); "truncate" is GENESIS-v2's `compute_fid` (checked 4.3: samples saved as uint8(255 x), the real
images unchanged by it); "truncate_signed" is SRI's (checked 5.2: both sets saved as uint8(255 x) after mapping
from [-1, 1] back to [0, 1], a float32 round trip that lowers 63 of the 256 levels of the real images by one).
Truncation lowers samples by half a level on average: measured once (a scratch script, this module's
`evaluate_samples`, the float32 network) on 2,000 ShapeStacks test scenes against 2,000 training scenes as
"samples" (dequantised with uniform noise), FID 10.29 rounded vs 11.89 truncated (KID 0.0000 vs 0.0017), so it is
part of a protocol, not a rounding detail. Every result records N, the temperature, the quantisation and the
network it used.

FID is biased upwards at small N, which our short profiles must use: KID (Bińkowski et al. 2018, the
unbiased MMD^2 with the cubic polynomial kernel, mean and std over subsets) is reported beside it, and
FID at infinite N (Chong & Forsyth 2020: FID at several N, fitted linearly against 1/N) where N allows.
"""
from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from common.metrics.fid import FIDUnavailable, frechet_distance, resolve_backend

QUANTISATIONS = ("round", "truncate", "truncate_signed")


def _check(mode: str) -> None:
    if mode not in QUANTISATIONS:
        raise ValueError(f"quantisation must be one of {QUANTISATIONS}, got {mode!r}")


def quantise(images: Tensor, mode: str = "round") -> Tensor:
    """Samples, float [N,3,H,W] in [0,1] -> uint8: round(255 x), or the official scripts' uint8(255 x)."""
    _check(mode)
    x = images.float().clamp(0, 1) * 255
    return (x.round() if mode == "round" else x.floor()).to(torch.uint8)


def real_images(real: Tensor, mode: str = "round") -> Tensor:
    """Real test images uint8 [N,3,H,W] as the protocol `mode` saves them: unchanged, except "truncate_signed"
    (SRI's compute_fid), which loads them to [-1, 1] in float32 and saves uint8(255 (x + 1) / 2)."""
    _check(mode)
    if mode != "truncate_signed":
        return real
    signed = real.float() / 255 * 2 - 1  # what SRI's data loader gives its model
    return ((signed + 1) / 2 * 255).floor().to(torch.uint8)


def kid(real: np.ndarray, fake: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> dict:
    """Unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3 over `subsets` random subsets (without replacement
    within a subset) of min(subset_size, N) features from each set: mean and std."""
    m = min(subset_size, len(real), len(fake))
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {len(real)} and {len(fake)}")
    rng, d = np.random.default_rng(seed), real.shape[1]
    values = []
    for _ in range(subsets):
        x = real[rng.choice(len(real), m, replace=False)]
        y = fake[rng.choice(len(fake), m, replace=False)]
        k_xx, k_yy, k_xy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        values.append(within - 2 * k_xy.mean())
    return {"kid": float(np.mean(values)), "kid_std": float(np.std(values)), "kid_subsets": subsets,
            "kid_subset_size": m}


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return features.mean(0), np.cov(features, rowvar=False)


def fid_infinity(real: np.ndarray, fake: np.ndarray, points: int = 8, min_n: int = 2000, seed: int = 0) -> dict:
    """FID at N = linspace(N/4... N) generated features (real statistics from all of `real`), fitted as
    FID_N = FID_inf + b / N; None when fewer than `min_n` generated samples are available."""
    n = len(fake)
    if n < min_n:
        return {"fid_inf": None, "fid_inf_status": f"not computed: {n} samples < {min_n}"}
    real_stats, rng = gaussian_stats(real), np.random.default_rng(seed)
    ns = np.linspace(n // 4, n, points).astype(int)
    fids = [frechet_distance(*real_stats, *gaussian_stats(fake[rng.choice(n, k, replace=False)])) for k in ns]
    slope, intercept = np.polyfit(1.0 / ns, fids, 1)
    return {"fid_inf": float(intercept), "fid_inf_points": [[int(k), float(f)] for k, f in zip(ns, fids)]}


def _cache_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / f"inception-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npy"


def real_features(images: Tensor, key: str, backend, cache_dir: Path | None = None, batch_size: int = 50) -> np.ndarray:
    """Inception features of the real test images, cached per (key, network) in `cache_dir` as float32."""
    path = None if cache_dir is None else _cache_path(Path(cache_dir), f"{key}|{len(images)}|{backend.sha1}")
    if path is not None and path.is_file():
        return np.load(path).astype(np.float64)
    feats = backend.features(images, batch_size)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, feats.astype(np.float32))
        tmp.replace(path)
    return feats


def evaluate_samples(real: Tensor, sample: Callable[[int], Tensor], n: int, *, key: str, temperature: float,
                     quantisation: str = "round", batch_size: int = 100, weights=None,
                     cache_dir: Path | None = None, kid_subsets: int = 100) -> dict:
    """FID, KID and FID_inf of n samples (`sample(b)` -> float [b,3,H,W] in [0,1]) against the first n
    real test images (uint8 [N,3,H,W]). Without Inception weights: {"fid": None, "status": "unavailable: ..."},
    or, where $OCREPRO_FID_DEFER names a folder, the images saved there and {"status": "deferred", ...} for
    `python -m common.metrics fid-deferred` to finish where the network is (the same draws either way)."""
    if len(real) < n:
        raise ValueError(f"FID with N = {n} needs {n} real test images, got {len(real)}")
    try:
        backend = resolve_backend(weights)
    except FIDUnavailable as err:
        backend, folder = None, os.environ.get(DEFER_ENV)
        if not folder:
            return {"fid": None, "status": f"unavailable: {err}", "n": n, "temperature": temperature}
    fake = torch.cat([quantise(sample(min(batch_size, n - i)).cpu(), quantisation) for i in range(0, n, batch_size)])
    head = real[:n]
    saved = real_images(head, quantisation)  # the protocol's saved copies: a different cache entry if they differ
    settings = {"n": n, "temperature": temperature, "quantisation": quantisation}
    if backend is None:
        return {"fid": None, "status": "deferred", "deferred": defer(fake, saved, Path(folder)), **settings}
    f_real = real_features(saved, key if saved is head else f"{key}|{quantisation}", backend, cache_dir)
    return fid_scores(f_real, backend.features(fake), backend, kid_subsets) | settings


def fid_scores(f_real: np.ndarray, f_fake: np.ndarray, backend, kid_subsets: int = 100) -> dict:
    """FID, KID and FID_inf of two sets of Inception features, and which network made them."""
    return {"fid": frechet_distance(*gaussian_stats(f_real), *gaussian_stats(f_fake)),
            **kid(f_real, f_fake, subsets=kid_subsets), **fid_infinity(f_real, f_fake), "resize": "bilinear-299",
            "backend": backend.source, "weights_sha1": backend.sha1, "weights_precision": backend.precision}


DEFER_ENV = "OCREPRO_FID_DEFER"  # a folder: without the Inception network, save there the images FID compares


def defer(fake: Tensor, real: Tensor, folder: Path) -> dict:
    """Save the uint8 samples and real images [N,3,H,W] FID would compare into `folder`, each once under the
    hash of its pixels (compressed .npz, written atomically); returns their file names."""
    folder.mkdir(parents=True, exist_ok=True)
    names = {}
    for role, images in (("samples", fake), ("real", real)):
        pixels = np.ascontiguousarray(images.numpy())
        name = f"fid-{role}-{hashlib.sha256(pixels.tobytes()).hexdigest()[:16]}.npz"
        if not (folder / name).is_file():
            tmp = folder / f".{name}.tmp.npz"
            np.savez_compressed(tmp, images=pixels)
            tmp.replace(folder / name)
        names[role] = name
    return names


def finish_deferred(entry: dict, folder: Path, backend, features: dict | None = None, kid_subsets: int = 100) -> dict:
    """A "deferred" entry of a metrics file with its FID, KID and FID_inf computed by `backend` from the images
    `defer` saved in `folder` (named in `computed_from_saved_images`); the entry's other keys are kept.
    `features` caches each file's Inception features across entries (one real set serves several models)."""
    features = {} if features is None else features
    for name in entry["deferred"].values():
        if name not in features:
            features[name] = backend.features(torch.from_numpy(np.load(folder / name)["images"]))  # [N,2048]
    f_real, f_fake = (features[entry["deferred"][role]] for role in ("real", "samples"))
    done = {k: v for k, v in entry.items() if k not in ("status", "deferred")}
    return done | fid_scores(f_real, f_fake, backend, kid_subsets) | {"computed_from_saved_images": entry["deferred"]}


def bits_per_dim(negative_elbo: Tensor, dims: int) -> float:
    """Mean negative ELBO (nats per image [B], continuous likelihood on [0,1] pixels) in bits per dimension."""
    return float(negative_elbo.double().mean() / (dims * math.log(2)))


def generation_order(masks: Tensor) -> dict:
    """How consistent a model's generation order is (SRI §5.1 shows it only as masks coloured by slot, Fig. 4):
    masks [N,K,1,H,W] of N samples, slots in generation order. A sample's background slot is its largest
    mask. Returns `background_slot_agreement`, the share of samples whose background is the most common
    background slot (1.0: always the same slot; 1/K or less: no consistent order), the histogram of
    background slots, and each slot's mean area (fraction of the image) in generation order."""
    area = masks.float().flatten(2).mean(2)  # [N,K]
    counts = torch.bincount(area.argmax(1), minlength=area.shape[1])  # [K]
    return {"background_slot_agreement": float(counts.max() / len(area)), "background_slot": int(counts.argmax()),
            "background_slot_histogram": counts.tolist(), "mean_area_per_slot": area.mean(0).tolist(),
            "n": len(area)}
