import math

import pytest
import torch
import torch.distributions as D

from common.prob import (DiagonalGaussian, GECOLagrangeNLL, GECOMultiplicativeKL, free_bits, gaussian_nll,
                         kl_standard_normal, mixture_nll, softplus_variance)


def test_kl_matches_torch_distributions():
    q = DiagonalGaussian(torch.randn(5, 7), torch.rand(5, 7) + 0.1)
    p = DiagonalGaussian(torch.randn(5, 7), torch.rand(5, 7) + 0.1)
    ref = D.kl_divergence(D.Normal(q.mean, q.std), D.Normal(p.mean, p.std))
    torch.testing.assert_close(q.kl(p), ref)
    ref0 = D.kl_divergence(D.Normal(q.mean, q.std), D.Normal(0.0, 1.0))
    torch.testing.assert_close(kl_standard_normal(q.mean, q.var), ref0)
    torch.testing.assert_close(q.log_prob(p.mean), D.Normal(q.mean, q.std).log_prob(p.mean))


def test_softplus_variance_is_emorl_eq_10_11():
    o = torch.tensor([-30.0, 0.0, 3.0, 100.0])
    expected = torch.log(1 + torch.exp(torch.clamp(o, max=80.0)) + 1e-5)
    torch.testing.assert_close(softplus_variance(o), expected)
    assert torch.isfinite(softplus_variance(torch.tensor([1e4]))).all()


def test_rsample_has_requested_moments():
    g = DiagonalGaussian(torch.full((200_000,), 2.0), torch.full((200_000,), 4.0))
    s = g.rsample(temperature=0.5)
    assert abs(s.mean() - 2.0) < 0.02 and abs(s.std() - 1.0) < 0.02


def _brute_mixture(x, means, log_masks, sigma, normalised, joint):
    b, k, c, h, w = means.shape
    total = torch.zeros(b, dtype=torch.float64)
    for bi in range(b):
        for yi in range(h):
            for xi in range(w):
                chans = [None] if joint else range(c)
                for ci in chans:
                    p = 0.0
                    for ki in range(k):
                        dens = 1.0
                        for cc in (range(c) if joint else [ci]):
                            z = (x[bi, cc, yi, xi] - means[bi, ki, cc, yi, xi]).item() / sigma
                            norm = 1 / (sigma * math.sqrt(2 * math.pi)) if normalised else 1 / sigma
                            dens *= norm * math.exp(-0.5 * z * z)
                        p += math.exp(log_masks[bi, ki, 0, yi, xi].item()) * dens
                    total[bi] -= math.log(p)
    return total


@pytest.mark.parametrize("normalised", [False, True])
@pytest.mark.parametrize("joint", [False, True])
def test_mixture_nll_against_brute_force(normalised, joint):
    x = torch.rand(2, 3, 4, 5, dtype=torch.float64)
    means = torch.rand(2, 3, 3, 4, 5, dtype=torch.float64)
    log_masks = torch.randn(2, 3, 1, 4, 5, dtype=torch.float64).log_softmax(1)
    got = mixture_nll(x, means, log_masks, sigma=0.3, normalised=normalised, joint_channels=joint)
    torch.testing.assert_close(got, _brute_mixture(x, means, log_masks, 0.3, normalised, joint))


@pytest.mark.parametrize("normalised", [False, True])
def test_gaussian_nll_closed_form(normalised):
    x, m = torch.rand(2, 3, 4, 4, dtype=torch.float64), torch.rand(2, 3, 4, 4, dtype=torch.float64)
    sigma = 0.1
    per = 0.5 * ((x - m) / sigma) ** 2 + math.log(sigma) + (0.5 * math.log(2 * math.pi) if normalised else 0)
    torch.testing.assert_close(gaussian_nll(x, m, sigma, normalised), per.flatten(1).sum(1))


def test_mixture_with_one_component_equals_gaussian():
    x, m = torch.rand(2, 3, 4, 4), torch.rand(2, 1, 3, 4, 4)
    log_masks = torch.zeros(2, 1, 1, 4, 4)
    torch.testing.assert_close(mixture_nll(x, m, log_masks, 0.1), gaussian_nll(x, m[:, 0], 0.1))


def test_geco_lagrange_nll_hand_computed_sequence():
    geco = GECOLagrangeNLL(target=-10.0, step_size=0.1, alpha=0.5, floor=0.55, warm_start=2, acceleration=3.0)
    nll, kl = torch.tensor(-4.0), torch.tensor(2.0)
    assert geco.loss(nll, kl).item() == pytest.approx(-2.0)  # warm start: plain ELBO
    geco.update(torch.tensor(-4.0))  # step 1: nothing yet
    assert geco.zeta.item() == pytest.approx(0.55)
    geco.update(torch.tensor(-4.0))  # step 2 = warm start: C_ema = C - nll = -6
    assert geco.c_ema.item() == pytest.approx(-6.0) and geco.zeta.item() == pytest.approx(0.55)
    geco.update(torch.tensor(-8.0))  # C_t = -2; C_ema = 0.5*-6 + 0.5*-2 = -4; zeta = 0.55 + 0.4
    assert geco.c_ema.item() == pytest.approx(-4.0) and geco.zeta.item() == pytest.approx(0.95)
    geco.update(torch.tensor(-20.0))  # C_t = 10; C_ema = 3 > 0: accelerated step 0.3*3 -> clamp to floor
    assert geco.c_ema.item() == pytest.approx(3.0) and geco.zeta.item() == pytest.approx(0.55)
    # GECO loss: value KL - softplus(zeta) * C_ema, gradient softplus(zeta) * dNLL
    nll = torch.tensor(-8.0, requires_grad=True)
    loss = geco.loss(nll, torch.tensor(2.0))
    w = math.log1p(math.exp(0.55))
    assert loss.item() == pytest.approx(2.0 - w * 3.0, rel=1e-6)
    loss.backward()
    assert nll.grad.item() == pytest.approx(w, rel=1e-6)


def test_geco_multiplicative_kl_hand_computed_sequence():
    geco = GECOMultiplicativeKL(goal=1.0, step_size=0.1, alpha=0.5, beta_init=1.0, speedup=10.0)
    geco.update(torch.tensor(3.0))  # ema = 3, constraint -2 -> beta = exp(-0.2)
    assert geco.beta.item() == pytest.approx(math.exp(-0.2))
    geco.update(torch.tensor(-3.0))  # ema = 0, constraint 1 > 0 -> speedup: beta *= exp(1.0)
    assert geco.beta.item() == pytest.approx(math.exp(-0.2 + 1.0))
    assert geco.loss(torch.tensor(2.0), torch.tensor(3.0)).item() == pytest.approx(2.0 + 3.0 * math.exp(0.8))


@pytest.mark.parametrize("geco", [GECOLagrangeNLL(target=-10.0, warm_start=1), GECOMultiplicativeKL(goal=1.0)])
def test_geco_ignores_a_skipped_step(geco):
    """The loop skips a non-finite step on the device: update(nll, ok=False) leaves every buffer as it was."""
    geco.update(torch.tensor(-4.0))
    geco.update(torch.tensor(-5.0))
    before = {k: v.clone() for k, v in geco.state_dict().items()}
    geco.update(torch.tensor(float("nan")), ok=torch.tensor(False))
    assert all(torch.equal(before[k], v) for k, v in geco.state_dict().items())
    geco.update(torch.tensor(-6.0), ok=torch.tensor(True))
    assert int(geco.steps) == 3 and not torch.equal(before["steps"], geco.steps)


def test_geco_state_is_in_state_dict():
    geco = GECOLagrangeNLL(target=-1.0, warm_start=0)
    geco.update(torch.tensor(3.0))
    other = GECOLagrangeNLL(target=-1.0, warm_start=0)
    other.load_state_dict(geco.state_dict())
    assert other.zeta == geco.zeta and other.c_ema == geco.c_ema and other.steps == geco.steps


def test_free_bits_lom_eq_26():
    """Eq. 26 on hand-made KLs: per sample max(lambda, KL_i) (a slot-factorised KL summed over K first), the
    batch mean taken after; no gradient where the KL is under lambda."""
    per_slot = torch.tensor([[0.05, 0.05], [1.5, 0.5], [0.25, 0.25], [1.0, 2.0]], requires_grad=True)  # [B,K]
    clamped = free_bits(per_slot.sum(1), 1.0)
    assert clamped.tolist() == pytest.approx([1.0, 2.0, 1.0, 3.0])
    assert clamped.mean().item() == pytest.approx((1.0 + 2.0 + 1.0 + 3.0) / 4)
    clamped.mean().backward()
    assert per_slot.grad.tolist() == [[0, 0], [0.25, 0.25], [0, 0], [0.25, 0.25]]


def test_genesis_geco_step_scaling():
    """`none`: the step as SRI / LOM App. A.4.2 state it; `genesis`: x 64^2 / (H W), GENESIS-v2's code."""
    from common.models.genesis_v2 import GenesisV2, GenesisV2Config
    from common.prob import geco_for
    assert geco_for("genesis", 0.5, (96, 96), 1e-6).step_size == pytest.approx(1e-6)
    assert geco_for("genesis", 0.5, (96, 96), 1e-6, step_scaling="genesis").step_size == pytest.approx(1e-6 * 4 / 9)
    assert geco_for("genesis", 0.5, (64, 64), 1e-6, step_scaling="genesis").step_size == pytest.approx(1e-6)
    genesis = GenesisV2(GenesisV2Config(resolution=(128, 128), num_slots=2, feat_dim=8))  # its own code: scaled
    assert genesis.geco.step_size == pytest.approx(1e-5 / 4)
    from papers.lom.model import LOM, LOMConfig  # LOM-GENv2: App. A.4.2's 1e-6 for both GECOs unless asked
    small = GenesisV2Config(resolution=(96, 96), num_slots=2, feat_dim=8, prior="independent", geco_step=1e-6)
    for scaling, step in (("none", 1e-6), ("genesis", 1e-6 * 4 / 9)):
        lom = LOM(LOMConfig(backbone="genesis_v2", emorl=None, genesis_v2=small, scene_dim=16, geco="genesis",
                            geco_step_scaling=scaling))
        assert lom.geco.step_size == pytest.approx(step) and lom.backbone.geco.step_size == pytest.approx(step)
    with pytest.raises(ValueError, match="unknown GECO step scaling 'paper'"):
        geco_for("genesis", 0.5, (64, 64), step_scaling="paper")
