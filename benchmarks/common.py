"""Timing helpers: median wall time of a callable after warm-up, on CPU or CUDA; a full training step through
the shared Trainer; peak memory."""
from __future__ import annotations

import ctypes
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from common.train import TrainConfig, Trainer


def seconds(fn: Callable[[], object], clock: Callable[[], float] = time.perf_counter) -> float:
    """Wall time of one call of `fn` (CUDA work finished on both sides of it)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    tic = clock()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return clock() - tic


def median_seconds(fn: Callable[[], object], repeats: int = 10, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    return statistics.median(seconds(fn) for _ in range(repeats))


def gflop(fn: Callable[[], object]) -> float:
    """Floating-point operations of one call of `fn`, in GFLOP, as torch's FlopCounterMode counts them:
    matrix products and convolutions, forward and backward (the passes that need not run are not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


# Operators that only reinterpret or allocate memory, or only compute on the host (no kernel runs on a GPU for them).
VIEWS = frozenset({"view", "_unsafe_view", "_reshape_alias", "reshape", "t", "transpose", "permute", "expand",
                   "select", "slice", "unsqueeze", "squeeze", "as_strided", "alias", "detach", "split", "unbind",
                   "chunk", "split_with_sizes", "empty", "empty_like", "empty_strided", "lift_fresh",
                   "promote_types", "_record_function_enter_new", "_record_function_exit"})
HOST_READ = "_local_scalar_dense"  # .item(), bool(), float() or int() of a tensor: on a GPU, the host waits for it


def dispatched_ops(fn: Callable[[], object], host_counters: Sequence[torch.optim.Optimizer] = ()) -> dict:
    """Operators one call of `fn` dispatches, forward and backward: all of them, and the `kernels` (those that
    compute; a GPU launches at least one kernel for each), and the `host_reads` among them (each makes the host wait
    until the GPU has run everything queued before it). On a GPU, a step of small tensors costs about the launch
    overhead times `kernels`, whatever its FLOPs, and more where host reads keep the host from launching ahead.
    Counted on a CPU these approximate a GPU's: there a few composite operators (the GRU and LSTM cells) run
    fused, and F.one_hot skips its range check.
    In the steps of `host_counters`, operators on 0-dim tensors alone count as neither: PyTorch's default
    (non-capturable) Adam keeps its step counts on the host even on a GPU, where adding to and reading them launches
    nothing and waits for nothing, while on the CPU they look like any other kernel and read. Call `fn` once before
    counting, so that the optimiser's state exists."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.n, self.kernels, self.host_reads, self.in_counter_step = 0, 0, 0, False

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            on_host = self.in_counter_step and _scalars_only(args, kwargs)
            self.n += 1
            self.kernels += name not in VIEWS and not on_host
            self.host_reads += name == HOST_READ and not on_host
            return func(*args, **(kwargs or {}))

    counted = Count()
    hooks = [h for opt in host_counters for h in (
        opt.register_step_pre_hook(lambda *_: setattr(counted, "in_counter_step", True)),
        opt.register_step_post_hook(lambda *_: setattr(counted, "in_counter_step", False)))]
    try:
        with counted:
            fn()
    finally:
        for h in hooks:
            h.remove()
    return {"ops": counted.n, "kernels": counted.kernels, "host_reads": counted.host_reads}


def _scalars_only(args, kwargs) -> bool:
    """Whether an operator's tensor arguments are all 0-dim (and there is at least one)."""
    from torch.utils._pytree import tree_leaves
    tensors = [a for a in tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
    return bool(tensors) and all(a.dim() == 0 for a in tensors)


def matmul_gflop_per_s(n: int = 2048, repeats: int = 5) -> float:
    """This machine's fp32 rate on one large matrix product (n x n): a practical ceiling for the GFLOP/s
    of convolution-bound steps."""
    a, b = (torch.randn(n, n, device="cuda" if torch.cuda.is_available() else "cpu") for _ in range(2))
    return 2 * n**3 / median_seconds(lambda: a @ b, repeats, warmup=1) / 1e9


def json_in_subprocess(module: str, *args: str) -> dict:
    """Run `python -m <module> ARGS` in a fresh process (Accelerate's state is per process) from the repository
    root and read the JSON object on its last line; {"error": its last stderr line} when it fails."""
    out = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    if out.returncode:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    """Markdown table over every key of any row, in first-seen order (a row without a key, e.g. one that
    failed and holds only "error", leaves that cell empty)."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r[k]) if k in r else "" for k in keys) + " |")
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.4g}"
    return str(v)


def _status_kb(field: str) -> int:
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field + ":"))
    return int(line.split()[1])


def cpu_peak_gb(fn: Callable[[], object]) -> float | None:
    """Peak resident memory above the resting level while `fn` runs, in GiB (Linux): free heap pages
    go back to the OS (malloc_trim), the high-water mark is reset (clear_refs 5), then VmHWM is read.
    None where /proc or glibc do not allow it."""
    try:
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        base = _status_kb("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")
    except (OSError, StopIteration):
        return None
    fn()
    return (_status_kb("VmHWM") - base) / 2**20


def peak_gb(fn: Callable[[], object]) -> float | None:
    """Peak memory of one call of `fn` in GiB: allocated GPU memory where there is a GPU, else `cpu_peak_gb`."""
    if not torch.cuda.is_available():
        return cpu_peak_gb(fn)
    torch.cuda.reset_peak_memory_stats()
    fn()
    return torch.cuda.max_memory_allocated() / 2**30


def forward_timings(model, x: torch.Tensor, repeats: int, **kwargs) -> dict:
    """Median seconds of a no-grad forward and of forward + backward of `loss`; peak GB of forward +
    backward (allocated on a GPU; resident memory above the resting level on a CPU)."""
    def forward():
        with torch.no_grad():
            model(x, **kwargs)

    def forward_backward():
        model.zero_grad(set_to_none=True)
        model(x, **kwargs).loss.backward()

    out = {"fwd s": median_seconds(forward, repeats, 1), "fwd+bwd s": median_seconds(forward_backward, repeats, 1)}
    if x.is_cuda:
        torch.cuda.reset_peak_memory_stats()
        forward_backward()
        out["peak GB"] = torch.cuda.max_memory_allocated() / 2**30
    else:
        out["peak GB"] = cpu_peak_gb(forward_backward)
    return out


def trainer_step(model, images: torch.Tensor, batch_size: int, out: str | Path, **train) -> Callable[[], None]:
    """One full optimiser step of `model` through the shared Trainer (forward, backward, Adam, the model's
    after_step: GECO) on the first batch of `images` (uint8 [N,H,W,3]); checkpoints would go to `out`.
    `train`: TrainConfig fields beyond the defaults (lr 1e-4, no clipping)."""
    trainer = Trainer(model, images, TrainConfig(**{"batch_size": batch_size, "lr": 1e-4, "clip": "none", **train}), out)
    batch = trainer.batch(0)

    def step() -> None:
        output, ok = trainer.train_step(batch)
        if hasattr(model, "after_step"):
            model.after_step(output, ok)

    return step


def trainer_step_seconds(model, images: torch.Tensor, batch_size: int, repeats: int, warmup: int) -> float:
    """Median seconds of `trainer_step`."""
    with tempfile.TemporaryDirectory() as out:
        return median_seconds(trainer_step(model, images, batch_size, out), repeats, warmup)
