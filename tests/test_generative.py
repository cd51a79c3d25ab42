"""The shared generative evaluation: quantisation, KID, FID_inf, the real-feature cache, bits per dim."""
import math

import numpy as np
import pytest
import torch

from common.metrics import generative
from common.metrics.fid import frechet_distance
from common.metrics.generative import (bits_per_dim, evaluate_samples, fid_infinity, generation_order, kid, quantise,
                                       real_images)


def test_quantise_rounds_and_the_official_truncation_floors():
    x = torch.tensor([0.0, 0.6 / 255, 1.4 / 255, 254.7 / 255, 1.0, 1.2]).view(1, 1, 1, 6)
    assert quantise(x, "round").flatten().tolist() == [0, 1, 1, 255, 255, 255]
    assert quantise(x, "truncate").flatten().tolist() == [0, 0, 1, 254, 255, 255]
    with pytest.raises(ValueError, match="quantisation"):
        quantise(x, "nearest")


def test_only_sris_protocol_changes_the_real_images_and_by_its_float32_round_trip():
    """SRI's compute_fid saves test images loaded to [-1, 1] as uint8(255 (x + 1) / 2): 63 of the 256 levels drop
    by one (checked by hand: reference/generative.md); GENESIS-v2's [0, 1] path and rounding leave them alone."""
    levels = torch.arange(256, dtype=torch.uint8).view(1, 1, 1, 256)
    assert real_images(levels, "round") is levels and real_images(levels, "truncate") is levels
    saved = real_images(levels, "truncate_signed").int()
    drop = levels.int() - saved
    assert set(drop.unique().tolist()) == {0, 1} and int(drop.sum()) == 63 and saved[..., 255].item() == 255
    expected = [int(np.floor(((np.float32(k) / np.float32(255) * np.float32(2) - np.float32(1)) + np.float32(1))
                             / np.float32(2) * np.float32(255))) for k in range(256)]
    assert saved.flatten().tolist() == expected
    with pytest.raises(ValueError, match="quantisation"):
        real_images(levels, "floor")


def test_kid_against_a_hand_computation():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 3)), rng.normal(0.5, 1.0, size=(4, 3))
    k = lambda a, b: (a @ b / 3 + 1) ** 3
    within = sum(k(x[i], x[j]) + k(y[i], y[j]) for i in range(4) for j in range(4) if i != j) / 12
    across = sum(k(x[i], y[j]) for i in range(4) for j in range(4)) / 16
    got = kid(x, y, subsets=5, subset_size=4)  # a subset of all 4 is the whole set: every subset agrees
    assert got["kid"] == pytest.approx(within - 2 * across) and got["kid_std"] == pytest.approx(0, abs=1e-12)
    same = kid(x, x, subsets=3, subset_size=4)["kid"]
    assert same < got["kid"]


def test_fid_infinity_removes_the_small_sample_bias():
    """Real N(0, I_8), generated N(1, I_8): the true FID is 8; FID at small N is biased upwards."""
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(20000, 8)), rng.normal(1.0, 1.0, size=(2000, 8))
    out = fid_infinity(real, fake, points=6, min_n=500)
    smallest = out["fid_inf_points"][0][1]
    assert abs(out["fid_inf"] - 8.0) < abs(smallest - 8.0) and abs(out["fid_inf"] - 8.0) < 0.25
    assert fid_infinity(real, fake[:100])["fid_inf"] is None


class FakeBackend:
    """Stand-in for the Inception network: 2x2 average-pooled pixels as 12-d features."""
    sha1, source, precision, calls = "fake", "fake", "float32", 0

    def features(self, images, batch_size=50):
        FakeBackend.calls += 1
        x = images.float() / 255
        return torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1).double().numpy()


def test_evaluate_samples_records_its_protocol_and_caches_real_features(tmp_path, monkeypatch):
    monkeypatch.setattr(generative, "resolve_backend", lambda weights=None: FakeBackend())
    g = torch.Generator().manual_seed(0)
    real = (torch.rand(300, 3, 8, 8, generator=g) * 255).to(torch.uint8)
    like = lambda b: torch.rand(b, 3, 8, 8, generator=g)
    shifted = lambda b: (torch.rand(b, 3, 8, 8, generator=g) * 0.5 + 0.5)
    near = evaluate_samples(real, like, 200, key="toy|test", temperature=0.7, batch_size=64, cache_dir=tmp_path,
                            kid_subsets=10)
    calls = FakeBackend.calls
    far = evaluate_samples(real, shifted, 200, key="toy|test", temperature=0.7, batch_size=64, cache_dir=tmp_path,
                           kid_subsets=10)
    assert FakeBackend.calls == calls + 1  # the real features came from the cache the second time
    assert far["fid"] > near["fid"] + 0.01 and far["kid"] > near["kid"]
    assert near["n"] == 200 and near["temperature"] == 0.7 and near["quantisation"] == "round"
    assert near["fid_inf"] is None and "not computed" in near["fid_inf_status"]
    signed = evaluate_samples(real, like, 200, key="toy|test", temperature=0.7, quantisation="truncate_signed",
                              batch_size=64, cache_dir=tmp_path, kid_subsets=10)
    assert FakeBackend.calls == calls + 3  # SRI's saved real images are another set: not the cached features
    assert signed["quantisation"] == "truncate_signed" and signed["fid"] != near["fid"]
    with pytest.raises(ValueError, match="needs 400 real test images"):
        evaluate_samples(real, like, 400, key="toy|test", temperature=1.0)


def test_fid_of_a_set_against_itself_is_zero_and_grows_with_a_shift():
    rng = np.random.default_rng(2)
    f = rng.normal(size=(500, 6))
    stats = (f.mean(0), np.cov(f, rowvar=False))
    assert frechet_distance(*stats, *stats) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(*stats, stats[0] + 0.5, stats[1]) == pytest.approx(6 * 0.25, rel=1e-6)


def test_bits_per_dim_of_a_known_gaussian():
    """The exact NLL of N(0.5, 0.1^2) data is, in expectation, the entropy: 0.5 log2(2 pi e sigma^2) bits/dim."""
    sigma, dims = 0.1, 3 * 4 * 4
    x = 0.5 + sigma * torch.randn(20000, dims, dtype=torch.float64)
    nll = (0.5 * ((x - 0.5) / sigma) ** 2 + math.log(sigma) + 0.5 * math.log(2 * math.pi)).sum(1)
    assert bits_per_dim(nll, dims) == pytest.approx(0.5 * math.log2(2 * math.pi * math.e * sigma**2), abs=2e-3)


def test_genesis_negative_elbo_uses_the_normalised_likelihood():
    from common.models.genesis_v2 import GenesisV2, GenesisV2Config
    from common.prob.likelihood import HALF_LOG_2PI
    model = GenesisV2(GenesisV2Config(resolution=(32, 32), num_slots=3, feat_dim=16, likelihood="gaussian",
                                      normalised=False, geco_goal=None))
    x = torch.rand(2, 3, 32, 32)
    torch.manual_seed(0)
    out = model(x)
    torch.manual_seed(0)
    nelbo = model.negative_elbo(x)
    expected = out.logs["err"] + out.logs["kl"] + HALF_LOG_2PI * 3 * 32 * 32
    torch.testing.assert_close(nelbo.mean(), expected, rtol=1e-5, atol=1e-2)
    from common.evaluate_generative import bpd  # uint8 scenes in batches: the same nats over D ln 2
    scenes = (x.permute(0, 2, 3, 1) * 255).round().to(torch.uint8)
    torch.manual_seed(1)
    got = bpd(model, scenes, batch_size=1)
    torch.manual_seed(1)
    direct = torch.cat([model.negative_elbo(scenes[i:i + 1].permute(0, 3, 1, 2).float() / 255) for i in range(2)])
    assert got == pytest.approx(float(direct.mean()) / (3 * 32 * 32 * math.log(2)), rel=1e-6)


def test_evaluate_generative_on_a_trained_genesis_run(tmp_path, monkeypatch):
    """Train GENESIS-v2 for 2 steps through the CLI, then the shared evaluation writes every number with
    its protocol, and the figures."""
    import json

    import yaml

    from common import evaluate_generative
    from common.train.__main__ import main as train
    config = {"model": "common.models.genesis_v2:GenesisV2",
              "model_config": {"resolution": [32, 32], "num_slots": 3, "feat_dim": 16},
              "data": {"name": "toy_shapes", "params": {"size": 32, "max_objects": 2}, "n_train": 8},
              "train": {"steps": 2, "batch_size": 4, "lr": 1e-4, "clip": "none", "save_every": 2, "log_every": 1}}
    (tmp_path / "g.yaml").write_text(yaml.safe_dump(config))
    assert train([str(tmp_path / "g.yaml"), "--out", str(tmp_path / "run")]) == 0
    monkeypatch.setattr(generative, "resolve_backend", lambda weights=None: FakeBackend())
    code = evaluate_generative.main(["--run", str(tmp_path / "run"), "--n", "16", "--bpd-n", "8", "--ari-n", "8",
                                     "--temperature", "0.9", "--cache", str(tmp_path / "cache")])
    assert code == 0
    record = json.loads((tmp_path / "run" / "eval_generative" / "metrics.json").read_text())
    m = record["metrics"]
    assert m["n"] == 16 and m["temperature"] == 0.9 and m["quantisation"] == "truncate" and m["n_bpd"] == 8
    assert m["fid"] >= 0 and m["kid_subset_size"] == 16 and m["n_ari"] == 8 and "ari_fg_encoder" in m
    assert 0 < m["bpd"] < 100 and m["bpd_split"] == "val" and record["commit"]
    assert (tmp_path / "run" / "eval_generative" / "samples.png").is_file()


def test_a_deferred_fid_finished_where_the_network_is_equals_the_one_computed_at_once(tmp_path, monkeypatch):
    """Without the network and with $OCREPRO_FID_DEFER, evaluate_samples draws the same samples and saves them and
    the protocol's real images; `fid-deferred` then fills every deferred entry of a metrics file (nested ones too)
    with what evaluate_samples gives at once with the network; without the variable, FID is just unavailable."""
    import json

    from common.metrics import __main__ as metrics_cli
    from common.metrics.fid import FIDUnavailable

    def unavailable(weights=None):
        raise FIDUnavailable("no Inception weights here")
    g = torch.Generator().manual_seed(0)
    real = (torch.rand(60, 3, 8, 8, generator=g) * 255).to(torch.uint8)
    draw = lambda seed: (lambda b, g=torch.Generator().manual_seed(seed): torch.rand(b, 3, 8, 8, generator=g))  # noqa: E731
    args = dict(key="toy|test", temperature=1.0, quantisation="truncate_signed", batch_size=16, kid_subsets=5)
    monkeypatch.setattr(generative, "resolve_backend", lambda weights=None: FakeBackend())
    at_once = evaluate_samples(real, draw(1), 50, **args)
    monkeypatch.setattr(generative, "resolve_backend", unavailable)
    assert evaluate_samples(real, draw(1), 50, **args)["status"].startswith("unavailable")
    monkeypatch.setenv("OCREPRO_FID_DEFER", str(tmp_path / "images"))
    deferred = evaluate_samples(real, draw(1), 50, **args)
    assert deferred["status"] == "deferred" and deferred["fid"] is None and deferred["n"] == 50
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == sorted(deferred["deferred"].values())
    record = {"metrics": {**deferred, "mse": 0.5}, "baseline": {"metrics": dict(deferred)}}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text(json.dumps(record))
    monkeypatch.setattr(generative, "resolve_backend", lambda weights=None: FakeBackend())
    calls = FakeBackend.calls
    assert metrics_cli.main(["fid-deferred", "--images", str(tmp_path / "images"), str(tmp_path)]) == 0
    assert FakeBackend.calls - calls == 2  # the two entries share their files: each set's features once
    done = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for entry in (done["metrics"], done["baseline"]["metrics"]):
        assert entry["fid"] == pytest.approx(at_once["fid"]) and entry["kid"] == pytest.approx(at_once["kid"])
        assert "status" not in entry and entry["quantisation"] == "truncate_signed" and entry["fid_provenance"]["commit"]
    assert done["metrics"]["mse"] == 0.5
    assert metrics_cli.main(["fid-deferred", "--images", str(tmp_path / "nowhere"), str(tmp_path)]) == 0  # none left
    (tmp_path / "run" / "metrics.json").write_text(json.dumps(record))
    assert metrics_cli.main(["fid-deferred", "--images", str(tmp_path / "nowhere"), str(tmp_path)]) == 2
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == record  # nothing half-written


def test_generation_order_on_hand_made_masks():
    """Four samples, K = 3, 2x2 images: the background (largest mask) is slot 0 in three samples, slot 2 in one."""
    def sample(background: int, other: int) -> torch.Tensor:
        m = torch.zeros(3, 1, 2, 2)  # [K,1,H,W]
        m[background].fill_(1.0)
        m[background, 0, 0, 0], m[other, 0, 0, 0] = 0.0, 1.0  # `other` takes one pixel of four
        return m
    masks = torch.stack([sample(0, 1), sample(0, 2), sample(2, 1), sample(0, 1)])  # [4,3,1,2,2]
    g = generation_order(masks)
    assert g["background_slot_agreement"] == 0.75 and g["background_slot"] == 0 and g["n"] == 4
    assert g["background_slot_histogram"] == [3, 0, 1]
    # mean area per slot: slot 0 has 3/4 in three samples, slot 1 1/4 in three, slot 2 1/4 once and 3/4 once
    assert g["mean_area_per_slot"] == pytest.approx([9 / 16, 3 / 16, 4 / 16])
