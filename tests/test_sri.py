"""SRI (papers/sri): matching, the Relate encoder's invariance, stop-gradients, the KL terms against hand
computations, temperature, the ablation switches, and the from_pretrained round trip."""
import math

import pytest
import torch

from common.matching import greedy_matching, hungarian_permutation
from common.models.genesis_v2 import GenesisV2Config
from common.prob import DiagonalGaussian
from papers.emorl.model import EMORLConfig
from papers.sri.model import SRI, RelateLayer, SceneEncoder, SRIConfig
from papers.sri.slot_order import SlotOrderConfig

SIZE = 32


def _genesis(**kw) -> GenesisV2Config:
    return GenesisV2Config(resolution=(SIZE, SIZE), num_slots=4, feat_dim=16, prior="independent", **kw)


def _model(**kw) -> SRI:
    torch.manual_seed(0)
    return SRI(SRIConfig(genesis_v2=_genesis(), scene_dim=24, hidden=32, **kw))


def test_greedy_matching_agrees_with_hungarian_on_well_separated_costs():
    torch.manual_seed(0)
    truth = torch.stack([torch.randperm(6) for _ in range(5)])  # [B,K]: position i holds slot truth[b, i]
    cost = torch.rand(5, 6, 6) + 10.0
    cost.scatter_(2, truth.unsqueeze(-1), torch.rand(5, 6, 1))  # the matched pair is far the cheapest
    greedy = greedy_matching(cost)
    assert (greedy.sort(1).values == torch.arange(6)).all()  # a permutation
    assert torch.equal(greedy, truth) and torch.equal(hungarian_permutation(cost), truth)


def test_scene_posterior_is_invariant_to_the_segregation_order():
    torch.manual_seed(0)
    encoder = SceneEncoder(16, 24, 3)
    z_o = torch.randn(3, 5, 16)
    q = encoder(z_o)
    q_perm = encoder(z_o[:, torch.randperm(5)])
    torch.testing.assert_close(q.mean, q_perm.mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(q.var, q_perm.var, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(encoder(z_o[:, :4]).mean, q.mean)  # it does read the slots


@pytest.mark.parametrize("values", ["paper", "official"])
def test_relate_layer_is_eq_30_31_by_hand(values):
    """Eq. 30: z^_i = sum_j alpha_ij W_v^T [z_j; z_i - z_j], W_v in R^{2z x z} (one matrix, no bias); the official
    code's values are MLP([z_i; z_i - z_j]). Eq. 31: z'_i = z_i + MLP(LayerNorm(z_i + z^_i))."""
    torch.manual_seed(0)
    layer, z = RelateLayer(4, values), torch.randn(1, 3, 4)
    if values == "paper":
        assert layer.w_v.weight.shape == (4, 8) and layer.w_v.bias is None
    q, k = layer.w_q(z)[0], layer.w_k(z)[0]  # [K,z]
    expected = []
    for i in range(3):
        alpha = torch.stack([q[i] @ k[j] / 2.0 for j in range(3)]).softmax(0)  # sqrt(z) = 2
        first = [z[0, j] for j in range(3)] if values == "paper" else [z[0, i]] * 3
        z_hat = sum(alpha[j] * layer.w_v(torch.cat([first[j], z[0, i] - z[0, j]])) for j in range(3))
        expected.append(z[0, i] + layer.mlp(layer.norm(z[0, i] + z_hat)))
    torch.testing.assert_close(layer(z)[0], torch.stack(expected))


def test_geco_step_is_the_papers_unless_the_official_scaling_is_asked_for():
    """App. A.4.2: step 1e-6 for both GECOs; the official code multiplies it by 64^2 / (H W) (96 px: 4/9)."""
    big = GenesisV2Config(resolution=(96, 96), num_slots=3, feat_dim=16, prior="independent", geco_step=1e-6)
    for scaling, step in (("none", 1e-6), ("genesis", 1e-6 * 64**2 / 96**2)):
        model = SRI(SRIConfig(genesis_v2=big, scene_dim=24, hidden=32, geco_step_scaling=scaling))
        assert model.geco.step_size == pytest.approx(step) and model.backbone.geco.step_size == pytest.approx(step)
        assert model.config.genesis_v2.geco_step_scaling == scaling  # what config.json saves is what ran


def _sri_emorl(**kw) -> SRI:
    torch.manual_seed(0)
    emorl = EMORLConfig(resolution=(SIZE, SIZE), num_slots=3, slot_dim=16, encoder_channels=(8, 8),
                        refinement_steps=2, geco_target=-2.0)
    return SRI(SRIConfig(backbone="emorl", emorl=emorl, scene_dim=24, hidden=32, geco="emorl", geco_goal=-2.265, **kw))


@pytest.mark.parametrize("backbone", ["genesis_v2", "emorl"])
@pytest.mark.parametrize("decoder", ["shared", "separate"])
def test_no_gradient_of_the_sri_loss_reaches_the_backbone(decoder, backbone):
    model = _model(decoder=decoder) if backbone == "genesis_v2" else _sri_emorl(decoder=decoder)
    x = torch.rand(2, 3, SIZE, SIZE)
    loss, *_ = model.sri_loss(x, model.infer(x))
    loss.backward()
    touched = {n for n, p in model.backbone.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    if decoder == "separate":  # the official code's own decoder: nothing of the backbone learns from L_SRI
        assert not touched
    else:  # §4.3's shared SBD learns from both losses; the backbone's inference network never from L_SRI
        assert touched and all(n.startswith("decoder.") for n in touched)
    assert all(p.grad is not None for p in model.relate.parameters())  # the SRI networks do learn


def test_q_s_through_infer_is_invariant_to_the_order_of_the_segregation_slots(monkeypatch):
    """Algorithm 2 line 3 inside SRI.infer: permuting the backbone's K slots (means, stds, samples) leaves q(s|x)."""
    model = _model()
    x = torch.rand(2, 3, SIZE, SIZE)
    seg = model.backbone.segregate(x)
    perm = torch.tensor([2, 0, 3, 1])
    shuffled = type(seg)(seg.mean[:, perm], seg.std[:, perm], seg.sample[:, perm], seg.output)
    monkeypatch.setattr(model.backbone, "segregate", lambda *args: seg)  # infer segregates: hand it each order
    q = model.infer(x)["q_s"]
    monkeypatch.setattr(model.backbone, "segregate", lambda *args: shuffled)
    q_perm = model.infer(x)["q_s"]
    assert not torch.equal(seg.sample, shuffled.sample)
    torch.testing.assert_close(q.mean, q_perm.mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(q.var, q_perm.var, atol=1e-5, rtol=1e-5)


def test_the_aligned_posterior_is_the_segregation_means_permuted_by_the_matching():
    model = _model()
    x = torch.rand(3, 3, SIZE, SIZE)
    t = model.infer(x)
    perm, mu_o = t["perm"], t["segregation"].mean
    assert (perm.sort(1).values == torch.arange(4)).all()
    torch.testing.assert_close(t["q_z"].mean, torch.stack([mu_o[b, perm[b]] for b in range(3)]))
    expected = greedy_matching(torch.cdist(t["rollout"].mean, mu_o))  # Algorithm 1 on the rollout means
    assert torch.equal(perm, expected)


def test_cross_order_kl_is_zero_when_rollout_and_posterior_coincide():
    model = _model()
    x = torch.rand(2, 3, SIZE, SIZE)
    t = model.infer(x)
    same = {**t, "rollout": DiagonalGaussian(t["q_z"].mean.clone(), t["q_z"].var.clone())}
    assert model.kl_terms(same)["cross_order_kl"].abs().max() < 1e-5
    assert (model.kl_terms(t)["cross_order_kl"] > 0).all()
    assert (_model(cross_order_kl=False).kl_terms(t)["cross_order_kl"] == 0).all()


def _closed_form_kl(m_q, v_q, m_p, v_p) -> float:
    return sum(0.5 * (math.log(vp / vq) + (vq + (mq - mp) ** 2) / vp - 1.0)
               for mq, vq, mp, vp in zip(m_q.tolist(), v_q.tolist(), m_p.tolist(), v_p.tolist()))


def test_slot_kl_for_two_slots_against_a_hand_computation():
    """K = 2: KL(q_1 || p(z_1 | s)) + KL(q_2 || p(z_2 | z_1, s)), the prior stepped by hand (one LSTM step
    on W_s s, then one on the posterior's first sample) and the Gaussian KL in closed form."""
    torch.manual_seed(0)
    model = SRI(SRIConfig(genesis_v2=GenesisV2Config(resolution=(SIZE, SIZE), num_slots=2, feat_dim=8,
                                                     prior="independent"), scene_dim=12, hidden=16))
    t = model.infer(torch.rand(1, 3, SIZE, SIZE))
    prior, q, z = model.prior, t["q_z"], t["z"]
    h1, state = prior.lstm(prior.project(t["s"]).unsqueeze(1))
    h2, _ = prior.lstm(z[:, :1], state)
    expected = 0.0
    for k, h in enumerate((h1, h2)):
        p = DiagonalGaussian.from_params(prior.heads["mean"](h), prior.heads["pre_var"](h))
        expected += _closed_form_kl(q.mean[0, k], q.var[0, k], p.mean[0, 0], p.var[0, 0])
    assert model.kl_terms(t)["slot_kl"].item() == pytest.approx(expected, rel=1e-4)


def test_temperature_scales_the_sampled_std():
    model = _model()
    s = torch.randn(4, 24)
    runs = {tau: model.prior.rollout(s, 4, tau, generator=torch.Generator().manual_seed(1)) for tau in (1.0, 0.5)}
    (z1, p1), (z_half, p_half) = runs[1.0], runs[0.5]
    torch.testing.assert_close(p1.mean[:, 0], p_half.mean[:, 0])  # same first conditional ...
    torch.testing.assert_close(z_half[:, 0] - p1.mean[:, 0], 0.5 * (z1[:, 0] - p1.mean[:, 0]))  # ... half the spread
    # sample(): s ~ N(0, tau^2 I) (the first draw), then the rollout at the same tau (Fig. 13 scales both)
    slots = model.sample(2, 0.5, generator=torch.Generator().manual_seed(2))["slots"]
    g = torch.Generator().manual_seed(2)
    eps = torch.randn(2, 24, generator=g)
    state = g.get_state()
    torch.testing.assert_close(slots, model.prior.rollout(0.5 * eps, 4, 0.5, generator=g)[0])
    unscaled_s = model.prior.rollout(eps, 4, 0.5, generator=torch.Generator().set_state(state))[0]
    assert not torch.allclose(slots, unscaled_s)


@pytest.mark.parametrize("switches", [{}, {"scene_variable": False}, {"cross_order_kl": False},
                                      {"order_alignment": False, "cross_order_kl": False}, {"decoder": "separate"}],
                         ids=["sri", "no_scene", "no_cross_kl", "no_alignment", "separate_decoder"])
def test_every_parameter_learns_in_every_variant(switches):
    """One step's loss reaches every parameter (multi-GPU DDP refuses parameters that never get a gradient)."""
    model = _model(**switches)
    model(torch.rand(2, 3, SIZE, SIZE), step=0).loss.backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


def test_ablation_switches():
    x = torch.rand(2, 3, SIZE, SIZE)
    no_scene = _model(scene_variable=False)  # Table 3a: p(z_1) = N(0, I), no q(s | x)
    t = no_scene.infer(x)
    assert t["q_s"] is None and no_scene.relate is None
    assert (t["p_z"].mean[:, 0] == 0).all() and (t["p_z"].var[:, 0] == 1).all()
    assert (no_scene.kl_terms(t)["scene_kl"] == 0).all()
    no_order = _model(order_alignment=False, cross_order_kl=False)  # Table 3b: the segregation order kept
    t = no_order.infer(x)
    assert t["rollout"] is None and torch.equal(t["perm"], torch.arange(4).expand(2, 4))
    with pytest.raises(ValueError, match="cross_order_kl needs order_alignment"):
        _model(order_alignment=False)
    hungarian = _model(matching="hungarian").infer(x)["perm"]
    assert (hungarian.sort(1).values == torch.arange(4)).all()


def test_sri_emorl_builds_and_trains_a_step():
    model = _sri_emorl()
    x = torch.rand(2, 3, SIZE, SIZE)
    out = model(x, step=0)
    out.check(x)
    out.loss.backward()
    model.after_step(out, torch.tensor(True))
    assert int(model.geco.steps) == 1 and int(model.backbone.geco.steps) == 1  # both GECOs stepped
    with pytest.raises(ValueError, match="needs an `emorl` config"):
        SRI(SRIConfig(backbone="emorl"))


def _round_trip(model: SRI, path) -> SRI:
    model.save_pretrained(path / "model")
    again = SRI.from_pretrained(path / "model")
    assert again.config == model.config
    return again.eval()


def _sa_star(**kw) -> SRI:
    torch.manual_seed(0)
    return SRI(SRIConfig(backbone="slot_attention", genesis_v2=_genesis(), scene_dim=24, hidden=32,
                         slot_attention=SlotOrderConfig(encoder_channels=(8, 8), iters=2),
                         order_alignment=False, cross_order_kl=False, **kw))


def test_sri_sa_star_trains_its_ordered_encoder_by_l_sri_alone(tmp_path):
    """Table 1's SRI-SA*: q(z_k | x) is slot k of the per-slot-init Slot Attention, in its own order (no
    matching, no cross-order KL, no posterior LSTM), and L_SRI is the whole loss, so every encoder weight
    gets its gradient through z."""
    model = _sa_star()
    assert model.posterior is None
    x = torch.rand(2, 3, SIZE, SIZE)
    t = model.infer(x)
    seg = t["segregation"]
    torch.testing.assert_close(t["q_z"].mean, seg.mean)
    torch.testing.assert_close(t["q_z"].var, seg.std ** 2)
    assert torch.equal(t["perm"], torch.arange(4).expand(2, 4)) and t["rollout"] is None
    assert (model.kl_terms(t)["cross_order_kl"] == 0).all()
    out = model(x, step=0)
    out.check(x)
    assert out.loss.item() == pytest.approx(model.geco.loss(out.logs["err"], out.logs["scene_kl"] + out.logs["slot_kl"]).item(),
                                            rel=1e-5)  # no backbone term
    out.loss.backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    assert model.encoder_masks(x).shape == (2, 4, 1, SIZE, SIZE)
    assert model.sample(3)["images"].shape == (3, 3, SIZE, SIZE)
    torch.manual_seed(1)  # the -ELBO: GENv2-MoG's normalised likelihood already holds the Gaussian constant
    bound = model.negative_elbo(x)
    torch.manual_seed(1)
    t = model.infer(x)
    kls = model.kl_terms(t)
    torch.testing.assert_close(bound, model.backbone.nll(x, *model.decode(t["z"])) + kls["scene_kl"] + kls["slot_kl"])
    again = _round_trip(model, tmp_path)
    g = lambda: torch.Generator().manual_seed(5)
    torch.testing.assert_close(model.sample(2, generator=g())["images"], again.sample(2, generator=g())["images"])
    for bad in ({"order_alignment": True}, {"order_alignment": False, "decoder": "separate"}):
        with pytest.raises(ValueError, match="SRI-SA\\* orders slots by its encoder"):
            SRI(SRIConfig(backbone="slot_attention", genesis_v2=_genesis(), cross_order_kl=False, **bad))


def test_backbone_must_use_the_independent_prior():
    with pytest.raises(ValueError, match="independent prior"):
        SRI(SRIConfig(genesis_v2=GenesisV2Config(resolution=(SIZE, SIZE), num_slots=4, feat_dim=16)))


def test_negative_elbo_is_nll_plus_scene_and_slot_kl():
    model = _model()
    x = torch.rand(2, 3, SIZE, SIZE)
    torch.manual_seed(3)
    nelbo = model.negative_elbo(x)
    torch.manual_seed(3)
    t = model.infer(x)
    rgb, log_m = model.decode(t["z"])
    kls = model.kl_terms(t)
    torch.testing.assert_close(nelbo, model.backbone.nll(x, rgb, log_m) + kls["scene_kl"] + kls["slot_kl"])


def test_trains_through_the_shared_loop_and_round_trips(tmp_path, train_two_steps):
    model = _model(decoder="separate")
    train_two_steps(model, SIZE)
    assert int(model.geco.steps) == 2 and int(model.backbone.geco.steps) == 2
    model.save_pretrained(tmp_path / "model")
    again = SRI.from_pretrained(tmp_path / "model")
    assert again.config == model.config
    x = torch.rand(2, 3, SIZE, SIZE)
    model.eval(), again.eval()
    torch.manual_seed(0)
    a = model(x)
    torch.manual_seed(0)
    b = again(x)
    torch.testing.assert_close(a.loss, b.loss)
    torch.testing.assert_close(a.recon, b.recon)
    g = lambda: torch.Generator().manual_seed(5)
    torch.testing.assert_close(model.sample(2, generator=g())["images"], again.sample(2, generator=g())["images"])


def _cli(root, stage, dataset, *sets):
    import os
    import subprocess
    import sys
    from pathlib import Path
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "OCREPRO_OUTPUT_ROOT": str(root), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "papers.sri.pipeline", stage, "--dataset", dataset, "--profile", "smoke"]
    return subprocess.run(cmd + [a for s in sets for a in ("--set", s)], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=600)


def test_smoke_pipeline_through_the_cli(tmp_path):
    """prepare -> train -> baseline -> evaluate -> report on ShapeStacks, shrunk; without a judge S-Acc says
    which command trains one instead of printing a number."""
    import json
    small = ["data.n_train=4", "data.n_eval=4", "train.steps=1", "train.save_every=1", "train.batch_size=2",
             "eval.n_samples=4", "eval.bpd_n=4", "eval.ari_n=4", "eval.s_acc_n=4", "eval.order_n=4",
             "eval.temperatures=[1.0]", "eval.other_slots=[3]"]
    for stage in ("prepare", "train", "baseline", "evaluate", "report"):
        out = _cli(tmp_path, stage, "shapestacks", *small)
        assert out.returncode == 0, (stage, out.stderr[-2000:])
    seed = tmp_path / "reports/sri/shapestacks-smoke/seeds/seed0"
    m = json.loads((seed / "metrics.json").read_text())
    assert m["model"] == "papers.sri.model:SRI" and m["steps"] == 1 and m["profile"] == "smoke"
    assert m["metrics"]["n"] == 4 and m["metrics"]["n_bpd"] == 4 and m["generation_order"]["n"] == 4
    assert "no S-Acc judge" in m["s_acc"]["status"]
    assert m["baseline"]["model"] == "common.models.genesis_v2:GenesisV2" and "metrics" in m["baseline"]
    assert m["baseline"]["label"].endswith("(shapestacks_mog.yaml)")
    assert {"temperatures", "other_slots", "imagination"} <= set(m["figures"])
    assert all((seed / f).is_file() for f in ("samples.png", "imagination.png", "baseline/samples.png"))
    report = (tmp_path / "reports/sri/shapestacks-smoke/report.md").read_text()
    assert "not a replication" in report and "Table 2 (SRI-MoG)" in report
    table4 = "| baseline GENv2-MoG: -ELBO (bpd) (Table 4, GENv2*: 5,000 validation scenes; ours: as above) | 0.821 *"
    assert table4 in report
    assert "background in the same slot" in report and "% (slot " in report  # the order, over seeds
    from common.hub import with_evaluation  # what `make publish ... METRICS=` uploads: the card carries the metrics
    card = with_evaluation(tmp_path / "runs/sri/shapestacks-smoke/seed0", seed / "metrics.json", tmp_path / "card")
    assert f"| metrics.fid | {m['metrics']['fid']} |" in (card / "README.md").read_text()
    assert json.loads((card / "metrics.json").read_text()) == m and SRI.from_pretrained(card).config.decoder == "shared"
    refused = _cli(tmp_path, "baseline", "clevr6_emorl")
    assert refused.returncode == 2 and "no GENESIS-v2 baseline" in refused.stderr


def test_each_listed_baseline_has_its_shared_genesis_config():
    """params.yaml's sri.baselines train GENESIS-v2 with its autoregressive prior and the SRI config's likelihood."""
    import yaml
    from pathlib import Path

    from common.pipeline import Stage
    from common.train.experiment import load_experiment
    from papers.sri.evaluate import baseline_stage
    settings = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())["sri"]
    for dataset in settings["baselines"]:
        stage = Stage("sri", dataset, "smoke")
        base = baseline_stage(stage)
        genesis = load_experiment(base.config_path, "smoke").model_config
        sri = stage.experiment().model_config["genesis_v2"]
        assert genesis["prior"] == "autoregressive" and genesis["likelihood"] == sri["likelihood"], dataset
        assert (genesis["sigma"], genesis["num_slots"]) == (sri["sigma"], sri["num_slots"]), dataset
    assert all(baseline_stage(Stage("sri", d, "smoke")) is None for d in settings["variants"])  # ablations too
    assert set(settings["baselines"]) | set(settings["variants"]) == set(settings["datasets"])
    for split in ("baselines", "variants"):  # the evaluation stages' lists (by the S-Acc judge): the same configs
        assert sorted(settings[f"{split}_shapestacks"] + settings[f"{split}_other"]) == sorted(settings[split])
    paper = baseline_stage(Stage("sri", "clevr6", "paper"))  # App. A.4: baselines train "the same setup as SRI"
    assert paper.experiment().train.steps == Stage("sri", "clevr6", "paper").experiment().train.steps == 425_000


@pytest.mark.slow  # 50 s (MuJoCo scenes, the FID network): `make test-slow`
def test_emorl_baseline_through_the_cli(tmp_path):
    """Table 2's EMORL row: EfficientMORL trained on SRI's data and evaluated as SRI is (FID, bits/dim, ARI-FG,
    the generation order of its independent slots), with no baseline of its own."""
    import json
    small = ["data.n_train=4", "data.n_eval=4", "train.steps=1", "train.save_every=1", "train.batch_size=2",
             "eval.n_samples=4", "eval.bpd_n=4", "eval.ari_n=4", "eval.s_acc_n=4", "eval.order_n=4",
             "eval.temperatures=[1.0]"]
    for stage in ("prepare", "train", "evaluate", "report"):
        out = _cli(tmp_path, stage, "objects_room_emorl_baseline", *small)
        assert out.returncode == 0, (stage, out.stderr[-2000:])
    m = json.loads((tmp_path / "reports/sri/objects_room_emorl_baseline-smoke/seeds/seed0/metrics.json").read_text())
    assert m["model"] == "papers.emorl.model:EfficientMORL" and m["metrics"]["n"] == 4
    assert m["metrics"]["n_bpd"] == 4 and m["generation_order"]["n"] == 4 and "fid" in m["metrics"]
    assert m["baseline"]["status"].startswith("none of its own") and "s_acc" not in m
    report = (tmp_path / "reports/sri/objects_room_emorl_baseline-smoke/report.md").read_text()
    assert "EMORL: FID (Table 2) | 178.3 ± 27" in report and "| EfficientMORL (ours) |" in report
    assert "GENESIS-v2 baseline (ours)" not in report and "not a replication" in report


def test_genv2_plus_scene_variable_trains_genesis_through_its_scene_conditioned_prior(tmp_path):
    """Table 4's baseline: GENESIS-v2's encoder learns from the KL against p(z | z_<k, s) (unlike SRI, where
    nothing of L_SRI reaches it), Relate reads detached samples, and the model round-trips."""
    from papers.sri.scene_baseline import GenesisV2Scene, GenesisV2SceneConfig
    torch.manual_seed(0)
    model = GenesisV2Scene(GenesisV2SceneConfig(genesis_v2=_genesis(), scene_dim=24))
    x = torch.rand(2, 3, SIZE, SIZE)
    t = model.terms(x)
    t["slot_kl"].sum().backward()
    assert all(p.grad is not None for p in model.genesis.encoder.parameters())  # q(z | x) learns from p(z | s)
    assert all(p.grad is not None for p in model.relate.parameters())  # through s into the prior
    assert model.genesis.decoder.net[0].weight.grad is None  # the slot KL does not touch the decoder
    model.zero_grad()
    out = model(x)
    out.check(x)
    out.loss.backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    model.after_step(out, True)
    assert int(model.genesis.geco.steps) == 1
    model.save_pretrained(tmp_path / "m")
    again = GenesisV2Scene.from_pretrained(tmp_path / "m")
    g = lambda: torch.Generator().manual_seed(1)
    torch.testing.assert_close(model.sample(2, 0.5, g())["images"], again.sample(2, 0.5, g())["images"])
    with pytest.raises(ValueError, match="set genesis_v2.prior: independent"):
        GenesisV2Scene(GenesisV2SceneConfig(genesis_v2=GenesisV2Config(resolution=(SIZE, SIZE), num_slots=4,
                                                                       feat_dim=16)))
