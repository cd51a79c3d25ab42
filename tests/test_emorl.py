import json
import os
from dataclasses import replace
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

from common.prob import DiagonalGaussian
from papers.emorl.model import EfficientMORL, EMORLConfig
from papers.emorl.modules import DualGRU

ROOT = Path(__file__).resolve().parents[1]
TINY = EMORLConfig(resolution=(16, 16), num_slots=3, slot_dim=8, encoder_channels=(8, 8), decoder="small")


def test_dual_gru_equals_two_separate_grus():
    gru = DualGRU(5)
    theta, lam = torch.randn(4, 5), torch.randn(4, 10)
    fused = gru(theta, lam)
    torch.testing.assert_close(fused[:, :5], gru.gru_mu(theta, lam[:, :5]))
    torch.testing.assert_close(fused[:, 5:], gru.gru_s(theta, lam[:, 5:]))


def test_posterior_is_equivariant_to_shuffling_z0(monkeypatch):
    """App. A.1: permuting z^0 permutes every layer's posterior parameters the same way."""
    monkeypatch.setattr(DiagonalGaussian, "rsample", lambda self, temperature=1.0: self.mean)
    model = EfficientMORL(TINY).eval()
    x, z0, perm = torch.rand(2, 3, 16, 16), torch.randn(2, 3, 8), torch.tensor([2, 0, 1])
    q, _, _, lam = model.bottom_up(x, z0)
    q_p, _, _, lam_p = model.bottom_up(x, z0[:, perm])
    for a, b in zip(q, q_p):
        torch.testing.assert_close(b.mean, a.mean[:, perm], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(b.var, a.var[:, perm], rtol=1e-5, atol=1e-5)
    out, out_p = model(x, steps=2, z0=z0), model(x, steps=2, z0=z0[:, perm])
    torch.testing.assert_close(out_p.slots, out.slots[:, perm], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out_p.masks, out.masks[:, perm], rtol=1e-4, atol=1e-4)


def test_refinement_inputs_carry_no_second_order_terms():
    model = EfficientMORL(TINY)
    seen = []
    model.refine.register_forward_pre_hook(lambda mod, args: seen.append(args[1]))
    out = model(torch.rand(2, 3, 16, 16), steps=3)
    assert len(seen) == 3 and all(g.grad_fn is None and not g.requires_grad for g in seen)
    out.loss.backward()  # the parameter gradients exist without a second-order graph
    assert model.refine.delta_mu.weight.grad is not None


@pytest.mark.parametrize("geco_target", [None, -1.0])
def test_one_decoder_backward_per_iteration_gives_the_textbook_gradients(geco_target):
    """Eq. 8's loss and f_phi's input, with every decoder pass before the last backpropagated once
    (`_refined_nll`), equal the straightforward computation that decodes each z^{L,i} with its full graph,
    takes dL_i/dlambda by autograd and backpropagates the weighted sum of the iteration losses."""
    from dataclasses import replace
    model = EfficientMORL(replace(TINY, geco_target=geco_target, geco_warm_start=0))
    if model.geco is not None:  # active, with the NLL's weight softplus(2) != 1
        model.geco.steps.fill_(1)
        model.geco.zeta.fill_(2.0)
    x, steps = torch.rand(3, 3, 16, 16), 2
    torch.manual_seed(0)
    its = model.infer(x, steps)
    weights = model.iteration_weights(steps)
    fast = sum(w * model._loss(n, k) for w, n, k in zip(weights, its["nll"], its["kl"]))
    nll = [model.nll(x, *model.decode(z)) for z in its["z"]]  # each decoder pass with its whole graph
    textbook = sum(w * model._loss(n, k) for w, n, k in zip(weights, nll, its["kl"]))
    torch.testing.assert_close(fast, textbook)
    params = [p for p in model.parameters() if p.requires_grad]
    g_fast = torch.autograd.grad(fast, params, retain_graph=True, allow_unused=True)
    g_book = torch.autograd.grad(textbook, params, retain_graph=True, allow_unused=True)
    for (name, _), a, b in zip(model.named_parameters(), g_fast, g_book):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=lambda m: f"{name}: {m}")
    assert any(a.abs().max() > 0 for a in g_fast if a is not None)
    nll_weight = 1.0 if model.geco is None else model.geco.nll_weight()  # f_phi's input at i = 1
    grad, = torch.autograd.grad((nll_weight * nll[0] + its["kl"][0]).sum(), its["lambda"][0], retain_graph=True)
    delta, _ = model.refine(its["lambda"][0], grad, None)
    torch.testing.assert_close(its["lambda"][1], its["lambda"][0] + delta)


def test_refinement_works_under_no_grad_with_frozen_parameters():
    """Evaluation code runs under no_grad with frozen weights: the refinement must still see dL/dlambda
    and give exactly what it gives with gradients on."""
    model, x = EfficientMORL(TINY).eval(), torch.rand(2, 3, 16, 16)
    torch.manual_seed(0)
    live = model(x, steps=2).slots.detach()
    model.requires_grad_(False)
    with torch.no_grad():
        torch.manual_seed(0)
        frozen = model(x, steps=2).slots
        torch.manual_seed(0)
        unrefined = model(x, steps=0).slots
    torch.testing.assert_close(frozen, live, rtol=0, atol=0)
    assert (frozen - unrefined).abs().max() > 1e-4  # two refinement steps moved the posterior


def test_loss_weights_eq_8_and_the_official_switch():
    model = EfficientMORL(TINY)
    assert model.iteration_weights(3) == [1.0, 0.75, 0.5, 0.25]
    assert model.iteration_weights(1) == [1.0, 0.5]
    official = EfficientMORL(EMORLConfig(**{**TINY.__dict__, "loss_weights": "official"}))
    assert official.iteration_weights(3) == [1.5, 1.25, 1.0, 0.75]


def test_signed_encoder_input_changes_only_what_the_encoder_reads():
    """encoder_input "signed" (the official code; LOM App. A.4.1) feeds the encoder 2x - 1 and nothing else: the
    likelihood still scores x in [0,1], so with the same weights it equals the "unit" model with a 2x - 1 encoder."""
    torch.manual_seed(0)
    signed = EfficientMORL(EMORLConfig(**{**TINY.__dict__, "encoder_input": "signed"}))
    unit = EfficientMORL(TINY)
    unit.load_state_dict(signed.state_dict())
    seen = []
    signed.encoder.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    unit.encoder.register_forward_pre_hook(lambda module, args: (2 * args[0] - 1,))
    x = torch.rand(2, 3, 16, 16)
    torch.manual_seed(1)
    a = signed(x, steps=1)
    torch.manual_seed(1)
    b = unit(x, steps=1)
    torch.testing.assert_close(seen[0], 2 * x - 1)
    torch.testing.assert_close(a.loss, b.loss)
    torch.testing.assert_close(a.recon, b.recon)
    with pytest.raises(ValueError, match="encoder_input"):
        EfficientMORL(EMORLConfig(**{**TINY.__dict__, "encoder_input": "minus_one_to_one"}))


def test_loss_is_the_weighted_sum_of_iteration_elbos(monkeypatch):
    model = EfficientMORL(TINY)
    torch.manual_seed(0)
    out = model(torch.rand(2, 3, 16, 16), steps=2)
    torch.manual_seed(0)
    its = model.infer(torch.rand(2, 3, 16, 16), 2)
    expected = sum(w * (n + k).mean() for w, n, k in zip([1.0, 2 / 3, 1 / 3], its["nll"], its["kl"]))
    torch.testing.assert_close(out.loss, expected)


def test_bf16_autocast_keeps_attention_kl_likelihood_and_geco_in_fp32():
    """§ Speed on a GPU: bf16 where it is safe; the attention softmax, posteriors and KL, the likelihood
    and GECO's loss stay fp32 (the convolutions do run in bf16)."""
    from dataclasses import replace
    model = EfficientMORL(replace(TINY, geco_target=-1.0, geco_warm_start=0))
    conv_dtypes = []
    model.decoder.net[-1].register_forward_hook(lambda mod, inputs, out: conv_dtypes.append(out.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        its = model.infer(torch.rand(2, 3, 16, 16), steps=1)
        _, prior = model.hierarchical_kl(its["posteriors"], its["samples"])
        loss = model(torch.rand(2, 3, 16, 16), steps=1).loss
    assert conv_dtypes and set(conv_dtypes) == {torch.bfloat16}
    assert {a.dtype for a in its["attention"]} == {torch.float32}
    assert {t.dtype for q in [*its["posteriors"], prior] for t in (q.mean, q.var)} == {torch.float32}
    assert {t.dtype for name in ("kl", "kl_refinement", "nll") for t in its[name]} == {torch.float32}
    assert loss.dtype == torch.float32


def test_refinement_curriculum():
    model = EfficientMORL(EMORLConfig(**{**TINY.__dict__, "curriculum": ((100, 1),), "test_refinement_steps": None}))
    assert model.refinement_steps(0) == 3 and model.refinement_steps(99) == 3 and model.refinement_steps(100) == 1
    assert model.eval().refinement_steps(None) == 1


def test_clevr6_parameter_count_is_close_to_the_paper():
    model = EfficientMORL(EMORLConfig(resolution=(96, 96), num_slots=7, slot_dim=64, decoder="iodine",
                                      likelihood="mixture", sigma=0.1))
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - 666_000) / 666_000 < 0.01, n  # App. E.3: ~666K


def test_geco_activates_and_updates(monkeypatch):
    model = EfficientMORL(EMORLConfig(**{**TINY.__dict__, "geco_target": -1.0, "geco_warm_start": 1}))
    out = model(torch.rand(2, 3, 16, 16), steps=1)
    model.after_step(out)
    assert model.geco.active and model.geco.c_ema.item() == pytest.approx(-1.0 * 3 * 256 - out.logs["nll"].item())


def test_samples_are_independent_slots_decoded_as_the_paper_draws_them():
    """§3.1: K slots from N(0, tau^2 I) (the reversed hierarchy's top), decoded and composited; the same
    generator gives the same samples (SRI's incoherent-scene baseline reads these)."""
    model = EfficientMORL(TINY).eval()
    out = model.sample(3, 0.5, generator=torch.Generator().manual_seed(4))
    z = 0.5 * torch.randn(3, 3, 8, generator=torch.Generator().manual_seed(4))  # [n,K,D]
    torch.testing.assert_close(out["slots"], z)
    rgb, log_m = model.decode(z)
    torch.testing.assert_close(out["images"], (log_m.exp() * rgb).sum(1))
    torch.testing.assert_close(out["masks"], log_m.exp())


@pytest.mark.parametrize("steps", [0, 1])
def test_negative_elbo_is_the_normalised_nll_plus_the_kl_to_the_sampling_prior(steps):
    """-ELBO of the model sample() draws from: z^L ~ N(0, I) decoded; q is the last iteration's lambda."""
    model = EfficientMORL(replace(TINY, test_refinement_steps=steps)).eval()
    x = torch.rand(2, 3, 16, 16)
    torch.manual_seed(0)
    value = model.negative_elbo(x)
    torch.manual_seed(0)
    its = model.infer(x, steps)
    rgb, log_m = model.decode(its["z"][-1])
    mean = (log_m.exp() * rgb).sum(1)  # [B,3,H,W]
    nll = -torch.distributions.Normal(mean, TINY.sigma).log_prob(x).sum((1, 2, 3))  # with 1/2 log 2pi
    mu, pre_var = its["lambda"][-1].detach().chunk(2, -1)
    std = torch.log1p(pre_var.exp() + 1e-5).sqrt()  # EMORL App. F.1 Eqs. 10-11: sigma^2 = log(1 + e^o + eps)
    kl = torch.distributions.kl_divergence(torch.distributions.Normal(mu, std), torch.distributions.Normal(0.0, 1.0))
    torch.testing.assert_close(value, (nll + kl.sum((1, 2))).detach(), rtol=1e-4, atol=1e-2)
    with pytest.raises(ValueError, match="reversed priors"):
        EfficientMORL(replace(TINY, prior="bottom_up")).negative_elbo(x)


def test_from_pretrained_round_trip(tmp_path):
    model = EfficientMORL(TINY).eval()
    model.save_pretrained(tmp_path / "m")
    loaded = EfficientMORL.from_pretrained(tmp_path / "m")
    x, z0 = torch.rand(2, 3, 16, 16), torch.randn(2, 3, 8)
    torch.manual_seed(1)
    a = model(x, steps=1, z0=z0)
    torch.manual_seed(1)
    b = loaded(x, steps=1, z0=z0)
    torch.testing.assert_close(a.recon, b.recon, rtol=0, atol=0)


def _pipeline(tmp_path, stage, *extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OCREPRO_OUTPUT_ROOT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    sets = ["train.steps=4", "train.save_every=2", "data.n_train=16", "data.n_eval=8",
            "eval.refinement_sweep=[0,1]", "eval.activeness_images=4"]
    cmd = [sys.executable, "-m", "papers.emorl.pipeline", stage, "--dataset", "tetrominoes", "--profile", "smoke"]
    return subprocess.run(cmd + [a for s in sets for a in ("--set", s)] + list(extra), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_smoke_pipeline_through_the_real_cli(tmp_path):
    """Every stage through the real CLI; seed 1 is a second run whose report row is the mean ± std of both."""
    stages = [("prepare",), ("train",), ("baseline",), ("evaluate",), ("train", "--seed", "1"),
              ("evaluate", "--seed", "1"), ("report", "--seeds", "0,1")]
    for stage in stages:
        out = _pipeline(tmp_path, *stage)
        assert out.returncode == 0, (stage, out.stderr[-2000:])
    report = tmp_path / "reports" / "emorl" / "tetrominoes-smoke"
    seeds = [json.loads((report / f"seeds/seed{k}/metrics.json").read_text()) for k in (0, 1)]
    metrics = seeds[0]
    assert metrics["profile"] == "smoke" and metrics["metrics"]["n_images"] == 8
    assert set(metrics["refinement_sweep"]) == {"0", "1", "3"} and "ari_ratio_i0_over_i1" in metrics
    assert {"dci", "activeness"} <= set(metrics["baseline"]) and metrics["baseline"]["steps"] == 4
    assert [m["seed"] for m in seeds] == [0, 1] and seeds[1]["run"].endswith("seed1")
    assert "not trained" in seeds[1]["baseline"]["status"]
    text = (report / "report.md").read_text()
    assert "Smoke profile: these numbers are not a replication" in text and "98.2 ± 1.8" in text
    ari = np.array([m["metrics"]["ari_fg"] for m in seeds]) * 100
    assert f"| ARI-FG (%) | 98.2 ± 1.8 (5 seeds) | {ari.mean():.1f} ± {ari.std():.1f} |" in text
    assert all((report / "seeds/seed0" / f).is_file()
               for f in ("decomposition.png", "intermediate_posteriors.png", "traversals.png"))
    assert "(seeds/seed0/decomposition.png)" in text and "2 seed(s)" in text
    assert metrics["data_source"] == "common.data.tetrominoes"
    assert [(t["from"], t["to"]) for t in metrics["training"]] == [(0, 4)]
    assert "- seed 0 (scenes: common.data.tetrominoes): steps 0-4: CPU" in text and "- seed 1 (scenes:" in text
    assert "Warning" not in text  # no library warnings in the rendered report
    missing = _pipeline(tmp_path, "report", "--seeds", "0,2")
    assert missing.returncode == 2 and "seed(s) [2]" in missing.stderr


def test_geco_state_survives_resume(tmp_path):
    """N steps straight == N/2 + save + fresh process + N/2, GECO buffers included (bitwise on CPU)."""
    geco = ["model_config.geco_warm_start=1"]
    runs = {}
    for name, extra in (("straight", []), ("resumed", ["--stop-at", "2"])):
        root = tmp_path / name
        assert _pipeline(root, "prepare").returncode == 0
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        cfg = ROOT / "papers/emorl/configs/tetrominoes.yaml"
        base = [sys.executable, "-m", "common.train", str(cfg), "--profile", "smoke", "--out", str(root / "run"),
                "--set", f"data.path={root / 'data/emorl/tetrominoes-smoke'}", "--set", "train.steps=4",
                "--set", "train.save_every=2"] + [a for s in geco for a in ("--set", s)]
        first = subprocess.run(base + extra, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert first.returncode == 0, first.stderr[-2000:]
        if extra:
            second = subprocess.run(base + ["--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
            assert second.returncode == 0, second.stderr[-2000:]
        runs[name] = safetensors.torch.load_file(str(root / "run" / "model" / "model.safetensors"))
    a, b = runs["straight"], runs["resumed"]
    assert {"geco.zeta", "geco.c_ema", "geco.steps"} <= set(a)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["geco.steps"].item() == 4 and a["geco.c_ema"].item() != 0


def test_pipeline_budget_stop_then_the_same_command_resumes(tmp_path):
    """`train --max-minutes 0` saves step 1 and exits 3; the same command again resumes the unfinished run
    (no --resume) and ends with the weights of an uninterrupted run."""
    weights = {}
    for name, budgets in (("straight", [None]), ("stopped", ["0", "60"])):
        root = tmp_path / name
        assert _pipeline(root, "prepare").returncode == 0
        for budget in budgets:
            out = _pipeline(root, "train", *(["--max-minutes", budget] if budget else []))
            assert out.returncode == (3 if budget == "0" else 0), out.stderr[-2000:]
            if budget == "0":
                assert "stopped at step 1 of 4" in out.stderr and "same command again" in out.stderr
            if budget == "60":
                assert "resuming the unfinished run" in out.stderr
        weights[name] = safetensors.torch.load_file(str(root / "runs/emorl/tetrominoes-smoke/seed0/model/model.safetensors"))
    a, b = weights["straight"], weights["stopped"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    root = tmp_path / "changed"  # an interrupted run whose config changed since is stale: a fresh run replaces it
    assert _pipeline(root, "prepare").returncode == 0
    assert _pipeline(root, "train", "--max-minutes", "0").returncode == 3
    out = _pipeline(root, "train", "--set", "train.lr=0.001")
    assert out.returncode == 0 and "not resumed" in out.stderr and "train.lr" in out.stderr
