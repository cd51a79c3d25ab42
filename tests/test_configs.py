"""Every experiment config composes under every profile, builds the model it names with exactly the
settings it writes, and that model runs on one scene of the config's own data (OCLF-style smoke)."""
from pathlib import Path

import pytest
import torch

from common.config import PROFILES, load_yaml
from common.data import generate_split
from common.train.experiment import build_model, load_experiment
from common.train.loop import to_float_images

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(ROOT.glob("papers/*/configs/*.yaml")) + sorted(ROOT.glob("common/models/configs/*/*.yaml")) + \
    [ROOT / "common/models/slot_attention_toy.yaml"]


def _as_config_value(v):
    return tuple(_as_config_value(x) for x in v) if isinstance(v, list) else v


def _assert_written(config, written: dict, where: str = "model_config") -> None:
    """Every key the YAML writes is the model's value, recursing into nested configs (SRI's backbone)."""
    for key, value in written.items():
        if isinstance(value, dict):
            _assert_written(getattr(config, key), value, f"{where}.{key}")
        else:
            assert getattr(config, key) == _as_config_value(value), f"{where}.{key}"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
@pytest.mark.parametrize("profile", PROFILES)
def test_config_composes_and_builds_what_it_writes(path, profile):
    assert path.read_text().startswith("#"), "each config opens with a comment saying what it reproduces"
    exp = load_experiment(path, profile)
    if exp.eval.get("run_of"):  # an evaluation of another config's run (EMORL's CLEVR10)
        trained = load_experiment(path.with_name(f"{exp.eval['run_of']}.yaml"), profile)
        assert not exp.model_config and exp.data.n_train == 0 and trained.data.n_train > 0
        assert exp.model == trained.model and exp.data.params["size"] == trained.data.params["size"]
        return
    _assert_written(build_model(exp).config, exp.model_config)


@pytest.mark.parametrize("path", [p for p in CONFIGS if "data" in load_yaml(p) and "path" not in load_yaml(p)["data"]
                                  and not load_yaml(p).get("eval", {}).get("run_of")],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_config_model_runs_on_its_own_data(path):
    """Evaluation's forward, then one training step: the loss's backward reaches the parameters and the
    model's own after-step update (GECO) takes it."""
    exp = load_experiment(path, "smoke")
    _, batch = generate_split(exp.data.name, 1, exp.data.seed, exp.data.eval_split, exp.data.params)
    images = to_float_images(torch.from_numpy(batch["image"]))
    torch.manual_seed(0)
    model = build_model(exp).eval()
    with torch.no_grad():
        out = model(images)
    out.check(images)  # recon, masks and slots shaped for this data's resolution
    slots = getattr(model, "num_slots", None) or model.config.num_slots  # SRI: its backbone's K
    assert out.masks.shape[1] == slots
    out = model.train()(images)
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    if hasattr(model, "after_step"):
        model.after_step(out)
