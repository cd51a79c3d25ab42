"""Every experiment config composes under every profile and builds its model (OCLF-style smoke)."""
from pathlib import Path

import pytest

from common.config import PROFILES
from common.train.experiment import build_model, load_experiment

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(ROOT.glob("papers/*/configs/*.yaml")) + [ROOT / "common/models/slot_attention_toy.yaml"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
@pytest.mark.parametrize("profile", PROFILES)
def test_config_composes_and_builds(path, profile):
    exp = load_experiment(path, profile)
    model = build_model(exp)
    assert sum(p.numel() for p in model.parameters()) > 0
    assert path.read_text().startswith("#"), "each config opens with a comment saying what it reproduces"
