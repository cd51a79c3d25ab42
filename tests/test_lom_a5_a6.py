"""LOM App. A.5 Models 7-8 (papers/lom/autoregressive.py: EMORL with an autoregressive slot prior fitted to its
orderless posterior) and App. A.6's retrieval (papers/lom/retrieval.py): the stop-gradient into EMORL, the prior's
causality and first slot, the slot KL against a closed form, the loss, temperature, the from_pretrained round
trip; nearest neighbours, re-ranking and the query slot against hand computations."""
import math

import pytest
import torch

from papers.emorl.model import EMORLConfig
from papers.lom.autoregressive import AutoregressiveConfig, AutoregressiveEMORL
from papers.lom.model import LOM, LOMConfig
from papers.lom.retrieval import nearest, query_slot, rerank, retrieval_figure

SIZE = 32


def _emorl() -> EMORLConfig:
    return EMORLConfig(resolution=(SIZE, SIZE), num_slots=3, slot_dim=16, encoder_channels=(8, 8), refinement_steps=2,
                       geco_target=-0.351, free_bits=0.75 * 16)


def _model(scene: bool) -> AutoregressiveEMORL:
    torch.manual_seed(0)
    return AutoregressiveEMORL(AutoregressiveConfig(emorl=_emorl(), scene=scene, scene_dim=24, hidden=32,
                                                    free_bits_anneal=(10, 20)))


@pytest.mark.parametrize("scene", [False, True], ids=["model7", "model8"])
def test_the_prior_terms_never_reach_emorl_and_every_parameter_learns(scene):
    model = _model(scene)
    x = torch.rand(2, 3, SIZE, SIZE)
    kls = model.kl_terms(model.infer(x, step=0))
    (kls["slot_kl"].mean() + kls["scene_kl"].mean()).backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.backbone.parameters())
    assert all(p.grad is not None for p in model.prior.parameters())
    model.zero_grad()
    out = model(x, step=0)
    out.check(x)
    out.loss.backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    model.after_step(out, torch.tensor(True))
    assert int(model.backbone.geco.steps) == 1  # EMORL's own GECO, from its logs


def test_the_loss_is_emorls_plus_the_slot_kl_and_the_scene_kl_under_free_bits():
    model = _model(scene=True)  # D_s = 24: lambda = 0.25 * 24 = 6 nats at step 0
    x = torch.rand(2, 3, SIZE, SIZE)
    torch.manual_seed(3)
    out = model(x, step=0)
    torch.manual_seed(3)
    t = model.infer(x, step=0)
    kls = model.kl_terms(t)
    expected = t["segregation"].output.loss + kls["slot_kl"].mean() + kls["scene_kl"].clamp(min=6.0).mean()
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert model.scene_free_bits(15) == pytest.approx((0.25 + 0.167) / 2 * 24)


def test_the_teacher_forced_prior_is_causal_and_model7_starts_from_a_standard_normal():
    for scene in (False, True):
        model = _model(scene)
        z = torch.randn(2, 3, 16)
        s = torch.randn(2, 24) if scene else None
        p = model.prior.conditionals(s, z)
        z2 = z.clone()
        z2[:, 1] += 1.0  # change slot 2: the conditionals of slots 1-2 stay, slot 3's moves
        p2 = model.prior.conditionals(s, z2)
        torch.testing.assert_close(p.mean[:, :2], p2.mean[:, :2])
        torch.testing.assert_close(p.var[:, :2], p2.var[:, :2])
        assert not torch.allclose(p.mean[:, 2], p2.mean[:, 2])
        if not scene:
            torch.testing.assert_close(p.mean[:, 0], torch.zeros(2, 16))
            torch.testing.assert_close(p.var[:, 0], torch.ones(2, 16))
        else:  # Model 8: s conditions the first slot
            assert not torch.allclose(model.prior.conditionals(s + 1.0, z).mean[:, 0], p.mean[:, 0])


def _closed_form_kl(m_q, v_q, m_p, v_p) -> float:
    return sum(0.5 * (math.log(vp / vq) + (vq + (mq - mp) ** 2) / vp - 1.0)
               for mq, vq, mp, vp in zip(m_q.tolist(), v_q.tolist(), m_p.tolist(), v_p.tolist()))


def test_slot_kl_is_the_sum_over_slots_of_emorls_posterior_against_the_prior():
    model = _model(scene=False)
    t = model.infer(torch.rand(1, 3, SIZE, SIZE))
    q, p = t["q_z"], t["p_z"]
    expected = sum(_closed_form_kl(q.mean[0, k], q.var[0, k], p.mean[0, k], p.var[0, k]) for k in range(3))
    kls = model.kl_terms(t)
    assert kls["slot_kl"].item() == pytest.approx(expected, rel=1e-4)
    assert kls["scene_kl"].item() == 0.0  # Model 7 has no scene latent
    torch.testing.assert_close(q.mean, t["segregation"].mean)  # EMORL's posterior itself, in its own order


def test_temperature_given_scenes_and_the_round_trip(tmp_path, train_two_steps):
    model = _model(scene=True)
    train_two_steps(model, SIZE)
    model.eval()
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    s = torch.randn(3, 24)
    z1, z_half = (model.sample(3, tau, generator=g(), s=s)["slots"] for tau in (1.0, 0.5))
    first = model.prior.rollout(s, 1, 0.0)[1].mean[:, 0]  # the first slot's prior mean given s
    torch.testing.assert_close(z_half[:, 0] - first, 0.5 * (z1[:, 0] - first))
    assert model.sample(2, num_slots=5)["masks"].shape == (2, 5, 1, SIZE, SIZE)
    model.save_pretrained(tmp_path / "model")
    again = AutoregressiveEMORL.from_pretrained(tmp_path / "model").eval()
    assert again.config == model.config
    torch.testing.assert_close(model.sample(2, generator=g())["images"], again.sample(2, generator=g())["images"])


def test_nearest_and_rerank_against_hand_computations():
    database = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0], [0.0, -2.0]])
    queries = torch.tensor([[0.1, 0.0], [3.0, 3.0]])
    assert nearest(database, queries, 3).tolist() == [[0, 2, 3], [1, 2, 0]]
    slot = torch.tensor([1.0, 1.0])
    candidates = torch.tensor([[[5.0, 5.0], [0.0, 3.0]],  # nearest slot at distance sqrt(5)
                               [[1.0, 1.5], [9.0, 9.0]],  # 0.5
                               [[-1.0, 1.0], [4.0, 4.0]]])  # 2
    assert rerank(slot, candidates).tolist() == [1, 2, 0]


def test_the_query_slot_is_the_smallest_mask_covering_one_percent():
    masks = torch.zeros(4, 1, 10, 10)
    masks[0] = 1.0  # background: the whole image
    masks[1, :, :5] = 1.0  # 50 %
    masks[2, :, 0, 0] = 1.0  # 1 %: the smallest that counts
    masks[3, :, 0, 0] = 0.5  # 0.5 %: too small
    assert query_slot(masks) == 2


def test_retrieval_figure_on_a_tiny_lom(tmp_path):
    torch.manual_seed(0)
    model = LOM(LOMConfig(emorl=_emorl(), scene_dim=24)).eval()
    database = (torch.rand(12, SIZE, SIZE, 3) * 255).to(torch.uint8)
    queries = (torch.rand(2, SIZE, SIZE, 3) * 255).to(torch.uint8)
    r = retrieval_figure(model, database, queries, tmp_path / "retrieval.png", batch_size=5)
    assert (tmp_path / "retrieval.png").is_file() and r["database"] == 12 and r["queries"] == 2
    assert len(r["pca_explained_variance_ratio"]) == 6 and sorted(r["rerank_orders"][0]) == list(range(5))
