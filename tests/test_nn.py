import pytest
import torch

from common.nn import PositionEmbed, SlotAttention, SpatialBroadcastDecoder, TransformerBlock, ramp_grid
from common.nn.decoders import split_rgb_mask


def test_slot_attention_is_permutation_equivariant():
    sa = SlotAttention(input_dim=16, slot_dim=8, iters=3).eval()
    inputs = torch.randn(2, 30, 16)
    noise = torch.randn(2, 5, 8)
    perm = torch.randperm(5)
    slots, attn = sa(inputs, 5, noise)
    slots_p, attn_p = sa(inputs, 5, noise[:, perm])
    torch.testing.assert_close(slots_p, slots[:, perm], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(attn_p, attn[..., perm], rtol=1e-5, atol=1e-5)
    assert torch.allclose(attn.sum(-1), torch.ones(2, 30), atol=1e-4)  # softmax over slots


def test_per_slot_inits_give_each_slot_its_own_gaussian():
    """SRI-SA*'s Slot Attention: slot k starts at mu_k + sigma_k * noise_k, so permuting the noise no longer
    permutes the slots (the symmetry is broken on purpose); it refuses another number of slots."""
    torch.manual_seed(0)
    sa = SlotAttention(16, 8, num_inits=3).eval()
    with torch.no_grad():
        sa.mu.copy_(torch.randn(1, 3, 8))
    noise = torch.randn(2, 3, 8)
    init = sa.init_slots(2, 3, noise)
    for k in range(3):
        torch.testing.assert_close(init[:, k], sa.mu[0, k] + sa.log_sigma[0, k].exp() * noise[:, k])
    perm = torch.tensor([2, 0, 1])
    inputs = torch.randn(2, 30, 16)
    assert not torch.allclose(sa(inputs, 3, noise[:, perm])[0], sa(inputs, 3, noise)[0][:, perm], atol=1e-3)
    with pytest.raises(ValueError, match="learned 3 slot inits"):
        sa(inputs, 4)


def test_slot_attention_invariant_to_input_order():
    sa = SlotAttention(16, 8).eval()
    inputs, noise = torch.randn(1, 20, 16), torch.randn(1, 4, 8)
    slots, _ = sa(inputs, 4, noise)
    slots_p, _ = sa(inputs[:, torch.randperm(20)], 4, noise)
    torch.testing.assert_close(slots, slots_p, rtol=1e-5, atol=1e-5)


def test_ramp_grid_four_directions():
    g = ramp_grid(3, 5)
    assert g.shape == (3, 5, 4)
    torch.testing.assert_close(g[..., 0] + g[..., 2], torch.ones(3, 5))
    assert g[0, 0, 1] == 0 and g[0, -1, 1] == 1


def test_position_concat_adds_two_channels():
    pe = PositionEmbed(8, 4, 4, mode="concat")
    assert pe(torch.zeros(2, 8, 4, 4)).shape == (2, 10, 4, 4)
    with pytest.raises(ValueError, match="position mode"):
        PositionEmbed(8, 4, 4, mode="sum")


@pytest.mark.parametrize("spec", [
    dict(broadcast=(45, 45), channels=[64, 64, 64, 64, 4], kernels=[3] * 5, paddings=[0] * 5),  # EMORL/IODINE
    dict(broadcast=(41, 41), channels=[32, 32, 32, 4], kernels=[5, 5, 5, 3], paddings=[1, 1, 1, 1]),  # EMORL small
    dict(broadcast=(5, 5), channels=[16, 16, 16, 4], kernels=[5, 5, 5, 3], paddings=[2, 2, 2, 1],
         strides=[2, 2, 2, 1]),  # deconv
])
def test_broadcast_decoder_shapes(spec):
    size = (40, 40) if spec["broadcast"] == (5, 5) else (35, 35)
    dec = SpatialBroadcastDecoder(8, size, **spec)
    rgb, mask = split_rgb_mask(dec(torch.randn(6, 8)), batch=2)
    assert rgb.shape == (2, 3, 3, *size) and mask.shape == (2, 3, 1, *size)


def test_broadcast_decoder_rejects_wrong_geometry():
    with pytest.raises(ValueError, match="expected"):
        SpatialBroadcastDecoder(8, (35, 35), (35, 35), [8, 4], [3, 3], [0, 0])


def test_causal_transformer_ignores_the_future():
    block = TransformerBlock(16, heads=2, causal=True).eval()
    x = torch.randn(1, 6, 16)
    y = x.clone()
    y[:, 4:] = torch.randn(1, 2, 16)
    torch.testing.assert_close(block(x)[:, :4], block(y)[:, :4])
    assert not torch.allclose(TransformerBlock(16, 2).eval()(x)[:, :4], TransformerBlock(16, 2).eval()(y)[:, :4])


def test_cross_attention_block_needs_memory():
    block = TransformerBlock(16, heads=4, cross_attention=True)
    assert block(torch.randn(2, 5, 16), torch.randn(2, 7, 16)).shape == (2, 5, 16)
    with pytest.raises(ValueError, match="memory"):
        block(torch.randn(2, 5, 16))


@pytest.mark.parametrize("position", ["add", "concat"])
@pytest.mark.parametrize("padding", [0, 1, 2])
def test_factorised_first_layer_equals_the_plain_convolution(padding, position):
    dec = SpatialBroadcastDecoder(8, (12, 12), (12 + 4 - 2 * padding, 12 + 4 - 2 * padding), [6, 4], [5, 3],
                                  [padding, 1], position=position)
    assert dec.factorised
    z = torch.randn(5, 8, dtype=torch.float64)
    dec = dec.double()
    fast = dec(z)
    x = z[:, :, None, None].expand(-1, -1, *dec.broadcast)
    plain = dec.net(dec.position(x))
    torch.testing.assert_close(fast, plain)


@pytest.mark.parametrize("channels,strides,narrow", [
    ([32, 32, 4], [1, 1, 1], True),  # EMORL Tetrominoes' width: channels-last on the CPU
    ([64, 64, 4], [2, 2, 1], False),  # GENESIS-v2's width, transposed convs: contiguous on the CPU
])
def test_decoder_layout_changes_speed_not_values(channels, strides, narrow):
    """The CPU layout follows the hidden width (CPU_CHANNELS_LAST_WIDTH), an accelerator's is channels-last,
    and the other layout gives the same outputs and gradients (z and every weight)."""
    grow = strides[0] > 1
    dec = SpatialBroadcastDecoder(8, (12, 12), (3, 3) if grow else (16, 16), channels, [5, 5, 1] if grow else [5, 3, 1],
                                  [2, 2, 0] if grow else [1, 0, 0], strides).double()
    assert dec.cpu_channels_last is narrow
    assert dec.memory_format(torch.device("cpu")) == (torch.channels_last if narrow else torch.contiguous_format)
    assert dec.memory_format(torch.device("meta")) == torch.channels_last
    z = torch.randn(5, 8, dtype=torch.float64, requires_grad=True)
    results = []
    for channels_last in (narrow, not narrow):
        dec.set_cpu_channels_last(channels_last)
        out = dec(z)
        assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        results.append((out, *torch.autograd.grad(out.sin().sum(), [z, *dec.parameters()])))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("activation,bias", [("relu", True), ("gelu", False)])
def test_encoder_layer_step_is_the_causal_layer_one_position_at_a_time(activation, bias):
    """PyTorch's post-LN nn.TransformerEncoderLayer (eval mode, causal mask) at every position equals
    `encoder_layer_step` fed the positions one by one with its key/value cache; it refuses what it cannot do."""
    from torch import nn

    from common.nn.transformer import encoder_layer_step
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, 32, activation=activation, bias=bias, batch_first=True).eval()
    x = torch.randn(3, 7, 16)  # [B,T,D]
    mask = nn.Transformer.generate_square_subsequent_mask(7)
    with torch.no_grad():
        full = layer(x, src_mask=mask, is_causal=True)  # [B,T,D]
        cache = {}
        stepped = torch.cat([encoder_layer_step(layer, x[:, t:t + 1], cache) for t in range(7)], 1)
    torch.testing.assert_close(stepped, full, rtol=1e-5, atol=1e-5)
    assert cache["k"].shape == (3, 4, 7, 4)  # [B,h,T,D/h]: every position's keys kept
    with pytest.raises(ValueError, match="post-LN"):
        pre_ln = nn.TransformerEncoderLayer(16, 4, 32, norm_first=True, batch_first=True).eval()
        encoder_layer_step(pre_ln, x[:, :1], {})
    with pytest.raises(ValueError, match="eval mode"):
        encoder_layer_step(layer.train(), x[:, :1], {})
