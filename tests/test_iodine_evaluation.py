"""IODINE's evaluation: Fig. 8 rows per refinement update, Fig. 9 generalisation, Fig. 10 multi-stability."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.config import ConfigError
from common.data import tetrominoes
from common.data.registry import generate_split
from common.metrics import ari_fg, mse
from common.prob import DiagonalGaussian
from common.train.loop import to_float_images
from papers.iodine.data import Generalisation
from papers.iodine.evaluate import IODINEEval, generalisation, run_iterations, summarise
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


def _tiling(name: str) -> dict:
    return tetrominoes.compose([(s, r, c, "red") for s, r, c in TILINGS[name]] + [AMBIGUOUS[2]])


@pytest.mark.parametrize("name", list(EXPLANATIONS))
def test_every_explanation_renders_the_same_ambiguous_image(name):
    scene = _tiling(name)
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


class _Scripted:
    """A stand-in model whose inference returns the given slot label maps as one-hot masks."""

    def __init__(self, labels: list[np.ndarray]):
        self.config = TETRO
        masks = F.one_hot(torch.as_tensor(np.stack(labels)).long(), 4).permute(0, 3, 1, 2)[:, :, None].float()
        self.its = {"masks": [masks], "means": [torch.rand(len(labels), 4, 3, 35, 35)]}

    def eval(self):
        return self

    def parameters(self):  # inference runs where the parameters are
        return iter([torch.zeros(0)])

    def infer(self, x):
        assert x.shape[0] == len(self.its["masks"][0])  # one run per batch row
        return self.its


def test_multistability_counts_the_explanations_of_each_run_and_needs_tetrominoes(tmp_path):
    ii, oo = _tiling("I + I")["mask"], _tiling("O + O")["mask"]
    swapped = np.array([0, 2, 1, 3])[ii]
    merged = np.where(ii == 2, 1, ii)
    model = _Scripted([ii, ii, swapped, oo, merged])
    out = multistability(model, runs=5, seed=0, figure=tmp_path / "m.png")
    assert out["counts"] == {"I + I": 3, "O + O": 1, "L + L": 0, "J + J": 0, "one slot": 1, "other": 0}
    assert out["explanations_found"] == 2 and out["distinct_slot_assignments"] == 4  # runs 0 and 1 agree
    assert (tmp_path / "m.png").is_file()
    with pytest.raises(ConfigError, match="35px Tetrominoes"):
        multistability(IODINE(IODINEConfig(**{**TETRO.__dict__, "resolution": (32, 32)})), runs=2, seed=0)


def test_summarise_matches_numpy_quantiles():
    v = torch.rand(3, 2, 11)
    rows = summarise({"ari_fg": v[0], "mse": v[1], "kl": v[2]})
    assert [r["iteration"] for r in rows] == [0, 1]
    for t, row in enumerate(rows):
        for i, key in enumerate(("ari_fg", "mse", "kl")):
            x = v[i, t].double().numpy()
            assert row[key] == pytest.approx(x.mean())
            assert [row[f"{key}_p25"], row[f"{key}_median"], row[f"{key}_p75"]] == pytest.approx(
                np.percentile(x, [25, 50, 75]))


def _scenes(n=3, **params):
    meta, batch = generate_split("tetrominoes", n, 0, "test", params)
    return meta, {k: torch.from_numpy(v) for k, v in batch.items()}


def test_row_t_holds_the_metrics_after_t_refinement_updates(monkeypatch):
    """Row 0 is the learned initial posterior decoded; row t is what infer(x, t) ends with."""
    monkeypatch.setattr(DiagonalGaussian, "rsample", lambda self, temperature=1.0: self.mean)
    torch.manual_seed(0)
    model = IODINE(TETRO).eval()
    with torch.no_grad():
        model.lambda1.normal_()
    meta, data = _scenes()
    images, bg = to_float_images(data["image"]), meta.background_ids
    r = run_iterations(model, data, 3, batch_size=2, background=bg, seed=0)
    assert r["mse"].shape == (4, 3)
    means, logits = model.decode(model.lambda1[:8].expand(3, 4, -1))
    masks = logits.softmax(1)
    torch.testing.assert_close(r["mse"][0], mse(images, (masks * means).sum(1)))
    for t in range(4):
        its = model.infer(images, t)
        torch.testing.assert_close(r["mse"][t], mse(images, (its["masks"][-1] * its["means"][-1]).sum(1)))
        torch.testing.assert_close(r["ari_fg"][t], ari_fg(data["mask"], its["masks"][-1], bg))
        torch.testing.assert_close(r["kl"][t], its["kl"][-1])
        if t == TETRO.iterations:  # the probe reads the posterior after the training T updates
            torch.testing.assert_close(r["masks"], its["masks"][-1])
    assert not torch.equal(r["mse"][0], r["mse"][3])


def test_generalisation_uses_more_slots_after_t_updates_and_restores_k():
    meta, data = _scenes(num_objects=4)
    model = IODINE(TETRO).eval()
    cfg = IODINEEval(generalisation=Generalisation(n=3, num_slots=6), batch_size=2, seed=1)
    out = generalisation(model, {"path": "p", "split": "generalisation", "data": data}, meta.background_ids, cfg)
    assert model.config.num_slots == 4  # restored
    assert out["num_slots"] == 6 and out["objects"] == [4, 4] and out["n_images"] == 3
    six = IODINE(IODINEConfig(**{**TETRO.__dict__, "num_slots": 6}))
    six.load_state_dict(model.state_dict())
    expected = summarise(run_iterations(six, data, TETRO.iterations, 2, meta.background_ids, seed=1))[-1]
    assert out["iteration"] == TETRO.iterations and {k: out[k] for k in expected} == expected
