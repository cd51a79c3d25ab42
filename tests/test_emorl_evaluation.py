"""EfficientMORL's evaluation protocol (App. E.2, §4.2, Fig. 7): what each reported number is made of."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from common.data import FactorSpec, SceneMeta
from common.prob import DiagonalGaussian
from papers.emorl.evaluate import EMORLEval, disentanglement, run_model, summary
from papers.emorl.model import EfficientMORL, EMORLConfig

ROOT = Path(__file__).resolve().parents[1]
TINY = EMORLConfig(resolution=(16, 16), num_slots=3, slot_dim=8, encoder_channels=(8, 8), decoder="small")


def _scenes(n=6, seed=0):
    """Two square objects per 16x16 scene on background 0; factor x = the square's left column."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(n, 16, 16, dtype=torch.uint8)
    x = torch.zeros(n, 2)
    for i in range(n):
        for j, top in enumerate((1, 9)):
            left = int(torch.randint(0, 10, (1,), generator=g))
            mask[i, top:top + 5, left:left + 5] = j + 1
            x[i, j] = left
    image = (mask[..., None].repeat(1, 1, 1, 3) * 100).to(torch.uint8)
    return {"image": image, "mask": mask, "visibility": torch.ones(n, 2, dtype=torch.uint8), "factor.x": x}


class Oracle(torch.nn.Module):
    """Stands in for EfficientMORL: its masks are the ground truth, its means a one-hot slot code."""

    def __init__(self, masks: torch.Tensor, k: int = 3):
        super().__init__()
        self.device_anchor = torch.nn.Parameter(torch.zeros(0))  # evaluation runs where the parameters are
        self.masks = F.one_hot(masks.long(), k).permute(0, 3, 1, 2)[:, :, None].float()  # [N,K,1,H,W]
        self.config, self.seen = EMORLConfig(resolution=(16, 16), num_slots=k, slot_dim=k), 0

    def infer(self, images, steps):
        m = self.masks[self.seen:self.seen + len(images)]
        self.seen += len(images)
        lam = torch.eye(self.config.num_slots).repeat(len(images), 1, 2)  # [B,K,2K]
        kl = [torch.full((len(images),), float(i)) for i in range(steps + 1)]
        return {"log_masks": [m.clamp_min(1e-12).log()], "rgb": [images[:, None].expand(-1, 3, -1, -1, -1)],
                "lambda": [lam], "kl": kl, "kl_refinement": kl}

    def decode(self, z):
        b = z.shape[0]
        return None, self.masks[self.seen - b:self.seen].clamp_min(1e-12).log()


def test_oracle_masks_score_ari_fg_one_through_the_evaluation():
    data = _scenes()
    cfg = EMORLEval(batch_size=4, ari_upsample=32)  # 2x, as 96 -> 192 px
    r = run_model(Oracle(data["mask"]), data, 1, cfg, (0,))
    s = summary(r)
    assert s["ari_fg"] == 1.0 and s["ari_fg_upsampled"] == 1.0 and s["mse"] == 0.0 and s["n_images"] == 6
    assert "ari_fg_std" not in s and s["ari_fg_std_over_images"] == 0.0  # never a per-image std shown as ±
    wrong = Oracle(torch.roll(data["mask"], 3, dims=2))  # masks shifted by 3 columns
    assert summary(run_model(wrong, data, 1, cfg, (0,)))["ari_fg"] < 0.9


def test_kl_is_the_same_quantity_at_every_test_time_i():
    """kl: KL(q(z^{L,i}) || p(z^1 | z^2)) for every i, I = 0 included; kl_objective: the loss's term,
    the hierarchy's sum over L layers at I = 0."""
    torch.manual_seed(0)
    model = EfficientMORL(TINY).eval()
    x = torch.rand(2, 3, 16, 16)
    data = {"image": (x.permute(0, 2, 3, 1) * 255).to(torch.uint8), "mask": torch.zeros(2, 16, 16, dtype=torch.uint8)}
    images = data["image"].permute(0, 3, 1, 2).float() / 255
    for steps in (0, 2):
        r = run_model(model, data, steps, EMORLEval(seed=3), (0,))
        torch.manual_seed(3)
        its = model.infer(images, steps)
        kl_layers, refine_prior = model.hierarchical_kl(its["posteriors"], its["samples"])
        q = its["posteriors"][-1] if steps == 0 else DiagonalGaussian.from_params(*its["lambda"][-1].chunk(2, -1))
        torch.testing.assert_close(r["kl"], q.kl(refine_prior).sum((1, 2)).detach())
        torch.testing.assert_close(r["kl_objective"], (kl_layers if steps == 0 else r["kl"]).detach())
        if steps == 0:  # the loss's term sums three layers: not the quantity reported at I >= 1
            assert (r["kl_objective"] > r["kl"]).all()


def test_dci_matches_slots_with_the_masks_decoded_from_the_means():
    data = _scenes(n=24)
    data["factor.row"] = torch.tensor([[0, 1]]).repeat(24, 1)
    oracle = F.one_hot(data["mask"].long(), 3).permute(0, 3, 1, 2)[:, :, None].float()  # [N,K,1,H,W]
    meta = SceneMeta("squares", "test", "1", (16, 16), 2,
                     factors=(FactorSpec("x", "continuous"), FactorSpec("row", "categorical")))
    slots = torch.randn(24, 3, 4)  # slot k (k = 1, 2) codes its object's x and row in dimensions 0 and 1
    slots[:, 1:, 0], slots[:, 1:, 1] = data["factor.x"], data["factor.row"].float()
    cfg = EMORLEval(activeness_images=0)
    right = disentanglement(None, data, meta, {"slots": slots, "mean_masks": oracle}, cfg)["dci"]
    wrong = disentanglement(None, data, meta, {"slots": slots, "mean_masks": oracle[:, [0, 2, 1]]}, cfg)["dci"]
    assert right["n_objects"] == wrong["n_objects"] == 48
    assert right["informativeness_r2"] > 0.9 and right["informativeness"] == 1.0
    assert wrong["informativeness_r2"] < 0.5  # x read from the other object's slot


def test_dci_orders_the_factors_as_app_e2_lists_them_for_the_official_estimator():
    """Our generators store categorical factors first (CLEVR6: shape, ..., x); the official estimator fits the first
    factor's kind to every factor, so the factors follow `dci_factors` (App. E.2: x first), as EMORL's code has them."""
    data = _scenes(n=24)
    data["factor.row"] = torch.tensor([[0, 1]]).repeat(24, 1)
    oracle = F.one_hot(data["mask"].long(), 3).permute(0, 3, 1, 2)[:, :, None].float()  # [N,K,1,H,W]
    meta = SceneMeta("squares", "test", "1", (16, 16), 2,
                     factors=(FactorSpec("row", "categorical"), FactorSpec("x", "continuous")))  # stored row first
    slots = torch.randn(24, 3, 4)
    slots[:, 1:, 0], slots[:, 1:, 1] = data["factor.x"], data["factor.row"].float()
    cfg = EMORLEval(activeness_images=0, dci_factors=("x", "row"), dci_estimators=("paper", "official"))
    out = disentanglement(None, data, meta, {"slots": slots, "mean_masks": oracle}, cfg)
    assert list(out["dci_official"]["factors"]) == ["x", "row"] == list(out["dci"]["factors"])
    assert out["dci_official"]["estimator"] == "official" and out["dci_official"]["n_objects"] == 48


def _cli(root, stage, dataset, *sets):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OCREPRO_OUTPUT_ROOT": str(root), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "papers.emorl.pipeline", stage, "--dataset", dataset, "--profile", "smoke"]
    return subprocess.run(cmd + [a for s in sets for a in ("--set", s)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow  # 84 s on a slow 2-core CPU (CLEVR6 MuJoCo scenes): `make test` keeps under ten minutes there
def test_clevr10_evaluates_the_clevr6_run_with_eleven_slots(tmp_path):
    """Fig. 7c: the CLEVR6 model (K = 7, 3-6 objects) run with K = 11 on scenes with 7-10 objects."""
    train6 = ["train.steps=2", "train.save_every=2", "data.n_train=4", "data.n_eval=2"]
    for stage in ("prepare", "train"):
        out = _cli(tmp_path, stage, "clevr6", *train6)
        assert out.returncode == 0, (stage, out.stderr[-2000:])
    refused = _cli(tmp_path, "train", "clevr10")
    assert refused.returncode == 2 and "evaluated with the clevr6 run" in refused.stderr
    for stage in ("prepare", "evaluate"):
        out = _cli(tmp_path, stage, "clevr10", "data.n_eval=3", "eval.batch_size=3", "eval.traversal_dims=1")
        assert out.returncode == 0, (stage, out.stderr[-2000:])
    assert not (tmp_path / "runs/emorl/clevr10-smoke").exists()
    m = json.loads((tmp_path / "reports/emorl/clevr10-smoke/seeds/seed0/metrics.json").read_text())
    assert (m["num_slots"], m["trained_num_slots"], m["trained_on"]) == (11, 7, "clevr6")
    assert m["run"] == "runs/emorl/clevr6-smoke/seed0" and m["steps"] == 2
    assert (m["data_params"]["min_objects"], m["data_params"]["max_objects"]) == (7, 10)  # placed per scene
    assert m["visible_objects_per_scene"][1] <= 10 and m["metrics"]["n_images"] == 3
    assert set(m["refinement_sweep"]) == {"0", "1"} and "dci" not in m and "baseline" not in m
