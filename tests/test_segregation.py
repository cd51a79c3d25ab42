"""The segregation interface that SRI and LOM consume, implemented by GENESIS-v2 and EfficientMORL."""
import pytest
import torch

from common.models.genesis_v2 import GenesisV2, GenesisV2Config
from common.models.segregation import Segregation, Segregator
from papers.emorl.model import EfficientMORL, EMORLConfig

BACKBONES = {
    "genesis_v2": lambda: GenesisV2(GenesisV2Config(resolution=(32, 32), num_slots=4, feat_dim=16)),
    "emorl": lambda: EfficientMORL(EMORLConfig(resolution=(32, 32), num_slots=4, slot_dim=16,
                                               encoder_channels=(8, 8), refinement_steps=2)),
}


@pytest.mark.parametrize("name", list(BACKBONES))
def test_backbones_give_their_posterior_the_decoded_sample_and_their_own_loss(name):
    model = BACKBONES[name]()
    assert isinstance(model, Segregator) and (model.num_slots, model.slot_dim) == (4, 16)
    x = torch.rand(2, 3, 32, 32)
    torch.manual_seed(0)
    seg = model.segregate(x)
    assert isinstance(seg, Segregation)
    assert seg.mean.shape == seg.std.shape == seg.sample.shape == (2, 4, 16) and (seg.std > 0).all()
    rgb, log_m = model.decode(seg.sample)  # the sample is the one behind the backbone's reconstruction
    torch.testing.assert_close((log_m.exp() * rgb).sum(1), seg.output.recon)
    torch.manual_seed(0)
    out = model(x)  # forward is the same pass: the loss SRI and LOM add to theirs
    torch.testing.assert_close(out.loss, seg.output.loss)
    torch.testing.assert_close(seg.output.slots, seg.mean)
