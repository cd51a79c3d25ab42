import torch
from PIL import Image

from common.viz import colour_masks, save_decomposition, save_samples


def test_decomposition_grid_layout(tmp_path):
    images, masks = torch.rand(2, 3, 8, 8), torch.rand(2, 4, 1, 8, 8).softmax(1)
    path = save_decomposition(tmp_path / "d.png", images, images, masks, torch.rand(2, 4, 3, 8, 8), scale=1)
    assert Image.open(path).size == (7 * 10 + 2, 2 * 10 + 2)  # 3 + K columns, one row per image


def test_colour_masks_uses_the_argmax_slot():
    masks = torch.zeros(1, 3, 1, 2, 2)
    masks[0, 2] = 1
    assert torch.allclose(colour_masks(masks)[0, :, 0, 0], colour_masks(masks)[0, :, 1, 1])


def test_samples_grid_pads_last_row(tmp_path):
    path = save_samples(tmp_path / "s.png", torch.rand(5, 3, 4, 4), per_row=4, scale=1)
    assert Image.open(path).size == (4 * 6 + 2, 2 * 6 + 2)
