"""Side-by-side timing against an official implementation, imported at run time from a checkout the
user names (`python -m benchmarks NAME --official PATH`); its code is never copied into this repository.

EfficientMORL (pemami4911/EfficientMORL): `lib/model.py` builds its sub-modules through sacred captured
configs (`net = Ingredient('Net')`, `@net.capture`), so the model is constructed inside a sacred
`Experiment(ingredients=[lib.model.net])` run with `config_updates={"Net": ...}` read from the
checkout's own `configs/train/<dataset>/EMORL.json`. Its `train.py` (CUDA, NCCL/DDP, HDF5 loaders,
TensorBoard) is bypassed; `official_emorl_step` repeats its inner-loop body on the unmodified model:
refinement curriculum, zero_grad, `model(x, geco, step, kl_beta)` with `lib.geco.GECO`,
`total_loss.backward()`, `clip_grad_norm_(..., 5.0)`, Adam step, then GECO's EMA and beta updates.
Left out: the DDP wrapper (one process) and the LR warm-up scheduler (a third-party package; one
scalar update per step). No CPU workaround is needed: the model moves its own tensors to `x.device`.
Inputs are ours, mapped to the [-1, 1] range its data loaders produce and made contiguous NCHW as
theirs are: a channels-last tensor (our Trainer's batches are permuted views of NHWC uint8) makes
its encoder's `x.permute(0,2,3,1).contiguous()` a no-op, and the following in-place `x += pos_embed`
then overwrites an in-place ReLU's output that backward needs.
"""
from __future__ import annotations

import importlib
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.common import matmul_gflop_per_s, seconds

ANCHOR_LABEL = "recorded anchor (implementation-notes §9, not measured in this run)"
NO_ANCHOR_RATIO = ("no ratio to the recorded anchor: a ratio means something only with both sides timed on this "
                   "machine in this run (side by side on a 2-core CPU, the official EMORL and SRI steps took 1.6x "
                   "and 2.6x less than their anchors); pass --official PATH to time the official code here")
INSTALL_HINT = "pip install -e '.[official-bench]'"


class OfficialUnavailable(Exception):
    """The official code cannot be run here; the message is one line saying what is missing."""


def skipped(reason: OfficialUnavailable) -> None:
    """The one line printed when `--official` was given but cannot be used."""
    print(f"official comparison skipped: {reason}; showing the {ANCHOR_LABEL} instead")


def load_official(load: Callable, path: str | None, *args, **kwargs):
    """load(path, *args, **kwargs), or None when no checkout was given or it cannot be used (one line says why)."""
    if path is None:
        return None
    try:
        return load(path, *args, **kwargs)
    except OfficialUnavailable as reason:
        skipped(reason)
        return None


# -- loading -------------------------------------------------------------------------------------
def _require_sacred() -> None:
    try:
        with warnings.catch_warnings():  # sacred 0.8.7 imports pkg_resources, which warns that it is deprecated
            warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)
            import sacred  # noqa: F401
    except ImportError as err:
        what = "sacred is not installed" if err.name == "sacred" else f"sacred cannot be imported ({err})"
        raise OfficialUnavailable(f"{what}; the official lib/model.py needs it: {INSTALL_HINT}") from None


def _import_from(root: Path, names: list[str]) -> list:
    """Import `names` (modules of the checkout's top-level packages) from `root` only."""
    packages = {n.split(".")[0] for n in names}
    for name in [m for m in sys.modules if m.split(".")[0] in packages]:
        del sys.modules[name]  # a package from elsewhere (or an earlier checkout) must not answer
    sys.path.insert(0, str(root))
    try:
        modules = [importlib.import_module(n) for n in names]
    finally:
        sys.path.remove(str(root))
    for mod in modules:
        if root not in Path(mod.__file__).resolve().parents:
            raise OfficialUnavailable(f"{mod.__name__} was imported from {mod.__file__}, not from {root}")
    return modules


@dataclass
class OfficialEMORL:
    """The official model with what its train.py keeps beside it."""

    model: torch.nn.Module
    geco: object  # lib.geco.GECO
    training: dict  # the JSON's "training" section
    step: int  # a global step at which the GECO branch is active (past the warm start)


def load_emorl(path: str | Path, config: str, batch_size: int, device: str | torch.device = "cpu") -> OfficialEMORL:
    """Build the official EfficientMORL from the checkout at `path` with its JSON `config` (relative to
    `path`), at `batch_size` (the model bakes it in). Raises OfficialUnavailable with one clear line."""
    root = Path(path).expanduser().resolve()
    for rel in ("lib/model.py", "lib/geco.py", config):
        if not (root / rel).is_file():
            raise OfficialUnavailable(f"{root} has no {rel} (expected a checkout of pemami4911/EfficientMORL)")
    _require_sacred()
    from sacred import Experiment

    spec = json.loads((root / config).read_text())
    lib_model, lib_geco = _import_from(root, ["lib.model", "lib.geco"])
    built = {}
    ex = Experiment("official_bench", ingredients=[lib_model.net], interactive=True, save_git_info=False)

    @ex.main
    def build():
        built["model"] = lib_model.EfficientMORL(batch_size=batch_size, use_geco=spec["training"]["use_geco"])

    updates = {"Net": spec["Net"], "seed": spec.get("seed", 0)}
    ex.run(config_updates=updates, options={"--loglevel": "ERROR", "--capture": "no"})
    model = built["model"].to(device).train()
    training = spec["training"]
    c, h, w = model.input_size
    geco = lib_geco.GECO(training["geco_reconstruction_target"] * c * h * w, training["geco_ema_alpha"],
                         training.get("geco_step_size_acceleration", 1))
    return OfficialEMORL(model, geco, training, model.geco_warm_start + 1)


# -- one step ------------------------------------------------------------------------------------
def _as_loaded(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] images as its data loaders hand them over: [-1, 1], contiguous NCHW."""
    return (images * 2 - 1).contiguous()


def _set_curriculum(official: OfficialEMORL) -> None:
    """train.py's refinement curriculum: I from the last (step, I) entry at or before the step."""
    for start, iters in reversed(official.training["refinement_curriculum"]):
        if official.step >= start:
            official.model.refinement_iters = iters
            return


def official_emorl_step(official: OfficialEMORL, images: torch.Tensor,
                        foreach: bool | None = None) -> Callable[[], None]:
    """One full optimiser step of train.py's loop on `images` in [0, 1] (fed as [-1, 1]), at a step
    where GECO is active; its state is updated as there (EMA, then beta). `foreach`: Adam's implementation
    (None: PyTorch's choice for the device, a loop over parameters on the CPU; True: what CUDA runs). The
    step's `optimiser` attribute is that Adam."""
    model, geco, tr = official.model, official.geco, official.training
    x = _as_loaded(images)
    opt = torch.optim.Adam(model.parameters(), lr=tr["lr"], foreach=foreach)
    _set_curriculum(official)

    def step() -> None:
        opt.zero_grad()
        out = model(x, geco, official.step, tr["kl_beta_init"])
        out["total_loss"].backward()
        if tr["clip_grad_norm"]:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=5.0)
        opt.step()
        model.geco_C_ema = geco.update_ema(model.geco_C_ema, out["nll"])
        model.geco_beta = geco.step_beta(model.geco_C_ema, model.geco_beta, tr["geco_beta_stepsize"])

    step.optimiser = opt
    return step


def official_emorl_forward_backward(official: OfficialEMORL, images: torch.Tensor,
                                    steps: int) -> Callable[[], None]:
    """zero_grad, forward, backward of the plain ELBO (geco=None, as our model without a GECO target)
    with I = `steps` refinement iterations, on `images` in [0, 1] fed as [-1, 1]."""
    model, x = official.model, _as_loaded(images)
    model.refinement_iters = steps

    def fwd_bwd() -> None:
        model.zero_grad(set_to_none=True)
        model(x, None, official.step, official.training["kl_beta_init"])["total_loss"].backward()

    return fwd_bwd


# -- timing and report ---------------------------------------------------------------------------
def alternating_seconds(fns: dict[str, Callable[[], object]], repeats: int = 10, warmup: int = 2,
                        clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Time each callable `repeats` times after `warmup` untimed calls, interleaved: every round runs
    each once, in the given order on even rounds and reversed on odd ones (A B, B A, ...), so slow
    drifts of a shared machine fall on both alike. Returns the seconds of each call, by name."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else reversed(names):
            times[name].append(seconds(fns[name], clock))
    return times


def side_by_side(times: dict[str, list[float]], ours: str, official: str, note: str = "") -> tuple[list[dict], str]:
    """Table rows (median, min, max seconds per code) and the line with the ratio of ours / official
    medians (`note` is added inside its parentheses)."""
    rows = [{"code": name, "median s": statistics.median(t), "min s": min(t), "max s": max(t),
             "runs": len(t)} for name, t in times.items()]
    ratio = statistics.median(times[ours]) / statistics.median(times[official])
    paired = [a / b for a, b in zip(times[ours], times[official])]
    line = (f"ours / official: {ratio:.2f} (medians, measured side by side in this run; "
            f"per-round ratios {min(paired):.2f}-{max(paired):.2f}{note})")
    return rows, line


def add_work(rows: list[dict], work: dict[str, float], ours: str, official: str) -> str | None:
    """Put each code's GFLOP per step (benchmarks.common.gflop) and its rate into its side_by_side row; return the
    line with ours / official in GFLOP beside this machine's fp32 matrix-product rate, or None where the official
    side counted none (a stand-in checkout)."""
    for row in rows:
        row.update(GFLOP=work[row["code"]], **{"GFLOP/s": work[row["code"]] / row["median s"]})
    if not work[official]:
        return None
    return (f"ours / official in GFLOP per step: {work[ours] / work[official]:.2f} (FlopCounterMode: matrix products "
            f"and convolutions, forward and backward); one {matmul_gflop_per_s():.0f} GFLOP/s fp32 matrix product "
            "sets the ceiling on this machine")


def add_kernels(rows: list[dict], counts: dict[str, dict], ours: str, official: str) -> str:
    """Put each code's kernels and host reads per step (benchmarks.common.dispatched_ops) into its row; return the
    line with ours / official in kernels: on a GPU, where these small steps are bound by kernel launches, the
    floor of the throughput ratio that eager execution can reach. Count the official step with `foreach=True`
    (its Adam as CUDA runs it: on the CPU PyTorch loops over the parameters, a dozen kernels each) and its Adam
    as a host counter (its step counts live on the host on a GPU too)."""
    for row in rows:
        row.update(kernels=counts[row["code"]]["kernels"], **{"host reads": counts[row["code"]]["host_reads"]})
    return (f"ours / official in kernels per step: {counts[ours]['kernels'] / counts[official]['kernels']:.2f} "
            f"(each a launch on a GPU; the official's Adam counted as CUDA runs it); host reads of the device per "
            f"step (.item(), bool() of a tensor: each makes a GPU's host wait): ours {counts[ours]['host_reads']}, "
            f"official {counts[official]['host_reads']}")


def describe(path: str | Path, repeats: int, warmup: int) -> str:
    """How the side-by-side numbers were taken."""
    return (f"official code from {Path(path).expanduser().resolve()} (imported at run time); alternating ours/official, "
            f"{warmup} warm-up + {repeats} timed calls each, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads for both")


def parameters(model: torch.nn.Module) -> str:
    return f"{sum(p.numel() for p in model.parameters() if p.requires_grad):,}"


# -- SRI (pemami4911/segregate-relate-imagine) ---------------------------------------------------------
# `sri/model.py` builds SRI from plain arguments (train.py's ShapeStacks defaults below) and imports GENESIS-v2
# from the checkout's own third_party/genesis_v2. It needs `attrdict`, whose last release (2.0.1) cannot be
# imported on Python >= 3.10 (collections.Mapping); when it is missing or broken, a dict with attribute access
# stands in for it (the model uses it only as a container of its losses and stats).
SRI_ARGS = dict(K_steps=9, pixel_bound=True, feat_dim=64, semiconv=True, kernel="gaussian", pixel_std=0.7,
                dynamic_K=False, image_likelihood="MoG-Normed", debug=False, img_size=64, scene_latent_dim=128,
                scene_encoder_layers=3)  # train.py's defaults: ShapeStacks 64 px, K = 9, z 64, s 128, L 3
SRI_GECO = dict(goal=0.5655 * 3 * 64 * 64, step_size=1e-6, alpha=0.99, beta_init=1.0, beta_min=1e-10,
                speedup=10.0)  # train.py's g_* defaults, goal per element times 3 * 64^2, g_lr * 64^2 / 64^2


def _attrdict_stand_in() -> None:
    try:
        import attrdict  # noqa: F401
    except Exception:  # ImportError, or 2.0.1's ImportError/AttributeError on collections.Mapping
        import types

        class AttrDict(dict):
            def __getattr__(self, key):
                try:
                    return self[key]
                except KeyError as err:
                    raise AttributeError(key) from err

            def __setattr__(self, key, value):
                self[key] = value

        sys.modules["attrdict"] = types.SimpleNamespace(AttrDict=AttrDict)


@dataclass
class OfficialSRI:
    """An official model with its GECO(s) and optimiser (SRI; GENESIS-v2 as SRI's checkout carries it)."""

    model: torch.nn.Module
    gecos: tuple  # GENESIS-v2's and SRI's third_party.genesis_v2.geco.GECO, as train.py keeps them
    optimiser: torch.optim.Optimizer


def _sri_modules(path: str | Path):
    """sri.model and its GENESIS-v2 GECO module from a checkout of pemami4911/segregate-relate-imagine (seeded 0)."""
    root = Path(path).expanduser().resolve()
    if not (root / "sri" / "model.py").is_file():
        raise OfficialUnavailable(f"{root} has no sri/model.py (a checkout of pemami4911/segregate-relate-imagine?)")
    _attrdict_stand_in()
    modules = _import_from(root, ["sri.model", "third_party.genesis_v2.geco"])
    torch.manual_seed(0)
    return modules


def load_sri(path: str | Path, device: str | torch.device = "cpu") -> OfficialSRI:
    model_module, geco_module = _sri_modules(path)
    model = model_module.SRI(**SRI_ARGS).to(device)
    gecos = tuple(geco_module.GECO(**SRI_GECO) for _ in range(2))
    return OfficialSRI(model, gecos, torch.optim.Adam(model.parameters(), lr=1e-4))


def _set_foreach(optimiser: torch.optim.Optimizer, foreach: bool | None) -> None:
    """Adam's implementation for the next step (see `official_emorl_step`)."""
    for group in optimiser.param_groups:
        group["foreach"] = foreach


def official_sri_step(official: OfficialSRI, images: torch.Tensor,
                      foreach: bool | None = None) -> Callable[[], None]:
    """train.py's inner-loop body on the unmodified model: forward, the GENESIS-v2 loss under its GECO
    plus the SRI loss (scene + rollout + slot KL) under the second GECO, backward, Adam (`foreach` as in
    `official_emorl_step`). Images float [B,3,H,W] in [0,1], contiguous NCHW as its loader gives them."""
    x = images.contiguous()
    geco, geco_sri = official.gecos

    def step() -> None:
        _set_foreach(official.optimiser, foreach)
        official.optimiser.zero_grad()
        _, losses, *_ = official.model(x)
        kl_l = losses.kl_l.mean(0) if "kl_l" in losses else torch.stack(losses.kl_l_k, dim=1).mean(dim=0).sum()
        kl_m = losses.kl_m.mean(0) if "kl_m" in losses else 0.0  # off by train.py's default
        kl = losses.sri_kl_scene.mean(0) + losses.sri_kl_z_ordered.mean(0) + losses.sri_kl_slot.mean(0)
        loss = geco.loss(losses.genv2_err.mean(0), kl_l + kl_m) + geco_sri.loss(losses.sri_err.mean(0), kl)
        loss.backward()
        official.optimiser.step()

    return step


# GENESIS-v2 as SRI's checkout carries it: `sri.model.GenesisV2` on its third_party/genesis_v2 modules (the Oxford
# A2I code, modified by Emami), the backbone SRI trains. The applied-ai-lab/genesis repository itself cannot be built
# (its `forge` submodule is missing); this copy has GENESIS-v2's encoder, IC-SBP, decoder and MoG likelihood but
# only the independent N(0, I) prior, so it is timed against ours with `prior: independent`.
GENESIS_ARGS = dict(K=9, img_size=64, feat_dim=64, semiconv=True, kernel="gaussian", dynamic_K=False, debug=False,
                    pixel_bound=True, pixel_std=0.7, image_likelihood="MoG-Normed")  # SRI train.py's defaults


def load_genesis_in_sri(path: str | Path, device: str | torch.device = "cpu") -> OfficialSRI:
    """The GENESIS-v2 of a checkout of pemami4911/segregate-relate-imagine, its GECO and Adam 1e-4."""
    model_module, geco_module = _sri_modules(path)
    model = model_module.GenesisV2(**GENESIS_ARGS).to(device)
    return OfficialSRI(model, (geco_module.GECO(**SRI_GECO),), torch.optim.Adam(model.parameters(), lr=1e-4))


def official_genesis_step(official: OfficialSRI, images: torch.Tensor,
                          foreach: bool | None = None) -> Callable[[], None]:
    """SRI train.py's GENESIS-v2 half of the step on the unmodified model: forward, the MoG NLL and the summed
    per-slot KL under GECO, backward, Adam (`foreach` as in `official_emorl_step`). Images float [B,3,H,W] in
    [0,1]."""
    x = images.contiguous()
    (geco,) = official.gecos

    def step() -> None:
        _set_foreach(official.optimiser, foreach)
        official.optimiser.zero_grad()
        _, losses, *_ = official.model(x)
        kl = torch.stack(losses.kl_l_k, dim=1).mean(dim=0).sum()
        geco.loss(losses.genv2_err.mean(0), kl).backward()
        official.optimiser.step()

    return step


# -- SVQ / NLoTM (yfw/nlotm) ---------------------------------------------------------------------
# Its train.py (CUDA, DataParallel, PNG loaders, TensorBoard) is bypassed; `official_svq_step` repeats its
# inner-loop body on the unmodified `nlotm.NlotmImageAutoEncoder`, built from its own args.py defaults with
# --image_size 64: forward(image, tau), loss = mse + CE + vq_beta vq + commitment_beta commitment, backward,
# clip_grad_norm_(0.05, inf), Adam over its three groups (dVAE, image_encoder, image_decoder). Left out: the
# learning-rate arithmetic (three scalars per step) and fp16 (off by default). Its model runs on the CPU as is.
SVQ_MODULES = ["args", "utils", "dvae", "transformer", "nlotm"]  # nlotm imports the other three at top level


@dataclass
class OfficialSVQ:
    model: torch.nn.Module
    args: object  # its argparse namespace
    optimiser: torch.optim.Optimizer


def _torchvision_stand_in() -> None:
    """nlotm's utils.py imports torchvision.utils for its `visualize` (image grids), never called by a training
    step. torchvision cannot load with our local CPU torch build, so it is never imported: a stand-in answers the
    import (unless the process already holds torchvision) and fails loudly if anything calls it."""
    if "torchvision" in sys.modules:
        return
    import types

    def unavailable(*args, **kwargs):
        raise RuntimeError("torchvision stand-in (benchmarks/official.py): image grids are not available")

    utils = types.SimpleNamespace(make_grid=unavailable, save_image=unavailable)
    sys.modules["torchvision"] = types.SimpleNamespace(utils=utils)
    sys.modules["torchvision.utils"] = utils


def load_svq(path: str | Path, image_size: int = 64, device: str | torch.device = "cpu") -> OfficialSVQ:
    import argparse
    root = Path(path).expanduser().resolve()
    if not (root / "nlotm.py").is_file():
        raise OfficialUnavailable(f"{root} has no nlotm.py (a checkout of yfw/nlotm?)")
    try:
        import einops  # noqa: F401
    except ImportError:
        raise OfficialUnavailable(f"einops is not installed; the official nlotm.py needs it: {INSTALL_HINT}") from None
    _torchvision_stand_in()
    args_module, *_, nlotm = _import_from(root, SVQ_MODULES)
    parser = argparse.ArgumentParser()
    args_module.add_common_args(parser)
    args = parser.parse_args(["--image_size", str(image_size)])
    torch.manual_seed(0)
    model = nlotm.NlotmImageAutoEncoder(args).to(device)
    groups = [[p for n, p in model.named_parameters() if key in n] for key in ("dvae", "image_encoder", "image_decoder")]
    optimiser = torch.optim.Adam([{"params": g, "lr": lr} for g, lr in zip(groups, (3e-4, 1e-4, 3e-4))])
    return OfficialSVQ(model, args, optimiser)


def official_svq_step(official: OfficialSVQ, images: torch.Tensor, tau: float = 1.0,
                      foreach: bool | None = None) -> Callable[[], None]:
    """train.py's inner-loop body (Adam's `foreach` as in `official_emorl_step`). Images float [B,3,H,W] in [0,1],
    contiguous NCHW as its loader gives them."""
    x, a = images.contiguous(), official.args

    def step() -> None:
        _set_foreach(official.optimiser, foreach)
        official.optimiser.zero_grad()
        _, cross_entropy, mse, _, vq_loss, commitment = official.model(x, tau)
        loss = mse + cross_entropy + a.vq_beta * vq_loss + a.commitment_beta * commitment
        loss.backward()
        torch.nn.utils.clip_grad_norm_(official.model.parameters(), 0.05, "inf")
        official.optimiser.step()

    return step
