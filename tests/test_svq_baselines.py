"""SVQ's VQ-VAE + gated PixelCNN baseline (papers/svq/vqvae.py, pixelcnn.py): the PixelCNN's causality position by
position (no blind spot, nothing from itself or later), its loss and sampling, the VQ-VAE's straight-through
gradient, decoding its own codes, and from_pretrained round trips."""
import torch
import torch.nn.functional as F

from papers.svq.pixelcnn import GatedPixelCNN, PixelCNNConfig
from papers.svq.vqvae import VQVAE, VQVAEConfig, codebook_vectors


def _pixelcnn(**kw) -> GatedPixelCNN:
    torch.manual_seed(0)
    return GatedPixelCNN(PixelCNNConfig(**{**dict(grid=(6, 6), codebook_size=5, channels=8, layers=6), **kw})).double()


def test_each_position_reads_every_earlier_position_and_nothing_from_itself_or_later():
    model = _pixelcnn()
    h, w = model.config.grid
    for i in range(h):
        for j in range(w):
            x = torch.randn(2, 8, h, w, dtype=torch.double, requires_grad=True)
            model.logits_from_embedding(x)[:, :, i, j].sum().backward()
            reads = x.grad.abs().sum((0, 1)) > 0  # [h,w]
            raster = torch.arange(h * w).view(h, w)
            assert not reads[raster >= i * w + j].any(), (i, j)  # itself and every later position: zero gradient
            assert reads[raster < i * w + j].all(), (i, j)  # every earlier one reaches it: no blind spot


def test_loss_is_the_summed_cross_entropy_per_grid_and_sampling_is_reproducible():
    model = _pixelcnn().float().eval()
    idx = torch.randint(0, 5, (3, 6, 6))
    expected = F.cross_entropy(model.logits(idx), idx, reduction="sum") / 3
    torch.testing.assert_close(model(idx).loss, expected)
    a = model.sample(2, generator=torch.Generator().manual_seed(1))
    b = model.sample(2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (2, 6, 6) and a.max() < 5


def _vqvae() -> VQVAE:
    torch.manual_seed(0)
    return VQVAE(VQVAEConfig(resolution=(16, 16), channels=16, res_blocks=1, codebook_size=8, code_dim=4))


def test_vqvae_gradient_is_straight_through_and_decoding_its_codes_gives_its_reconstruction():
    model = _vqvae()
    x = torch.rand(2, 3, 16, 16)
    out = model(x)
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
    z = model.encoder(x).detach().requires_grad_()
    b, d, h, w = z.shape
    z_q, _, _ = model.codebook(z.permute(0, 2, 3, 1).reshape(b, h * w, 1, d))
    g = torch.randn_like(z_q)
    (z_q * g).sum().backward()
    torch.testing.assert_close(z.grad, g.view(b, h, w, d).permute(0, 3, 1, 2))  # d z_q / d z = identity
    model.eval()
    idx = model.encode(x)
    assert idx.shape == (2, 4, 4)
    torch.testing.assert_close(model.decode_indices(idx), model(x).recon)
    torch.testing.assert_close(codebook_vectors(model, idx), model.codebook.codebook[0][idx])


def test_vqvae_loss_is_the_papers_per_image_sums():
    """van den Oord et al.: ||x - recon||^2 summed over pixels + beta ||z_e - sg[e]||^2 summed over the latent grid
    and channels, each averaged over the batch (not the quantiser's mean, which would make beta ~10^4 times smaller)."""
    model = _vqvae().eval()
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        out = model(x)
        z_e = model.encoder(x)  # [B,d,h,w]
        e = codebook_vectors(model, model.encode(x)).permute(0, 3, 1, 2)  # [B,d,h,w] its nearest codes
        recon = model.decoder(e)  # [B,3,H,W] before `recon`'s clamp to [0,1]
    commitment, squared_error = ((z_e - e) ** 2).sum() / 3, ((recon - x) ** 2).sum() / 3
    torch.testing.assert_close(out.logs["commitment"], commitment)
    torch.testing.assert_close(out.loss, squared_error + 0.25 * commitment)


def test_round_trips_through_from_pretrained(tmp_path):
    vq, prior = _vqvae(), _pixelcnn(grid=(4, 4), codebook_size=8).float()
    vq(torch.rand(4, 3, 16, 16))  # one EMA update: the codebook buffers must travel too
    vq.save_pretrained(tmp_path / "vq")
    prior.save_pretrained(tmp_path / "prior")
    vq2, prior2 = VQVAE.from_pretrained(tmp_path / "vq").eval(), GatedPixelCNN.from_pretrained(tmp_path / "prior")
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(vq.eval().encode(x), vq2.encode(x))
    idx = torch.randint(0, 8, (2, 4, 4))
    assert torch.equal(prior.logits(idx), prior2.logits(idx))
