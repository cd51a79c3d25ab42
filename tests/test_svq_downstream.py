"""SVQ's downstream tasks (papers/svq/downstream.py, Tables 4-5): labels against hand-computed scenes, the OOD split,
frozen representations, slot tokens without order, and the steps-to-98 % bookkeeping."""
import numpy as np
import pytest
import torch

from papers.svq.downstream import (PROPERTIES, DownstreamConfig, build, combinations, fit, hold_out, odd_quadrant,
                                   property_label, represent)
from papers.svq.model import SVQ, SVQConfig
from papers.svq.vqvae import VQVAE, VQVAEConfig


def _scenes(objects: list[list[tuple[int, int, int]]], k: int = 3) -> dict:
    """Scenes of (shape, colour, material) objects, padded to k objects."""
    out = {"num_objects": np.array([len(o) for o in objects])}
    for p, name in enumerate(PROPERTIES):
        out[f"factor.{name}"] = np.array([[o[p] for o in objs] + [0] * (k - len(objs)) for objs in objects])
    return out


def test_property_label_is_the_sum_of_the_maxima_as_the_papers_example():
    # §5.2.2: matte = 0, shiny = 1, red = 5, blue = 3, cylinder = 4, sphere = 6; a matte red cylinder and a shiny
    # blue sphere -> (1, 5, 6) -> 12. Value indices: shape cylinder 0, sphere 1; colour red 0, blue 1; material
    # matte 0, shiny 1.
    numbers = {"shape": np.array([4, 6]), "colour": np.array([5, 3]), "material": np.array([0, 1])}
    scenes = _scenes([[(0, 0, 0), (1, 1, 1)], [(0, 1, 0)], [(1, 1, 0), (1, 1, 0), (0, 1, 0)]])
    scenes["factor.colour"][1, 1:] = 0  # padding (red) past num_objects must not count
    assert property_label(scenes, numbers).tolist() == [12, 4 + 3 + 0, 6 + 3 + 0]


def test_no_held_out_combination_is_in_the_id_scenes():
    rng = np.random.default_rng(0)
    objects = [[tuple(int(v) for v in rng.integers((3, 20, 2))) for _ in range(rng.integers(1, 4))] for _ in range(400)]
    scenes = _scenes(objects)
    held, ood = hold_out(scenes, 10, seed=0)
    assert len(held) == 10 and ood.any() and (~ood).any()
    combos = combinations(scenes)
    assert all(not (combos[i] & held) for i in np.flatnonzero(~ood))  # ID: none of them
    assert all(combos[i] & held for i in np.flatnonzero(ood))  # OOD: at least one
    again, _ = hold_out(scenes, 10, seed=0)
    assert again == held
    with pytest.raises(ValueError, match="cannot hold out"):
        hold_out(_scenes([[(0, 0, 0)]]), 1, seed=0)


def test_odd_quadrant_reads_the_odd_objects_quadrant():
    scenes = {"factor.odd": np.array([[0, 0, 1, 0], [1, 0, 0, 0]]), "factor.quadrant": np.array([[3, 1, 2, 0], [1, 0, 2, 3]])}
    assert odd_quadrant(scenes).tolist() == [2, 1]


def _models():
    torch.manual_seed(0)
    svq = SVQ(SVQConfig(resolution=(16, 16), num_slots=3, blocks=2, block_dim=4, codebook_size=4, cnn_hidden=8,
                        feature_dim=8, mlp_hidden=8, vocab=8, dvae_hidden=8, d_model=16, decoder_layers=1, heads=2))
    sysbinder = SVQ(SVQConfig(resolution=(16, 16), num_slots=3, blocks=2, block_dim=4, quantise=False, cnn_hidden=8,
                              feature_dim=8, mlp_hidden=8, vocab=8, dvae_hidden=8, d_model=16, decoder_layers=1, heads=2))
    vqvae = VQVAE(VQVAEConfig(resolution=(16, 16), channels=8, res_blocks=1, codebook_size=4, code_dim=4))
    return {"svq": svq.eval(), "sysbinder": sysbinder.eval(), "vqvae": vqvae.eval()}


@pytest.mark.parametrize("name", ["dVAE", "VQ-VAE Indices", "VQ-VAE Codebook", "SysBinder", "SVQ Indices",
                                  "SVQ Codebook"])
def test_downstream_models_train_on_frozen_representations(name):
    models = _models()
    images = torch.randint(0, 256, (6, 16, 16, 3), dtype=torch.uint8)
    feats = represent(name, models, images, batch_size=4)
    assert not feats.requires_grad
    expected = {"dVAE": (6, 16), "VQ-VAE Indices": (6, 16), "VQ-VAE Codebook": (6, 16, 4), "SysBinder": (6, 3, 8),
                "SVQ Indices": (6, 3, 2), "SVQ Codebook": (6, 3, 8)}[name]
    assert tuple(feats.shape) == expected
    c = DownstreamConfig(layers=1, d_model=16, ffn=32, heads=2, batch_size=4, steps=2, eval_every=1)
    model = build(c, name, feats, 4, models)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    fit(c, model, (feats, labels), (feats, labels), (feats, labels), torch.device("cpu"))
    assert all(p.grad is None for m in models.values() for p in m.parameters())  # nothing reached the pretrained
    assert any(p.grad is not None for p in model.parameters())
    if name in ("SysBinder", "SVQ Indices", "SVQ Codebook"):  # slots: orderless tokens
        model.eval()
        torch.testing.assert_close(model(feats), model(feats[:, [2, 0, 1]]))


def test_steps_to_target_is_the_first_validation_at_or_above_it():
    torch.manual_seed(0)
    labels = torch.arange(64) % 4
    feats = torch.nn.functional.one_hot(labels, 4).float()[:, None] * 5  # [64,1,4]: trivially separable
    c = DownstreamConfig(layers=1, d_model=16, ffn=32, heads=2, batch_size=32, steps=300, eval_every=20, lr=3e-3,
                         dropout=0.0)
    model = build(c, "SysBinder", feats, 4, {})
    r = fit(c, model, (feats, labels), (feats, labels), (feats[:0], labels[:0]), torch.device("cpu"))
    first = next(p["step"] for p in r["curve"] if p["val_accuracy"] >= 0.98)
    assert r["steps_to_target"] == first and r["id_accuracy"] == 1.0 and r["ood_accuracy"] is None
    assert [p["step"] for p in r["curve"]][:2] == [20, 40]
