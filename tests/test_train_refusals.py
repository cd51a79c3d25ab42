"""Bad values, bad resumes and damaged checkpoints: one clear line, exit 2, nothing written (#12)."""
import copy
import json
from pathlib import Path

import pytest
import yaml

from common.train.__main__ import main
from test_train import TINY

ROOT = Path(__file__).resolve().parents[1]


def _train(tmp_path, config: dict, *args) -> int:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config) if isinstance(config, dict) else config)
    return main([str(path), *args])


def _with(**changes) -> dict:
    """TINY with dotted keys replaced ("train.clip": "nrm"); a value None deletes the key."""
    config = copy.deepcopy(TINY)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = config
        for p in parents:
            node = node[p]
        if value is None:
            del node[leaf]
        else:
            node[leaf] = value
    return config


BAD = {
    "clip": (_with(**{"train.clip": "nrm"}), "'train.clip' expects one of 'norm', 'value', 'inf', 'none', got 'nrm'"),
    "negative steps": (_with(**{"train.steps": -3}), "'train.steps' must be >= 1, got -3"),
    "save_every 0": (_with(**{"train.save_every": 0}), "'train.save_every' must be >= 1, got 0"),
    "batch 0": (_with(**{"train.batch_size": 0}), "'train.batch_size' must be >= 1, got 0"),
    "fp8": (_with(**{"train.mixed_precision": "fp8"}), "'train.mixed_precision' expects one of 'no', 'bf16'"),
    "fp16": (_with(**{"train.mixed_precision": "fp16"}),
             "'train.mixed_precision' expects one of 'no', 'bf16', got 'fp16'"),
    "lists": (_with(**{"model_config.decoder_kernels": [5]}),
              "decoder layer lists differ in length: channels 2, kernels 1, paddings 2, strides 2"),
    "no model": (_with(model=None), "config has no 'model'"),
    "resolution": (_with(**{"model_config.resolution": [32, 32], "model_config.decoder_broadcast": [32, 32]}),
                   "model_config.resolution (32, 32) does not match the training images, which are 16x16"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_values_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, case):
    config, message = BAD[case]
    assert _train(tmp_path, config, "--out", str(tmp_path / "run")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1], err
    assert not (tmp_path / "run").exists()


def test_unquoted_no_for_mixed_precision_says_how_to_write_it(tmp_path, capsys):
    text = yaml.safe_dump(_with(**{"train.mixed_precision": "MP"})).replace("mixed_precision: MP", "mixed_precision: no")
    assert _train(tmp_path, text, "--out", str(tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert "'train.mixed_precision' expects one of 'no', 'bf16', got False" in err and "quote it" in err
    assert not (tmp_path / "run").exists()


def test_malformed_set_value_names_the_key(tmp_path, capsys):
    assert _train(tmp_path, TINY, "--out", str(tmp_path / "run"), "--set", "train.betas=[0.9,") == 2
    assert "--set train.betas: override value '[0.9,' is not valid YAML" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_run_that_failed_before_its_first_checkpoint_does_not_block_a_rerun(tmp_path):
    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(TINY))
    (run / "logs" / "train.tsv").write_text("step\tloss\n2\t9.0\n")  # rows of the failed attempt
    assert _train(tmp_path, TINY, "--out", str(run)) == 0
    steps = [r.split("\t")[0] for r in (run / "logs" / "train.tsv").read_text().splitlines()[1:]]
    assert steps == ["2", "4", "6", "8"]  # the stale row is gone: no duplicates


def test_resume_refuses_fewer_steps_than_trained(tmp_path, capsys):
    assert _train(tmp_path, TINY, "--out", str(tmp_path / "run")) == 0
    assert _train(tmp_path, TINY, "--out", str(tmp_path / "run"), "--resume", "--set", "train.steps=4") == 2
    err = capsys.readouterr().err
    assert "refusing to resume with train.steps=4" in err and "already trained 8 steps" in err


def test_resume_refuses_other_data_behind_the_same_path(tmp_path, capsys):
    from common.data import generate_dataset
    data = tmp_path / "data"
    generate_dataset("toy_shapes", data, {"train": 40, "test": 8}, seed=0, params={"size": 16, "max_objects": 2})
    config = _with(data={"path": str(data)})
    assert _train(tmp_path, config, "--out", str(tmp_path / "run"), "--stop-at", "4") == 0
    record = json.loads((tmp_path / "run" / "data.json").read_text())
    assert len(record["sha256"]) == 64 and record["shape"] == [40, 16, 16, 3]
    import shutil
    shutil.rmtree(data)
    generate_dataset("toy_shapes", data, {"train": 40, "test": 8}, seed=1, params={"size": 16, "max_objects": 2})
    assert _train(tmp_path, config, "--out", str(tmp_path / "run"), "--resume") == 2
    assert "the training data changed since this run started" in capsys.readouterr().err


def test_resume_follows_the_same_data_to_another_folder(tmp_path, capsys):
    """A run carried to another machine finds its data elsewhere: the same images resume, others are refused."""
    import shutil

    from common.data import generate_dataset
    first, moved, other = tmp_path / "first", tmp_path / "moved", tmp_path / "other"
    generate_dataset("toy_shapes", first, {"train": 40, "test": 8}, seed=0, params={"size": 16, "max_objects": 2})
    generate_dataset("toy_shapes", other, {"train": 40, "test": 8}, seed=1, params={"size": 16, "max_objects": 2})
    assert _train(tmp_path, _with(data={"path": str(first)}), "--out", str(tmp_path / "run"), "--stop-at", "4") == 0
    shutil.move(first, moved)
    assert _train(tmp_path, _with(data={"path": str(other)}), "--out", str(tmp_path / "run"), "--resume") == 2
    assert "the training data changed since this run started" in capsys.readouterr().err
    (tmp_path / "run" / "data.json").rename(tmp_path / "data.json")  # a run from before data.json existed
    assert _train(tmp_path, _with(data={"path": str(moved)}), "--out", str(tmp_path / "run"), "--resume") == 2
    assert "has no data.json to check the images against" in capsys.readouterr().err
    (tmp_path / "data.json").rename(tmp_path / "run" / "data.json")
    assert _train(tmp_path, _with(data={"path": str(moved)}), "--out", str(tmp_path / "run"), "--resume") == 0
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["data"]["path"] == str(moved)
    assert (tmp_path / "run" / "model").is_dir()


def _stopped_run(tmp_path) -> Path:
    assert _train(tmp_path, TINY, "--out", str(tmp_path / "run"), "--stop-at", "4") == 0
    return tmp_path / "run" / "checkpoints" / "step_00000004"


def test_a_flipped_bit_in_a_checkpoint_is_an_error(tmp_path, capsys):
    ckpt = _stopped_run(tmp_path)
    raw = bytearray((ckpt / "model.safetensors").read_bytes())
    raw[-3] ^= 0x10  # inside the last tensor's data: still a readable safetensors file
    (ckpt / "model.safetensors").write_bytes(bytes(raw))
    assert _train(tmp_path, TINY, "--out", str(tmp_path / "run"), "--resume") == 2
    assert "model.safetensors changed or missing since it was saved (SHA-256 mismatch)" in capsys.readouterr().err


def test_a_checkpoint_without_rng_state_is_refused(tmp_path, capsys):
    ckpt = _stopped_run(tmp_path)
    (ckpt / "random_states_0.pkl").unlink()
    sums = json.loads((ckpt / "checksums.json").read_text())
    del sums["random_states_0.pkl"]
    (ckpt / "checksums.json").write_text(json.dumps(sums))
    assert _train(tmp_path, TINY, "--out", str(tmp_path / "run"), "--resume") == 2
    assert "no RNG state for process 0" in capsys.readouterr().err


def test_from_pretrained_of_a_missing_local_folder_fails_at_once(tmp_path, monkeypatch):
    from common.hub import CheckpointError
    from common.models import SlotAttentionAutoEncoder
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(CheckpointError, match="runs/typo: no such local folder"):
        SlotAttentionAutoEncoder.from_pretrained("runs/typo")


def test_from_pretrained_names_a_malformed_config_json(tmp_path):
    from common.hub import CheckpointError
    from common.models import SlotAttentionAutoEncoder
    from test_train import _tiny_model
    _tiny_model().save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"m/config.json: not valid JSON"):
        SlotAttentionAutoEncoder.from_pretrained(tmp_path / "m")
