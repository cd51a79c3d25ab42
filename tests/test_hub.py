import json

import pytest
import torch

from common.hub import CheckpointError
from common.models import SlotAttentionAutoEncoder, SlotAttentionConfig

CFG = SlotAttentionConfig(resolution=(16, 16), num_slots=3, slot_dim=16, mlp_hidden=32,
                          encoder_channels=(16, 16), decoder_broadcast=(16, 16), decoder_channels=(16, 4),
                          decoder_kernels=(5, 3), decoder_paddings=(2, 1), decoder_strides=(1, 1))


@pytest.fixture
def saved(tmp_path):
    model = SlotAttentionAutoEncoder(CFG)
    model.save_pretrained(tmp_path / "m", metrics={"ari_fg": 0.5, "profile": "smoke"})
    return model, tmp_path / "m"


def test_round_trip_gives_identical_outputs(saved):
    model, path = saved
    loaded = SlotAttentionAutoEncoder.from_pretrained(path)
    assert loaded.config == CFG
    x, noise = torch.rand(2, 3, 16, 16), torch.randn(2, 3, 16)
    model.eval()
    torch.testing.assert_close(loaded(x, noise=noise).recon, model(x, noise=noise).recon, rtol=0, atol=0)


def test_saved_folder_has_card_config_and_metrics(saved):
    _, path = saved
    assert sorted(p.name for p in path.iterdir()) == ["README.md", "config.json", "metrics.json", "model.safetensors"]
    card = (path / "README.md").read_text()
    assert "locatello2020object" in card and "ari_fg" in card
    assert json.loads((path / "metrics.json").read_text())["ari_fg"] == 0.5


def _edit_config(path, **changes):
    cfg = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps(cfg | changes))


def test_unknown_config_key_is_an_error(saved):
    _, path = saved
    _edit_config(path, num_heads=4)
    with pytest.raises(CheckpointError, match="num_heads"):
        SlotAttentionAutoEncoder.from_pretrained(path)


def test_missing_and_unexpected_weights_are_errors(saved, tmp_path):
    import safetensors.torch
    _, path = saved
    state = safetensors.torch.load_file(str(path / "model.safetensors"))
    state.pop("slot_attention.mu")
    state["extra.weight"] = torch.zeros(1)
    safetensors.torch.save_file(state, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing \['slot_attention.mu'\].*unexpected \['extra.weight'\]"):
        SlotAttentionAutoEncoder.from_pretrained(path)


def test_corrupt_weights_give_a_clear_error(saved):
    _, path = saved
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="unreadable safetensors"):
        SlotAttentionAutoEncoder.from_pretrained(path)


def test_shape_mismatch_names_the_tensor(saved):
    _, path = saved
    _edit_config(path, slot_dim=8)
    with pytest.raises(CheckpointError, match="shape mismatch"):
        SlotAttentionAutoEncoder.from_pretrained(path)


def test_output_contract(saved):
    model, _ = saved
    x = torch.rand(2, 3, 16, 16)
    out = model(x)
    out.check(x)
    assert torch.allclose(out.masks.sum(1), torch.ones(2, 1, 16, 16), atol=1e-5)
    with pytest.raises(ValueError, match="recon"):
        type(out)(out.loss, out.recon[:, :2], out.masks, out.slots).check(x)
