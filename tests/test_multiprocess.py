"""Several processes (gloo on CPU, launched as the README says) against one process on the same global batch."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "multiprocess_run.py"
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _run(out: Path, model: str, processes: int) -> dict:
    launcher = [sys.executable] if processes == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    done = subprocess.run([*launcher, str(SCRIPT), str(out), model], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "result.json").read_text())


def test_two_processes_equal_one_on_the_same_global_batch(tmp_path):
    """Losses (mean over ranks), learning rates (warm-up and decay once per optimiser step, not once per
    process), GECO state and weights match to float tolerance; ranks draw different noise."""
    one, two = _run(tmp_path / "one", "geco", 1), _run(tmp_path / "two", "geco", 2)
    assert (one["processes"], two["processes"]) == (1, 2)
    assert one["lr"] == pytest.approx(two["lr"], rel=1e-12) and len(set(one["lr"])) > 2  # warm-up and decay seen
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-5)
    for key, value in one["state"].items():
        assert two["state"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert one["state"]["geco.steps"] == [4] and one["state"]["geco.zeta"] != [0.55]  # GECO really moved
    noise = [json.loads((tmp_path / "two" / f"noise_{r}.json").read_text()) for r in range(2)]
    assert noise[0] != noise[1]


def test_ema_codebooks_on_two_processes_equal_one_on_the_same_global_batch(tmp_path):
    """SVQ's EMA codebooks count and sum the queries of the global batch: two processes end with the codebooks,
    cluster sizes and weights of one (without the reduction rank 0's half batch alone would move them)."""
    one, two = _run(tmp_path / "one", "codebook", 1), _run(tmp_path / "two", "codebook", 2)
    assert two["processes"] == 2 and two["loss"] == pytest.approx(one["loss"], rel=1e-5)
    for key, value in one["state"].items():
        assert two["state"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


@pytest.mark.parametrize("model", ["iodine", "genesis"])
def test_models_train_on_two_processes(tmp_path, model):
    """IODINE with T = 1 used to leave parameters without gradients, which DDP refuses; GENESIS-v2's GECO
    averages its error over ranks (its official code's multi-GPU pitfall, generative.md §1)."""
    two = _run(tmp_path / "two", model, 2)
    assert two["processes"] == 2 and len(two["loss"]) == 4
    if model == "genesis":
        assert two["state"]["geco.steps"] == [4]


def test_accelerate_launch_cpu_with_several_processes_is_refused(tmp_path):
    from common.config import ConfigError
    from common.train.__main__ import check_launch
    with pytest.raises(ConfigError, match="torchrun --nproc_per_node N"):
        check_launch({"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1"})
    check_launch({"ACCELERATE_USE_CPU": "True"})  # one process asked for: fine
    check_launch({"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "WORLD_SIZE": "2"})  # really two
