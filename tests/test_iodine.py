import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import AffineTransform, Normal, SigmoidTransform, TransformedDistribution, Uniform

from common.prob import DiagonalGaussian
from papers.iodine.model import IODINE, IODINEConfig, layer_norm_neg_exp, leave_one_out

TINY = IODINEConfig(resolution=(12, 12), num_slots=3, latent_dim=6, iterations=3, decoder_channels=(8, 4),
                    refine_channels=(8, 8), refine_mlp=(16,), lstm_size=8)
SMALL = IODINEConfig(resolution=(4, 4), num_slots=2, latent_dim=3, iterations=1, decoder_channels=(4, 4),
                     refine_channels=(4,), refine_mlp=(8,))


def test_leave_one_out_against_brute_force():
    log_m = torch.randn(2, 3, 1, 4, 4, dtype=torch.float64).log_softmax(1)
    log_p = torch.randn(2, 3, 1, 4, 4, dtype=torch.float64)
    got = leave_one_out(log_m, log_p)
    m, p = log_m.exp(), log_p.exp()
    for k in range(3):
        others = [j for j in range(3) if j != k]
        p_minus = sum(m[:, j] * p[:, j] for j in others) / sum(m[:, j] for j in others)
        torch.testing.assert_close(got[:, k], torch.log(p_minus))


def test_slot_permutation_equivariance(monkeypatch):
    monkeypatch.setattr(DiagonalGaussian, "rsample", lambda self, temperature=1.0: self.mean)
    model = IODINE(TINY)
    x, lam, perm = torch.rand(2, 3, 12, 12), torch.randn(2, 3, 12), torch.tensor([1, 2, 0])
    a, b = model.infer(x, lam=lam), model.infer(x, lam=lam[:, perm])
    for la, lb in zip(a["lambda"], b["lambda"]):
        torch.testing.assert_close(lb, la[:, perm], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(b["masks"][-1], a["masks"][-1][:, perm], rtol=1e-4, atol=1e-4)


# -- App. B's refinement inputs --------------------------------------------------------------------
def _hand_made_batch():
    """x [1,3,4,4]; two slots' means near x and mask logits; lambda [1,2,6] different per slot."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 4, 4, generator=g)
    means = x.unsqueeze(1) + 0.1 * torch.randn(1, 2, 3, 4, 4, generator=g)
    logits = 2 * torch.randn(1, 2, 1, 4, 4, generator=g)
    lam = 0.5 * torch.randn(1, 2, 6, generator=g)
    return x, means, logits, lam


def _ln(a: torch.Tensor, dims=(2, 3, 4)) -> torch.Tensor:
    mean = a.mean(dims, keepdim=True)
    return (a - mean) / torch.sqrt(((a - mean) ** 2).mean(dims, keepdim=True) + 1e-5)


def _expected_inputs(x, means, logits, lam) -> dict[str, torch.Tensor]:
    """App. B's table computed here, in float64, from its definitions (sigma_x = 0.1, prior N(0, I))."""
    x, means, logits, lam = (a.double() for a in (x, means, logits, lam))
    m = logits.softmax(1)  # [1,2,1,4,4]
    density = lambda mu: Normal(mu, 0.1).log_prob(x.unsqueeze(1)).sum(2, keepdim=True).exp()  # [1,2,1,4,4]
    mixture = lambda m_, mu: -torch.log((m_ * density(mu)).sum(1)).sum()  # the NLL
    mu_leaf, m_leaf = means.clone().requires_grad_(), m.clone().requires_grad_()
    d_means, = torch.autograd.grad(mixture(m, mu_leaf), mu_leaf)
    d_mask, = torch.autograd.grad(mixture(m_leaf, means), m_leaf)
    lam_leaf = lam.clone().requires_grad_()
    mu, log_sigma = lam_leaf.chunk(2, -1)
    kl = (0.5 * (torch.exp(2 * log_sigma) + mu ** 2 - 1) - log_sigma).sum()
    d_lam, = torch.autograd.grad(kl, lam_leaf)  # the NLL does not reach lambda here (decode ignores z)
    p_k = density(means)  # p(x|k), joint over RGB
    log_px = torch.log((m * p_k).sum(1, keepdim=True))  # [1,1,1,4,4]
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 4), torch.linspace(-1, 1, 4), indexing="ij")
    return {
        "image": x.unsqueeze(1).expand(1, 2, 3, 4, 4), "means": means, "mask": m, "mask_logits": logits,
        "grad_means": _ln(d_means), "grad_mask": _ln(d_mask),
        "mask_posterior": m * p_k / (m * p_k).sum(1, keepdim=True),
        "likelihood": _ln(log_px).expand(1, 2, 1, 4, 4),  # the mixture's log p(x|z), the same for both slots
        "leave_one_out": _ln(torch.log(p_k.flip(1))),  # K = 2: without slot k the mixture is the other slot
        "coordinates": torch.stack([ys, xs]).double().expand(1, 2, 2, 4, 4),
        "grad_lambda": _ln(d_lam, dims=-1), "lambda": lam,
    }


def test_refinement_inputs_channel_by_channel_against_app_b(monkeypatch):
    """What f_phi receives, channel by channel, on a hand-made batch (decode returns fixed means/logits)."""
    x, means, logits, lam = _hand_made_batch()
    model = IODINE(SMALL)
    keep = lambda a, z: a + 0 * z.sum(-1)[..., None, None, None]  # fixed values, still a function of z
    monkeypatch.setattr(model, "decode", lambda z: (keep(means, z), keep(logits, z)))
    seen = []
    model.refine.register_forward_pre_hook(lambda mod, args: seen.append(args))
    model.infer(x, 1, lam=lam)
    spatial, flat, _ = seen[0]
    spatial, flat = spatial.view(1, 2, 17, 4, 4), flat.view(1, 2, 12)
    layout = {"image": (0, 3), "means": (3, 6), "mask": (6, 7), "mask_logits": (7, 8), "grad_means": (8, 11),
              "grad_mask": (11, 12), "mask_posterior": (12, 13), "likelihood": (13, 14), "leave_one_out": (14, 15),
              "coordinates": (15, 17)}
    expected = _expected_inputs(x, means, logits, lam)
    for name, (a, b) in layout.items():
        torch.testing.assert_close(spatial[:, :, a:b].double(), expected[name], atol=1e-4, rtol=1e-4, msg=name)
    torch.testing.assert_close(flat[..., :6].double(), expected["grad_lambda"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(flat[..., 6:].double(), expected["lambda"])
    assert torch.equal(spatial[:, 0, 13], spatial[:, 1, 13])


def test_stop_gradients_follow_app_b():
    """Gradients reach means, logits and lambda through every input App. B does not mark SG, and
    through none of the SG ones (the gradient inputs and the two likelihoods)."""
    x, means, logits, lam = _hand_made_batch()
    model = IODINE(SMALL)
    means, logits, lam = (a.clone().requires_grad_() for a in (means, logits, lam))
    inputs = model.refinement_inputs(x, lam, means, logits, model.terms(x, lam, means, logits))
    paths = {"image": set(), "means": {"means"}, "mask": {"logits"}, "mask_logits": {"logits"},
             "grad_means": set(), "grad_mask": set(), "grad_lambda": set(), "lambda": {"lambda"},
             "mask_posterior": {"means", "logits"}, "likelihood": set(), "leave_one_out": set(), "coordinates": set()}
    assert set(inputs) == set(paths)
    for name, a in inputs.items():
        if not a.requires_grad:
            reached = set()
        else:
            grads = torch.autograd.grad((a * torch.randn_like(a)).sum(), [means, logits, lam], allow_unused=True,
                                        retain_graph=True)
            reached = {n for n, g in zip(("means", "logits", "lambda"), grads) if g is not None and g.abs().sum() > 0}
        assert reached == paths[name], name
    assert set(IODINE.STOP_GRADIENT) == {n for n, p in paths.items() if not p} - {"image", "coordinates"}


def test_mask_gradient_input_is_finite_where_exp_overflows():
    """dL/dm_k = -p(x|k)/p(x) overflows float32 where a slot's mask is ~e^-400 and its component
    explains the pixel; the input is its layer norm, computed without forming the ratio."""
    r = torch.randn(2, 3, 1, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(layer_norm_neg_exp(r), F.layer_norm(-r.exp(), r.shape[2:]))
    model = IODINE(SMALL)
    x, means, logits, lam = _hand_made_batch()
    means[:, 1] = x + 3  # slot 1's component is far from the image ...
    logits[:, 0] = -400.0  # ... but it takes every pixel: slot 0's mask is ~e^-400
    lam.requires_grad_()
    means.requires_grad_()
    t = model.terms(x, lam, means, logits)
    got = model.refinement_inputs(x, lam, means, logits, t)["grad_mask"]
    r64 = t["log_p"].double() - t["log_px"].double()
    assert r64.max() > 300 and not torch.isfinite(F.layer_norm(-t["log_p"].sub(t["log_px"]).exp(), (1, 4, 4))).all()
    u = (r64[:, 0] - r64[:, 0].max()).exp()  # slot 0: LN is scale-free, and eps * e^(-2 max r) ~ 0 here
    torch.testing.assert_close(got[:, 0].double(), -(u - u.mean()) / u.std(unbiased=False), atol=1e-4, rtol=1e-4)
    assert r64[:, 1].max() < -900 and (got[:, 1] == 0).all()  # slot 1: ratios ~e^-900 vary far below eps


# -- iterations and the loss -------------------------------------------------------------------------
@pytest.mark.parametrize("iterations", [1, 2, 3, 4, 5, 6])
def test_every_parameter_gets_a_gradient_for_every_t(iterations):
    """T counts refinement updates: even T = 1 (Fig. 8) trains f_phi."""
    torch.manual_seed(0)
    model = IODINE(replace(TINY, iterations=iterations))
    model(torch.rand(2, 3, 12, 12)).loss.backward()
    zero = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    # with one update the LSTM's recurrent weights multiply its zero initial state only
    assert zero == (["refine.lstm.weight_hh"] if iterations == 1 else [])


def test_loss_is_the_t_over_t_weighted_sum_of_the_per_update_losses(monkeypatch):
    """L = sum_{t=0..T} (t/T) L^(t), L^(t) the negative ELBO of the posterior after t updates (t = 0:
    the learned initial posterior), recomputed here from each lambda^(t)."""
    monkeypatch.setattr(DiagonalGaussian, "rsample", lambda self, temperature=1.0: self.mean)
    model, x, t_max = IODINE(TINY), torch.rand(2, 3, 12, 12), TINY.iterations
    with torch.no_grad():
        model.lambda1.normal_()
    out, its = model(x), model.infer(x)
    assert len(its["lambda"]) == t_max + 1
    torch.testing.assert_close(its["lambda"][0], model.lambda1.expand(2, 3, -1))

    def neg_elbo(lam):
        mu, log_sigma = lam.chunk(2, -1)
        means, logits = model.decode(mu)
        log_p = Normal(means, 0.1).log_prob(x.unsqueeze(1)).sum(2)  # [B,K,H,W]
        nll = -torch.logsumexp(logits[:, :, 0].log_softmax(1) + log_p, 1).flatten(1).sum(1)
        kl = (0.5 * (torch.exp(2 * log_sigma) + mu ** 2 - 1) - log_sigma).sum((1, 2))
        return (nll + kl).mean()

    expected = sum(t / t_max * neg_elbo(lam) for t, lam in enumerate(its["lambda"]))
    torch.testing.assert_close(out.loss, expected)
    assert IODINE.iteration_weights(5) == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])  # = linspace(0, 1, T+1)


def test_gradient_inputs_are_first_order(monkeypatch):
    model = IODINE(TINY)
    seen, original = [], torch.autograd.grad

    def spy(*args, **kwargs):
        assert not kwargs.get("create_graph", False)
        out = original(*args, **kwargs)
        seen.append(out)
        return out

    monkeypatch.setattr(torch.autograd, "grad", spy)
    model(torch.rand(2, 3, 12, 12)).loss.backward()
    assert len(seen) == TINY.iterations and all(not g.requires_grad for gs in seen for g in gs)


# -- likelihoods and the official switches ---------------------------------------------------------
def test_gaussian_likelihood_closed_form():
    model = IODINE(TINY)
    x, means = torch.rand(1, 3, 12, 12), torch.rand(1, 3, 3, 12, 12)
    expected = (-0.5 * ((x.unsqueeze(1) - means) / 0.1) ** 2 - math.log(0.1) - 0.5 * math.log(2 * math.pi)).sum(2, keepdim=True)
    torch.testing.assert_close(model.pixel_log_prob(x, means), expected)


def test_official_switches_against_torch_distributions():
    official = IODINE(replace(TINY, likelihood="logistic", prior_variance=math.log(2), decoder_constant=5.0))
    x, means = torch.rand(1, 3, 12, 12), torch.rand(1, 3, 3, 12, 12)
    logistic = TransformedDistribution(Uniform(torch.zeros_like(means), torch.ones_like(means)),
                                       [SigmoidTransform().inv, AffineTransform(means, 0.03)])
    torch.testing.assert_close(official.pixel_log_prob(x, means),
                               logistic.log_prob(x.unsqueeze(1).expand_as(means)).sum(2, keepdim=True),
                               atol=1e-4, rtol=1e-5)
    lam = torch.randn(2, 3, 12)
    kl = official.terms(x.expand(2, -1, -1, -1), lam, means.expand(2, -1, -1, -1, -1), torch.zeros(2, 3, 1, 12, 12))["kl"]
    q = Normal(lam[..., :6], lam[..., 6:].exp())
    expected = torch.distributions.kl_divergence(q, Normal(0.0, math.sqrt(math.log(2)))).sum((1, 2))
    torch.testing.assert_close(kl, expected)
    seen = []
    official.decoder.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    official.decode(torch.randn(2, 3, 6))
    assert seen[0].shape == (6, 7) and (seen[0][:, -1] == 5.0).all()


def test_clevr_parameter_count_near_the_quoted_size():
    c = IODINEConfig(resolution=(128, 128), num_slots=7, latent_dim=64, decoder_channels=(64, 64, 64, 4),
                     decoder_kernel=3, refine_channels=(64, 64, 64, 64), refine_kernel=3, refine_mlp=(256, 256),
                     lstm_size=256)
    n = sum(p.numel() for p in IODINE(c).parameters())
    assert 2.0e6 < n < 2.75e6, n  # EMORL App. E.3 quotes ~2.75M; ours 2.17M (see papers/iodine/README.md)


def test_from_pretrained_round_trip(tmp_path):
    model = IODINE(TINY).eval()
    model.save_pretrained(tmp_path / "m")
    loaded = IODINE.from_pretrained(tmp_path / "m")
    x = torch.rand(2, 3, 12, 12)
    torch.manual_seed(3)
    a = model(x)
    torch.manual_seed(3)
    b = loaded(x)
    torch.testing.assert_close(a.recon, b.recon, rtol=0, atol=0)


def test_trains_under_bf16_autocast_through_accelerate(tmp_path):
    """The gradient inputs come from autograd.grad inside an autocast forward; training stays finite."""
    from common.train.loop import TrainConfig, Trainer
    model, seen = IODINE(TINY), []
    model.decoder.register_forward_hook(lambda mod, inputs, out: seen.append(out.dtype))
    images = (torch.rand(8, 12, 12, 3) * 255).to(torch.uint8)
    cfg = TrainConfig(steps=2, batch_size=4, save_every=2, log_every=1, mixed_precision="bf16")
    trainer = Trainer(model, images, cfg, tmp_path)
    trainer.fit()
    assert torch.bfloat16 in seen and trainer.state.step == 2
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert all(math.isfinite(float(row["loss"])) for row in trainer.log.rows())


def test_smoke_pipeline_through_the_real_cli(tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "OCREPRO_OUTPUT_ROOT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    sets = ["train.steps=3", "train.save_every=3", "data.n_train=16", "data.n_eval=4", "eval.iterations=6",
            "eval.sweep_iterations=[1, 2]", "eval.multistability_runs=3"]
    for stage in ("prepare", "train", "sweep", "evaluate", "report"):
        cmd = [sys.executable, "-m", "papers.iodine.pipeline", stage, "--dataset", "tetrominoes", "--profile", "smoke"]
        out = subprocess.run(cmd + [a for s in sets for a in ("--set", s)], cwd=root, env=env, capture_output=True,
                             text=True, timeout=600)
        assert out.returncode == 0, (stage, out.stderr[-2000:])
    report = tmp_path / "reports" / "iodine" / "tetrominoes-smoke"
    metrics = json.loads((report / "seeds/seed0/metrics.json").read_text())
    rows = metrics["per_iteration"]
    assert [r["iteration"] for r in rows] == list(range(7)) and metrics["train_iterations"] == 5  # t = 0..6 updates
    assert {k: metrics["metrics"][k] for k in rows[5]} == rows[5] and metrics["metrics"]["n_images"] == 4
    assert [[r["iteration"] for r in metrics["sweep"][t]["per_iteration"]] for t in ("T1", "T2")] == [list(range(7))] * 2
    assert metrics["multistability"]["runs"] == 3 and "probe" in metrics
    figures = report / "seeds/seed0/figures"
    assert {p.name for p in figures.iterdir()} == {"decomposition.png", "iterations.png", "multistability.png"}
    assert (tmp_path / "runs/iodine/tetrominoes-smoke-sweep/seed0/T2/model").is_dir()
    text = (report / "report.md").read_text()
    assert "Smoke profile: these numbers are not a replication" in text and "| 0 | " in text
    assert f"| ARI-FG | 0.995 ± 0.001 (5 seeds) | {metrics['metrics']['ari_fg']:.3f} |" in text
    assert "(seeds/seed0/figures/iterations.png)" in text
    assert metrics["train"]["betas"] == [0.9, 0.999] and "Decoder: 4 convolutional layers" in text
    assert "Adam with beta1 0.9 (App. B" in " ".join(text.split())  # the run's settings, beside App. B's
    assert "Warning" not in text  # no library warnings in the rendered report


def test_refinement_improves_the_elbo_over_iterations_after_training(tmp_path):
    """A briefly trained model: the negative ELBO falls with every update up to the training T."""
    from common.data import generate_split
    from common.train import TrainConfig, Trainer
    torch.manual_seed(0)
    cfg = IODINEConfig(resolution=(16, 16), num_slots=3, latent_dim=8, iterations=4, decoder_channels=(16, 16, 4),
                       decoder_kernel=3, refine_channels=(16, 16), refine_kernel=3, refine_mlp=(32,), lstm_size=32)
    model = IODINE(cfg)
    params = {"size": 16, "max_objects": 2}
    images = torch.from_numpy(generate_split("toy_shapes", 256, 0, params=params)[1]["image"])
    Trainer(model, images, TrainConfig(steps=200, batch_size=16, lr=1e-3, save_every=10_000, log_every=50),
            tmp_path).fit()
    test = torch.from_numpy(generate_split("toy_shapes", 64, 0, split="test", params=params)[1]["image"])
    its = model.eval().infer(test.permute(0, 3, 1, 2).float() / 255, cfg.iterations)
    elbo = [float((n + k).mean()) for n, k in zip(its["nll"], its["kl"])]
    assert len(elbo) == cfg.iterations + 1
    assert all(later < earlier for earlier, later in zip(elbo, elbo[1:])), elbo
    assert elbo[-1] < elbo[0] - 100, elbo  # measured: 329 -> -342 -> -565 -> -618 -> -625 nats (t = 0..4)
