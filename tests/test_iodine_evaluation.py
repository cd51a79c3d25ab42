"""IODINE's evaluation: Fig. 8 summaries, Fig. 9 generalisation, Fig. 10 multi-stability."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from common.config import ConfigError
from common.data import tetrominoes
from common.data.registry import generate_split
from common.pipeline import Stage
from papers.iodine.evaluate import Generalisation, IODINEEval, generalisation, summarise
from papers.iodine.model import IODINE, IODINEConfig
from papers.iodine.multistability import (
    AMBIGUOUS,
    EXPLANATIONS,
    explain,
    figure_rows,
    multistability,
)

TETRO = IODINEConfig(resolution=(35, 35), num_slots=4, latent_dim=8, iterations=2, decoder_channels=(8, 4),
                     refine_channels=(8, 8), refine_mlp=(16,))
TILINGS = {  # the two pieces tiling the 2x4-block rectangle at (5, 5) under each explanation
    "I + I": [("I0", 5, 5), ("I0", 10, 5)], "O + O": [("O", 5, 5), ("O", 5, 15)],
    "L + L": [("L1", 5, 5), ("L3", 5, 10)], "J + J": [("J3", 5, 10), ("J1", 5, 5)],
}


@pytest.mark.parametrize("name", list(EXPLANATIONS))
def test_every_explanation_renders_the_same_ambiguous_image(name):
    pieces = [(s, r, c, "red") for s, r, c in TILINGS[name]] + [AMBIGUOUS[2]]
    scene = tetrominoes.compose(pieces)
    assert (scene["image"] == tetrominoes.compose(AMBIGUOUS)["image"]).all()
    relabelled = torch.as_tensor(np.array([7, 3, 0, 5])[scene["mask"]])  # slot ids are arbitrary
    assert explain(relabelled) == name


def test_explain_names_merged_and_other_segmentations():
    assert explain(torch.zeros(35, 35, dtype=torch.long)) == "one slot"
    labels = torch.zeros(35, 35, dtype=torch.long)
    labels[5:15, 5:10] = 1  # one column of blocks against the other six: no tetromino tiling
    assert explain(labels) == "other"


def test_figure_shows_each_explanation_then_other_slot_orderings():
    names = ["one slot", "I + I", "one slot", "I + I", "O + O", "I + I"]
    assignments = [(0,) * 8, (1,) * 4 + (2,) * 4, (3,) * 8, (1,) * 4 + (2,) * 4, (1, 1, 2, 2) * 2, (2,) * 4 + (1,) * 4]
    assert figure_rows(names, assignments) == [0, 1, 4, 2]
    assert figure_rows(names, assignments, n=6) == [0, 1, 4, 2, 5]


def test_multistability_counts_every_run_and_needs_tetrominoes(tmp_path):
    torch.manual_seed(0)
    out = multistability(IODINE(TETRO).eval(), runs=6, seed=0, figure=tmp_path / "m.png")
    assert sum(out["counts"].values()) == 6 and 1 <= out["distinct_slot_assignments"] <= 6
    assert (tmp_path / "m.png").is_file()
    with pytest.raises(ConfigError, match="35px Tetrominoes"):
        multistability(IODINE(IODINEConfig(**{**TETRO.__dict__, "resolution": (32, 32)})), runs=2, seed=0)


def test_summarise_matches_numpy_quantiles():
    v = torch.rand(3, 2, 11)
    rows = summarise({"ari_fg": v[0], "mse": v[1], "kl": v[2]})
    for t, row in enumerate(rows):
        for i, key in enumerate(("ari_fg", "mse", "kl")):
            x = v[i, t].double().numpy()
            assert row[key] == pytest.approx(x.mean())
            assert [row[f"{key}_p25"], row[f"{key}_median"], row[f"{key}_p75"]] == pytest.approx(
                np.percentile(x, [25, 50, 75]))


def test_generalisation_uses_more_slots_on_more_objects_and_restores_k():
    exp = Stage("iodine", "tetrominoes", "smoke").experiment()
    meta, _ = generate_split("tetrominoes", 1, 0)
    model = IODINE(TETRO).eval()
    cfg = IODINEEval(generalisation=Generalisation(params={"num_objects": 4}, n=3, num_slots=6), batch_size=2)
    out = generalisation(model, exp, meta, cfg)
    assert out["num_slots"] == 6 and out["objects"] == [4, 4] and out["n_images"] == 3
    assert model.config.num_slots == 4 and 0.0 <= out["ari_fg_median"] <= 1.0
    with pytest.raises(ConfigError, match="generated dataset"):
        generalisation(model, replace(exp, data=replace(exp.data, path="data/x")), meta, cfg)
