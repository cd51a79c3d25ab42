import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch
import yaml
from torch.overrides import TorchFunctionMode

from common.config import ConfigError
from common.hub import CheckpointError
from common.models import SlotAttentionAutoEncoder, SlotAttentionConfig
from common.output import ModelOutput
from common.provenance import provenance, training_record
from common.train import StepSampler, TrainConfig, Trainer, TrainingDiverged, warmup_decay
from common.train.experiment import check_resumable
from common.train.loop import TrainState

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "model": "common.models.slot_attention:SlotAttentionAutoEncoder",
    "model_config": {"resolution": [16, 16], "num_slots": 3, "slot_dim": 16, "mlp_hidden": 32,
                     "encoder_channels": [16, 16], "decoder_broadcast": [16, 16],
                     "decoder_channels": [16, 4], "decoder_kernels": [5, 3], "decoder_paddings": [2, 1],
                     "decoder_strides": [1, 1]},
    "data": {"name": "toy_shapes", "params": {"size": 16, "max_objects": 2}, "n_train": 40, "seed": 1},
    "train": {"steps": 8, "batch_size": 8, "lr": 1e-3, "warmup_steps": 2, "decay_rate": 0.5,
              "decay_steps": 4, "save_every": 4, "log_every": 2},
    "profiles": {"smoke": {"train": {"steps": 8}}},
}


def _cli(tmp_path, *args):
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(TINY))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "common.train", str(config), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def _weights(run):
    return safetensors.torch.load_file(str(run / "model" / "model.safetensors"))


def test_exact_resume_across_processes(tmp_path):
    straight = _cli(tmp_path, "--out", str(tmp_path / "a"))
    assert straight.returncode == 0, straight.stderr
    first = _cli(tmp_path, "--out", str(tmp_path / "b"), "--stop-at", "4")
    assert first.returncode == 0, first.stderr
    assert not (tmp_path / "b" / "model").exists()
    second = _cli(tmp_path, "--out", str(tmp_path / "b"), "--resume")
    assert second.returncode == 0, second.stderr
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    logs = (tmp_path / "b" / "logs" / "train.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in logs] == ["step", "2", "4", "6", "8"]


def test_time_budget_stops_with_a_checkpoint_and_resumes_to_the_same_weights(tmp_path):
    """--max-minutes 0: the first step ends past the budget, so training saves step 1 and exits 3;
    --resume finishes the run bit-exactly as an uninterrupted one."""
    assert _cli(tmp_path, "--out", str(tmp_path / "a")).returncode == 0
    stopped = _cli(tmp_path, "--out", str(tmp_path / "b"), "--max-minutes", "0")
    assert stopped.returncode == 3 and "stopped at step 1 of 8" in stopped.stderr, stopped.stderr
    assert (tmp_path / "b" / "checkpoints" / "step_00000001").is_dir() and not (tmp_path / "b" / "model").exists()
    assert _cli(tmp_path, "--out", str(tmp_path / "b"), "--resume", "--max-minutes", "60").returncode == 0
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cli_refuses_to_overwrite_or_resume_under_a_different_config(tmp_path):
    assert _cli(tmp_path, "--out", str(tmp_path / "a"), "--stop-at", "4").returncode == 0
    again = _cli(tmp_path, "--out", str(tmp_path / "a"))
    assert again.returncode == 2 and "already holds a run" in again.stderr
    changed = _cli(tmp_path, "--out", str(tmp_path / "a"), "--resume", "--set", "train.lr=0.1")
    assert changed.returncode == 2 and "train.lr" in changed.stderr
    unknown = _cli(tmp_path, "--out", str(tmp_path / "c"), "--set", "train.learning_rate=0.1")
    assert unknown.returncode == 2 and "unknown config key 'train.learning_rate'" in unknown.stderr


def test_check_resumable_allows_extending_steps():
    check_resumable({"train": {"steps": 8, "lr": 1.0}}, {"train": {"steps": 16, "lr": 1.0}})
    with pytest.raises(ConfigError, match="train.lr"):
        check_resumable({"train": {"lr": 1.0}}, {"train": {"lr": 2.0}})


class Flaky(SlotAttentionAutoEncoder):
    """Returns a NaN loss on the first `bad` calls at the listed steps: NaN times the loss (NaN gradients),
    or plus a NaN constant (`how="constant"`: the gradients stay finite, only the loss says it is bad)."""

    def __init__(self, config, bad_steps=(), bad=1, how="times"):
        super().__init__(config)
        self.bad_steps, self.remaining = set(bad_steps), {s: bad for s in bad_steps}
        self.after, self.how = 0, how

    def forward(self, images, step=None, noise=None):
        out = super().forward(images, step, noise)
        if step in self.bad_steps and self.remaining[step] > 0:
            self.remaining[step] -= 1
            loss = out.loss * float("nan") if self.how == "times" else out.loss + torch.tensor(float("nan"))
            return ModelOutput(loss, out.recon, out.masks, out.slots, out.logs)
        return out

    def after_step(self, out, ok):
        self.after += int(ok)


def _trainer(tmp_path, model, **train):
    from common.data import generate_split
    cfg = TrainConfig(**{"steps": 8, "batch_size": 8, "save_every": 2, "log_every": 1, **train})
    images = torch.from_numpy(generate_split("toy_shapes", 32, 0, params={"size": 16, "max_objects": 2})[1]["image"])
    return Trainer(model, images, cfg, tmp_path)


def _tiny_model(**kw):
    cfg = SlotAttentionConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in TINY["model_config"].items()})
    return Flaky(cfg, **kw)


@pytest.mark.parametrize("how", ["times", "constant"])
def test_nonfinite_step_is_skipped(tmp_path, how):
    model = _tiny_model(bad_steps=(3,), how=how)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = _trainer(tmp_path, model, steps=4)
    trainer.fit(stop_at=3)
    at3 = {k: v.clone() for k, v in model.state_dict().items()}
    trainer.fit()  # step 3 is NaN: skipped, no update, and after_step not called for it
    assert trainer.state.step == 4 and model.after == 3
    assert all(torch.equal(at3[k], v) for k, v in model.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in at3.items())


HOST_READS = {torch.Tensor.item, torch.Tensor.__bool__, torch.Tensor.__float__, torch.Tensor.__int__,
              torch.Tensor.__index__, torch.Tensor.tolist}


class HostReads(TorchFunctionMode):
    """Records every tensor value read back to Python (each one a host-device sync on a GPU)."""

    def __init__(self):
        super().__init__()
        self.reads = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in HOST_READS:
            self.reads.append(func.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("geco", [False, True])
def test_a_training_step_reads_nothing_back_from_the_device(tmp_path, geco):
    """§ Speed on a GPU: no .item()/bool()/float() in the step, GECO's warm start and update included,
    the skip decision included (a NaN step at step 1); the host reads only at its sync points."""
    from common.data import generate_split
    from papers.emorl.model import EfficientMORL, EMORLConfig
    model = EfficientMORL(EMORLConfig(refinement_steps=1, geco_target=-1.0 if geco else None, geco_warm_start=1))
    images = torch.from_numpy(generate_split("tetrominoes", 8, 0)[1]["image"])
    trainer = Trainer(model, images, TrainConfig(steps=3, batch_size=4, log_every=3, save_every=3), tmp_path)
    probe = HostReads()
    with probe:
        for step in range(2):
            out, ok = trainer.train_step(trainer.batch(step))
            trainer._count(ok)
            model.after_step(out, ok)
            trainer.state.step += 1
    assert probe.reads == []
    assert not trainer._check_nonfinite() and trainer.state.nonfinite == 0
    if geco:  # GECO's Lagrange update really ran (warm start 1: c_ema set at step 1, zeta moved at step 2)
        assert int(model.geco.steps) == 2 and float(model.geco.c_ema) != 0.0


@pytest.mark.parametrize("config", ["papers/emorl/configs/tetrominoes.yaml", "papers/iodine/configs/tetrominoes.yaml",
                                    "papers/sri/configs/shapestacks.yaml", "papers/lom/configs/shapestacks.yaml",
                                    "papers/svq/configs/sprites4.yaml",
                                    "common/models/configs/genesis_v2/shapestacks_mog.yaml"])
def test_no_papers_training_step_reads_the_device(tmp_path, config):
    """Every paper's step, counted below autograd (benchmarks.common.dispatched_ops), so that reads inside PyTorch's
    own operators count too (F.one_hot's class-range check reads twice on the CPU): none."""
    from dataclasses import replace

    from benchmarks.common import dispatched_ops
    from common.data import generate_split
    from common.train.experiment import build_model, load_experiment
    exp = load_experiment(ROOT / config, "smoke")
    torch.manual_seed(0)
    images = torch.from_numpy(generate_split(exp.data.name, 2, exp.data.seed, "train", exp.data.params)[1]["image"])
    trainer = Trainer(build_model(exp), images, replace(exp.train, batch_size=2), tmp_path)
    step = lambda: trainer.train_step(trainer.batch(0))
    step()  # the optimiser's state is made on the first step
    assert dispatched_ops(step)["host_reads"] == 0


def test_repeated_nonfinite_steps_roll_back_to_last_checkpoint(tmp_path):
    model = _tiny_model(bad_steps=(5, 6, 7), bad=1)
    trainer = _trainer(tmp_path, model, max_nonfinite=3, save_every=4)
    trainer.fit()
    assert trainer.state.step == 8 and trainer.state.rollbacks == 1
    steps = [int(r["step"]) for r in trainer.log.rows()]
    assert steps == list(range(1, 9))  # the rows after the checkpoint were dropped and written again, once
    assert [(s["from"], s["to"]) for s in trainer.state.segments] == [(0, 4), (4, 8)]  # 5-7 are not in the record


def test_checkpoints_record_who_trained_which_steps(tmp_path):
    """Every checkpoint (its state and its own training.json) lists each stretch of training (start or resume
    to its stop) with the commit and hardware that ran it; an earlier checkpoint lists only what it had trained."""
    first = _trainer(tmp_path, _tiny_model(), steps=6, save_every=2)
    first.fit(stop_at=3)
    resumed = _trainer(tmp_path, _tiny_model(), steps=6, save_every=2)
    assert resumed.resume() and resumed.state.step == 3
    resumed.fit()
    record = json.loads((tmp_path / "training.json").read_text())
    assert record["step"] == 6 and [(s["from"], s["to"]) for s in record["segments"]] == [(0, 3), (3, 6)]
    now = provenance()
    for s in record["segments"]:
        assert (s["commit"], s["hardware"], s["torch"], s["processes"]) == (now["commit"], now["hardware"],
                                                                            now["torch"], 1)
        assert 0 <= s["seconds"] < 300
    last = tmp_path / "checkpoints" / "step_00000006"
    assert provenance(tmp_path, last)["training"] == training_record(last) == record["segments"]
    assert "training" not in provenance(tmp_path)  # no final model folder, so no record of one
    earlier = _trainer(tmp_path / "elsewhere", _tiny_model(), steps=6)
    earlier.load(tmp_path / "checkpoints" / "step_00000004")
    assert [(s["from"], s["to"]) for s in earlier.state.segments] == [(0, 3), (3, 4)]
    assert earlier.state.segments == training_record(tmp_path / "checkpoints" / "step_00000004")


def test_a_checkpoint_from_before_the_record_says_its_steps_are_unrecorded():
    state = TrainState()
    state.load_state_dict({"step": 5468, "nonfinite": 0, "rollbacks": 0})  # a checkpoint without "segments"
    assert state.segments == [{"from": 0, "to": 5468, "unrecorded": True}]
    state.load_state_dict({"step": 0, "nonfinite": 0, "rollbacks": 0})
    assert state.segments == []


def test_divergence_without_cure_raises(tmp_path):
    model = _tiny_model(bad_steps=(1, 2, 3), bad=100)
    with pytest.raises(TrainingDiverged, match="non-finite"):
        _trainer(tmp_path, model, max_nonfinite=2, save_every=100).fit()


def test_corrupt_checkpoint_gives_clear_error(tmp_path):
    trainer = _trainer(tmp_path, _tiny_model(), steps=2)
    trainer.fit()
    ckpt = trainer.checkpoints()[-1]
    (ckpt / "model.safetensors").write_bytes(b"not a safetensors file")
    fresh = _trainer(tmp_path, _tiny_model(), steps=2)
    with pytest.raises(CheckpointError, match="step_00000002"):
        fresh.resume()


def test_keeps_last_checkpoints_only(tmp_path):
    trainer = _trainer(tmp_path, _tiny_model(), steps=8, save_every=1, keep_last=2)
    trainer.fit()
    assert [p.name for p in trainer.checkpoints()] == ["step_00000007", "step_00000008"]
    assert not list((tmp_path / "checkpoints").glob(".tmp*"))


def test_clip_by_value_bounds_every_gradient(tmp_path):
    trainer = _trainer(tmp_path, _tiny_model(), clip="value", clip_value=1e-4)
    out = trainer.model(trainer.batch(0), step=0)
    trainer.accelerator.backward(out.loss)
    trainer._clip()
    assert max(p.grad.abs().max().item() for p in trainer.model.parameters() if p.grad is not None) <= 1e-4


def test_step_sampler_is_a_function_of_step():
    s = StepSampler(10, 4, seed=3)
    epoch0 = torch.cat([s(0), s(1)])
    assert len(set(epoch0.tolist())) == 8
    assert torch.equal(StepSampler(10, 4, seed=3)(1), s(1))
    halves = [StepSampler(10, 4, 3, rank=r, world=2)(5) for r in range(2)]
    assert sorted(torch.cat(halves).tolist()) == sorted(s(5).tolist())
    with pytest.raises(ValueError, match="divisible"):
        StepSampler(10, 3, 0, world=2)


def test_warmup_decay():
    f = warmup_decay(10, 0.5, 100)
    assert f(4) == pytest.approx(0.5) and f(10) == pytest.approx(1.0) and f(110) == pytest.approx(0.5)
    assert warmup_decay(0, 0.5, 100, decay_after_warmup=False)(100) == pytest.approx(0.5)


def test_slot_attention_learns_on_toy_scenes(tmp_path):
    torch.manual_seed(0)
    model = _tiny_model()
    trainer = _trainer(tmp_path, model, steps=300, batch_size=16, lr=1e-3, save_every=1000, log_every=10)
    trainer.fit()
    rows = trainer.log.rows()
    first = sum(float(r["loss"]) for r in rows[:3]) / 3
    last = sum(float(r["loss"]) for r in rows[-3:]) / 3
    assert last < 0.7 * first  # measured: 0.33 -> 0.17


def test_train_then_evaluate_cli(tmp_path):
    assert _cli(tmp_path, "--out", str(tmp_path / "run")).returncode == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "common.evaluate", "--run", str(tmp_path / "run"), "--n", "20"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    record = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())
    assert record["metrics"]["n_images"] == 20 and -1 <= record["metrics"]["ari_fg"] <= 1
    assert record["profile"] is None and record["steps"] == 8 and record["commit"]
    assert record["data_source"] == "common.data.toy"  # generated in memory by the training command
    assert (tmp_path / "run" / "eval" / "decomposition.png").is_file()
    missing = subprocess.run([sys.executable, "-m", "common.evaluate", "--run", str(tmp_path / "nope")],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "no config.yaml" in missing.stderr


def test_bf16_mixed_precision_trains(tmp_path):
    model, seen = _tiny_model(), []
    model.encoder.register_forward_hook(lambda mod, inputs, out: seen.append(out.dtype))
    trainer = _trainer(tmp_path, model, steps=3, mixed_precision="bf16")
    trainer.fit()
    assert seen and all(d == torch.bfloat16 for d in seen)  # autocast really ran the convs in bf16
    assert trainer.state.step == 3 and all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert float(trainer.log.rows()[-1]["loss"]) < 10


def test_train_and_evaluate_on_a_saved_dataset(tmp_path):
    from common.data import generate_dataset
    data = generate_dataset("tetrominoes", tmp_path / "tet", {"train": 16, "test": 8}, seed=0)
    config = {**TINY, "data": {"path": str(data)}, "train": {**TINY["train"], "steps": 2, "save_every": 2}}
    config["model_config"] = {**TINY["model_config"], "resolution": [35, 35], "decoder_broadcast": [35, 35]}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    train = subprocess.run([sys.executable, "-m", "common.train", str(tmp_path / "exp.yaml"), "--out", str(tmp_path / "run")],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr
    ev = subprocess.run([sys.executable, "-m", "common.evaluate", "--run", str(tmp_path / "run"), "--n", "8"],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert ev.returncode == 0, ev.stderr
    record = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())
    assert record["metrics"]["n_images"] == 8 and record["dataset"] == str(data) and record["eval_split"] == "test"
    assert record["data_source"] == "common.data.tetrominoes"  # the saved scenes' meta.json: a generator's
    assert [(s["from"], s["to"]) for s in record["training"]] == [(0, 2)]  # from the model folder's own record
    assert json.loads((tmp_path / "run" / "data.json").read_text())["source"] == "common.data.tetrominoes"


def test_keep_freed_memory_stops_refaulting_large_activations():
    """After keep_freed_memory(), a step that holds 2.2 GB of 200 MB activations and frees them reuses the
    freed heap (all of it, or all but one block) instead of faulting it in page by page again (glibc's mmap
    above 32 MiB by default). Trimming must be off, not capped: with mallopt's largest threshold (2 GiB, below
    what this step frees) glibc still hands the freed top back and about 540K pages fault again."""
    import subprocess
    import sys
    code = """
import resource, torch
from common.train.memory import keep_freed_memory
assert keep_freed_memory()
def step():  # 11 x 200 MB live at once, freed at the end, as a training step's activations
    xs = [torch.empty(50_000_000).fill_(1.0) for _ in range(11)]
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
start = faults()
step()  # warm-up: the heap grows to the step's peak
before = faults()
step()
print(before - start, faults() - before)
"""
    first, again = map(int, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                           check=True).stdout.split())
    pages = 11 * 200_000_000 // 4096
    assert first > pages // 2  # the count sees faults: the first step faults its pages in
    # At most one of the 11 blocks lands on fresh pages (48,828 faults, 9 %: seen in about one run of three on a
    # 2-core CPU, where the heap's layout varies from run to run); capped trimming usually faults all 537K again.
    assert again < pages // 5


def test_evaluate_a_checkpoint_of_an_unfinished_run(tmp_path, capsys):
    """--checkpoint loads exactly that checkpoint's weights (checksums verified; `latest` the newest), writes
    its own folder with that checkpoint's training record, and says it is a checkpoint of a longer run; a step
    that was not saved is named with those that were."""
    from common.evaluate import load_checkpoint, main
    run = tmp_path / "run"
    assert _cli(tmp_path, "--out", str(run), "--stop-at", "6", "--set", "train.save_every=2").returncode == 0
    for step in (4, 6):
        exp, model, folder = load_checkpoint(run, step)
        saved = safetensors.torch.load_file(str(folder / "model.safetensors"))
        assert folder.name == f"step_{step:08d}" and all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    assert load_checkpoint(run)[2].name == "step_00000006"
    assert main(["--run", str(run), "--checkpoint", "latest", "--n", "8"]) == 0
    record = json.loads((run / "eval" / "step_00000006" / "metrics.json").read_text())
    assert (record["checkpoint"], record["steps"], record["of_steps"]) == (6, 6, 8)
    assert [(s["from"], s["to"]) for s in record["training"]] == [(0, 6)] and record["data_source"] == "common.data.toy"
    assert main(["--run", str(run), "--checkpoint", "5"]) == 2
    assert "no checkpoint at step 5 (saved: 2, 4, 6)" in capsys.readouterr().err
    from common.train.loop import CHECKSUMS, _checksums
    ddp = run / "checkpoints" / "step_00000002"  # as a DistributedDataParallel run saves it: "module." keys
    weights = safetensors.torch.load_file(str(ddp / "model.safetensors"))
    safetensors.torch.save_file({f"module.{k}": v for k, v in weights.items()}, str(ddp / "model.safetensors"))
    (ddp / CHECKSUMS).write_text(json.dumps(_checksums(ddp)))
    loaded = load_checkpoint(run, 2)[1].state_dict()
    assert all(torch.equal(weights[k], v) for k, v in loaded.items())
    (run / "checkpoints" / "step_00000004" / "model.safetensors").write_bytes(b"changed")
    assert main(["--run", str(run), "--checkpoint", "4"]) == 2
    assert "SHA-256 mismatch" in capsys.readouterr().err
