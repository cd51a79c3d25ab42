"""SVQ (papers/svq): block-diagonal layers against independent per-block ones, the quantiser's straight-through
gradient, EMA and dead-code restart on toy streams, slot permutation equivariance, causal decoders, dropout off
at evaluation, the optimiser groups and inf-norm clipping, the dVAE, and from_pretrained round trips."""
import math

import pytest
import torch
from torch import nn

from common.models.dvae import DVAE, gumbel_temperature
from papers.svq.blocks import BlockGRU, BlockLinear
from papers.svq.model import SVQ, BlockSlotAttention, SVQConfig
from papers.svq.prior import PriorConfig, SemanticPrior
from papers.svq.quantiser import BlockCodebooks

SIZE = 32


def _config(**kw) -> SVQConfig:
    base = dict(resolution=(SIZE, SIZE), num_slots=3, blocks=4, block_dim=8, codebook_size=8, cnn_hidden=16,
                feature_dim=32, mlp_hidden=16, vocab=32, dvae_hidden=16, d_model=32, decoder_layers=2, heads=2)
    return SVQConfig(**{**base, **kw})


def _model(**kw) -> SVQ:
    torch.manual_seed(0)
    return SVQ(_config(**kw))


def test_block_gru_is_m_independent_grus():
    torch.manual_seed(0)
    m, dc = 3, 5
    block = BlockGRU(m * dc, m)
    cells = [nn.GRUCell(dc, dc) for _ in range(m)]
    for i, cell in enumerate(cells):
        cell.weight_ih.data.copy_(block.weight_ih[i]), cell.weight_hh.data.copy_(block.weight_hh[i])
        cell.bias_ih.data.copy_(block.bias_ih[i]), cell.bias_hh.data.copy_(block.bias_hh[i])
    x, h = torch.randn(4, m * dc), torch.randn(4, m * dc)
    expected = torch.cat([cells[i](x[:, i * dc:(i + 1) * dc], h[:, i * dc:(i + 1) * dc]) for i in range(m)], 1)
    torch.testing.assert_close(block(x, h), expected)


def test_block_linear_is_a_block_diagonal_matrix():
    torch.manual_seed(0)
    layer = BlockLinear(6, 9, 3)
    nn.init.normal_(layer.bias)
    dense = torch.block_diag(*layer.weight)  # [6,9]
    x = torch.randn(2, 5, 6)
    torch.testing.assert_close(layer(x), x @ dense + layer.bias)


def test_one_hot_is_torchs():
    from papers.svq.quantiser import one_hot
    indices = torch.randint(0, 7, (5, 3))
    assert torch.equal(one_hot(indices, 7), torch.nn.functional.one_hot(indices, 7).float())
    assert one_hot(indices, 7, torch.float64).dtype == torch.float64


def test_quantiser_picks_the_nearest_code_and_passes_the_gradient_straight_through():
    torch.manual_seed(0)
    vq = BlockCodebooks(blocks=2, size=4, dim=3).eval()  # eval: no EMA update
    z = torch.randn(5, 2, 3, requires_grad=True)
    z_q, idx, commitment = vq(z)
    brute = torch.stack([((z[:, m, None] - vq.codebook[m]) ** 2).sum(-1).argmin(-1) for m in range(2)], 1)
    assert torch.equal(idx, brute)
    e = torch.stack([vq.codebook[m, idx[:, m]] for m in range(2)], 1)
    torch.testing.assert_close(z_q, e)
    torch.testing.assert_close(commitment, ((e - z) ** 2).mean())
    w = torch.randn_like(z)
    (z_q * w).sum().backward()
    torch.testing.assert_close(z.grad, w)  # d z_q / d z = I
    assert vq.codebook.grad is None  # codebooks learn by EMA only


def test_ema_moves_a_used_code_to_its_data_and_restarts_a_dead_one_near_a_query():
    torch.manual_seed(0)
    vq = BlockCodebooks(blocks=1, size=2, dim=2)
    vq.codebook.copy_(torch.tensor([[[0.0, 0.0], [100.0, 100.0]]]))
    vq.ema_w.copy_(vq.codebook)
    point = torch.tensor([[[1.0, 2.0]]]).repeat(200, 1, 1)  # every query at (1, 2): code 0 is used, code 1 never
    vq(point)
    # cs = 0.01 * [200, 0], Laplace over 2 codes: (cs + 1e-5) / (2 + 2e-5) * 2
    cs = (torch.tensor([2.0, 0.0]) + 1e-5) / (2 + 2e-5) * 2
    torch.testing.assert_close(vq.cluster_size[0], cs)
    expected = (0.99 * torch.tensor([0.0, 0.0]) + 0.01 * 200 * torch.tensor([1.0, 2.0])) / cs[0]
    torch.testing.assert_close(vq.codebook[0, 0], expected)
    assert (vq.codebook[0, 1] - torch.tensor([1.0, 2.0])).abs().max() < 0.05  # restarted near a query
    for _ in range(300):
        vq(point)
    assert (vq.codebook[0, 0] - torch.tensor([1.0, 2.0])).abs().max() < 0.05
    health = vq.health(vq(point)[1])
    assert health["perplexity"].item() == pytest.approx(1.0)


def test_block_slot_attention_is_equivariant_to_permuting_the_slots():
    c = _config()
    torch.manual_seed(0)
    attention = BlockSlotAttention(c, BlockCodebooks(c.blocks, c.codebook_size, c.block_dim)).eval()
    inputs, noise = torch.randn(2, 16, c.feature_dim), torch.randn(2, 3, c.slot_dim)
    perm = torch.tensor([2, 0, 1])
    a, b = attention(inputs, 3, noise), attention(inputs, 3, noise[:, perm])
    torch.testing.assert_close(b["slots"], a["slots"][:, perm])
    torch.testing.assert_close(b["attn"], a["attn"][:, :, perm])
    assert torch.equal(b["indices"], a["indices"][:, perm])
    assert a["indices"].shape == (2, 3, c.blocks)


def test_slots_are_codewords_after_every_iteration():
    model = _model().eval()
    e = model.encode(torch.rand(2, 3, SIZE, SIZE))
    torch.testing.assert_close(e["slots"], model.slots_from_indices(e["indices"]))


def test_the_token_decoder_and_the_prior_are_causal():
    model = _model().eval()
    memory = torch.randn(2, 12, 32)
    tokens = torch.randint(0, 32, (2, model.config.tokens))
    changed = tokens.clone()
    changed[:, 10] = (tokens[:, 10] + 1) % 32
    a, b = model.decoder(tokens, memory), model.decoder(changed, memory)
    torch.testing.assert_close(a[:, :11], b[:, :11])  # position i reads tokens < i
    assert not torch.allclose(a[:, 11], b[:, 11])
    prior = SemanticPrior(PriorConfig(num_slots=3, blocks=4, codebook_size=8, d_model=32, layers=2, heads=2, ffn=64)).eval()
    codes = torch.randint(0, 8, (2, 3, 4))
    other = codes.clone()
    other[:, 1, 2] = (codes[:, 1, 2] + 1) % 8  # token 1*4 + 2 = 6
    bos = torch.full((2, 1), prior.config.vocab)
    la = prior.logits(torch.cat([bos, prior.to_tokens(codes)[:, :-1]], 1))
    lb = prior.logits(torch.cat([bos, prior.to_tokens(other)[:, :-1]], 1))
    torch.testing.assert_close(la[:, :7], lb[:, :7])
    assert not torch.allclose(la[:, 7], lb[:, 7])


def test_cached_generation_picks_the_tokens_full_recomputation_picks():
    model = _model().eval()
    with torch.no_grad():
        for layer in model.decoder.layers:  # sharper logits than at init, so argmax ties cannot hide a difference
            layer.mlp[2].weight.mul_(20)
    memory = torch.randn(3, 12, 32)
    cached = model.decoder.generate(memory, model.config.tokens)
    full = model.decoder.generate(memory, model.config.tokens, cache=False)
    assert torch.equal(cached, full)
    assert len(cached.unique()) > 3  # not a constant sequence
    teacher = model.decoder(cached, memory).argmax(-1)  # greedy: every token the argmax given its past
    assert torch.equal(teacher, cached)


def test_dropout_is_off_at_evaluation():
    model = _model(dropout=0.5)
    prior = SemanticPrior(PriorConfig(num_slots=3, blocks=4, codebook_size=8, d_model=32, layers=2, heads=2, ffn=64,
                                      dropout=0.5))
    tokens, memory = torch.randint(0, 32, (2, model.config.tokens)), torch.randn(2, 12, 32)
    codes = torch.randint(0, 8, (2, 3, 4))
    model.train(), prior.train()
    assert not torch.equal(model.decoder(tokens, memory), model.decoder(tokens, memory))
    assert not torch.equal(prior(codes).loss, prior(codes).loss)
    model.eval(), prior.eval()
    assert torch.equal(model.decoder(tokens, memory), model.decoder(tokens, memory))
    assert torch.equal(prior(codes).loss, prior(codes).loss)


def test_the_prior_samples_codes_of_their_own_block_and_the_same_codes_for_the_same_generator():
    torch.manual_seed(0)
    prior = SemanticPrior(PriorConfig(num_slots=3, blocks=4, codebook_size=8, d_model=32, layers=2, heads=2,
                                      ffn=64)).eval()
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    a, b = prior.sample(5, generator=g()), prior.sample(5, generator=g())
    assert torch.equal(a, b) and a.shape == (5, 3, 4) and int(a.max()) < 8
    torch.testing.assert_close(prior.to_codes(prior.to_tokens(a)), a)
    logits = prior.logits(torch.full((1, 12), prior.config.vocab))  # position t allows block t % M's codes only
    allowed = torch.isfinite(logits[0])
    assert all(allowed[t].nonzero().flatten().tolist() == list(range((t % 4) * 8, (t % 4) * 8 + 8)) for t in range(12))
    top1 = prior.sample(3, top_k=1, generator=g())
    assert torch.equal(top1, prior.sample(3, top_k=1, generator=torch.Generator().manual_seed(9)))  # greedy


@pytest.mark.parametrize("block_vocab", [True, False])
def test_the_prior_samples_with_cached_keys_exactly_what_recomputing_every_prefix_samples(block_vocab):
    """sample() runs one position at a time against cached keys and values (`encoder_layer_step`): its logits
    are the full causal forward's at every position, and with one generator it draws the same codes as
    `cache=False` (the whole prefix through nn.TransformerEncoder at every step)."""
    torch.manual_seed(0)
    prior = SemanticPrior(PriorConfig(num_slots=3, blocks=4, codebook_size=8, d_model=32, layers=2, heads=2, ffn=64,
                                      block_vocab=block_vocab)).eval()
    with torch.no_grad():
        prior.head.weight.mul_(10)  # sharper than at init: a wrong cache shows in the draws
        tokens = prior.to_tokens(torch.randint(0, 8, (4, 3, 4)))  # [4,12]
        inputs = torch.cat([torch.full((4, 1), prior.config.vocab), tokens[:, :-1]], 1)  # BOS first
        full, caches = prior.logits(inputs), [{} for _ in prior.transformer.layers]
        stepped = torch.stack([prior.next_logits(inputs[:, t:t + 1], t, caches) for t in range(12)], 1)  # [4,12,V]
    torch.testing.assert_close(stepped, full, rtol=1e-5, atol=1e-5)

    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    drawn = prior.sample(64, generator=g())
    assert torch.equal(drawn, prior.sample(64, generator=g(), cache=False)) and len(drawn.unique()) == 8
    with pytest.raises(ValueError, match="eval mode"):
        prior.train().next_logits(inputs[:, :1], 0, [{} for _ in prior.transformer.layers])


def test_prior_loss_is_the_summed_cross_entropy_per_scene():
    torch.manual_seed(0)
    prior = SemanticPrior(PriorConfig(num_slots=2, blocks=2, codebook_size=4, d_model=16, layers=1, heads=2,
                                      ffn=32)).eval()
    codes = torch.randint(0, 4, (3, 2, 2))
    tokens = prior.to_tokens(codes)
    logits = prior.logits(torch.cat([torch.full((3, 1), prior.config.vocab), tokens[:, :-1]], 1))
    by_hand = -sum(logits[b, t].log_softmax(-1)[tokens[b, t]] for b in range(3) for t in range(4)) / 3
    assert prior(codes).loss.item() == pytest.approx(by_hand.item(), rel=1e-5)


def test_dvae_temperature_schedule_and_loss():
    assert gumbel_temperature(0) == pytest.approx(1.0)
    assert gumbel_temperature(15_000) == pytest.approx(0.55)
    assert gumbel_temperature(30_000) == gumbel_temperature(None) == pytest.approx(0.1)
    torch.manual_seed(0)
    dvae = DVAE(vocab=16, hidden=8)
    x = torch.rand(2, 3, 16, 16)
    out = dvae(x, tau=1.0)
    assert out["tokens"].shape == (2, 4, 4) and out["recon"].shape == x.shape
    torch.testing.assert_close(out["mse"], ((x - out["recon"]) ** 2).sum() / 2)
    out["mse"].backward()
    assert all(p.grad is not None for p in dvae.parameters())
    assert dvae.decode_tokens(out["tokens"]).shape == x.shape


def test_svq_step_learns_every_parameter_and_logs_codebook_health():
    model = _model()
    x = torch.rand(2, 3, SIZE, SIZE)
    out = model(x, step=0)
    out.check(x)
    expected = out.logs["mse"] + out.logs["ce"] + 50 * out.logs["commitment"]
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    out.loss.backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    assert {"perplexity", "perplexity_min", "dead_codes"} <= set(out.logs)
    sysbinder = _model(quantise=False)
    assert sysbinder.codebooks is None and sysbinder(x, step=0).logs["commitment"] == 0


def test_optimiser_groups_and_global_inf_norm_clipping(tmp_path):
    from common.train import TrainConfig, Trainer
    model = _model()
    images = (torch.rand(4, SIZE, SIZE, 3) * 255).to(torch.uint8)
    cfg = TrainConfig(steps=2, batch_size=2, lr=1e-4, warmup_steps=10, clip="inf", clip_value=0.05, save_every=2,
                      log_every=1)
    trainer = Trainer(model, images, cfg, tmp_path / "run")
    lrs = [g["lr"] for g in trainer.optimizer.param_groups]
    assert lrs == pytest.approx([3e-4, 1e-4 / 10, 3e-4 / 10])  # the dVAE unscheduled, the others warming up
    out = trainer.model(trainer.batch(0), step=0)
    out.loss.backward()
    before = [p.grad.clone() for p in model.parameters()]
    top = max(g.abs().max() for g in before)
    trainer._clip()
    scale = min(1.0, 0.05 / float(top))
    assert all(torch.allclose(p.grad, g * scale, rtol=1e-5, atol=1e-12) for p, g in zip(model.parameters(), before))


def test_round_trip_through_from_pretrained_keeps_the_codebooks(tmp_path):
    model = _model()
    model(torch.rand(2, 3, SIZE, SIZE), step=0)  # one EMA update
    model.save_pretrained(tmp_path / "svq")
    again = SVQ.from_pretrained(tmp_path / "svq")
    assert again.config == model.config
    torch.testing.assert_close(again.codebooks.codebook, model.codebooks.codebook)
    torch.testing.assert_close(again.codebooks.cluster_size, model.codebooks.cluster_size)
    model.eval(), again.eval()
    x = torch.rand(1, 3, SIZE, SIZE)
    torch.manual_seed(1)
    a = model.reconstruct(x)
    torch.manual_seed(1)
    torch.testing.assert_close(a, again.reconstruct(x))
    prior = SemanticPrior(PriorConfig(num_slots=3, blocks=4, codebook_size=8, d_model=32, layers=2, heads=2, ffn=64))
    prior.save_pretrained(tmp_path / "prior")
    back = SemanticPrior.from_pretrained(tmp_path / "prior").eval()
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(prior.eval().sample(2, generator=g()), back.sample(2, generator=g()))


def test_prior_trains_on_code_rows_through_the_shared_loop(tmp_path):
    from common.train import TrainConfig, Trainer
    torch.manual_seed(0)
    prior = SemanticPrior(PriorConfig(num_slots=2, blocks=2, codebook_size=4, d_model=16, layers=1, heads=2, ffn=32,
                                      dropout=0.0))
    codes = torch.tensor([[[0, 1], [2, 3]]]).repeat(16, 1, 1)  # one scene: the prior should learn it
    Trainer(prior, codes, TrainConfig(steps=60, batch_size=8, lr=3e-3, clip="none", save_every=60, log_every=20),
            tmp_path / "prior", prepare=lambda rows: rows).fit()
    assert prior.eval()(codes[:1]).loss.item() < 0.5 * 4 * math.log(4)  # well under the uniform 4 log 4


def test_folded_slot_attention_equals_attention_over_projected_keys_and_values():
    """d_s > d_F: attending in the input space is the same arithmetic as over [B,N,d_s] keys and values."""
    from common.nn.slot_attention import attend
    model = _model(block_dim=16)  # d_s = 64 > d_F = 32
    sa = model.slot_attention
    assert sa.fold and not _model().slot_attention.fold
    x, slots = sa.norm_inputs(torch.randn(2, 16, 32)), torch.randn(2, 3, model.config.slot_dim)
    folded, attn = sa.step(slots, *sa.keys_values(x))
    q = sa.to_q(sa.norm_slots(slots))
    updates, attn_ref = attend(q, sa.to_k(x), sa.to_v(x))
    new = sa.gru(updates.reshape(-1, sa.slot_dim), slots.reshape(-1, sa.slot_dim)).view_as(slots)
    torch.testing.assert_close(attn, attn_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(folded, new + sa.mlp(sa.norm_mlp(new)), rtol=1e-5, atol=1e-5)
