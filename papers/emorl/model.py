"""EfficientMORL (Emami et al. 2021): a bottom-up hierarchical VAE with stochastic slot attention
(Stage 1) and lightweight iterative amortised refinement (Stage 2); Algorithm 1, §3, App. F.

Images enter in [0,1]. Deviations from the paper and from the official code: papers/emorl/README.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from common.hub import HubModel
from common.models.segregation import Segregation
from common.nn import SpatialBroadcastDecoder
from common.nn.decoders import split_rgb_mask
from common.output import ModelOutput
from common.prob import DiagonalGaussian, GECOLagrangeNLL, free_bits, gaussian_nll, masked_mean_image, mixture_nll
from common.prob.likelihood import HALF_LOG_2PI
from papers.emorl.modules import ImageEncoder, PriorLayer, RefinementNetwork, StochasticLayer

PRIORS = ("reversed++", "reversed", "bottom_up")
DECODERS = {  # (broadcast padding, channels, kernels, paddings, strides, activation)
    "iodine": (10, (64, 64, 64, 64, 4), (3, 3, 3, 3, 3), (0, 0, 0, 0, 0), None, "elu"),  # App. F.1
    "small": (6, (32, 32, 32, 4), (5, 5, 5, 3), (1, 1, 1, 1), None, "relu"),  # Tetrominoes, App. F.1
}


@dataclass
class EMORLConfig:
    """Defaults: Tetrominoes (App. F.1: K=4, D=32, L=3, Gaussian sigma 0.3, small decoder)."""

    resolution: tuple[int, int] = (35, 35)
    num_slots: int = 4  # K
    slot_dim: int = 32  # D
    stochastic_layers: int = 3  # L
    encoder_channels: tuple[int, ...] = (64, 64, 64, 64)
    decoder: str = "small"  # "iodine" (CLEVR6, Multi-dSprites) or "small" (Tetrominoes)
    likelihood: str = "gaussian"  # "gaussian" (Eq. 12) or "mixture" (Eq. 13)
    sigma: float = 0.3
    prior: str = "reversed++"  # "reversed++" (default, §3.3), "reversed", "bottom_up" (Fig. 12)
    refinement_steps: int = 3  # I during training before the curriculum switches
    curriculum: tuple[tuple[int, int], ...] = ()  # ((step, I), ...): from `step` on, train with I
    test_refinement_steps: int | None = None  # I at test time (None: the last curriculum I)
    loss_weights: str = "paper"  # "paper" (Eq. 8) or "official" ((I+3-i)/(I+1), the released code)
    geco_target: float | None = None  # per pixel-channel NLL target (App. F.2); None = plain ELBO
    geco_step: float = 1e-6
    geco_alpha: float = 0.99
    geco_floor: float = 0.55
    geco_warm_start: int = 1000
    geco_acceleration: float = 1.0
    free_bits: float | None = None  # lambda (nats per image) on each KL term: LOM's Eq. 26 (0.75 D_z there)
    # the encoder reads x in [0,1] ("unit") or 2x - 1 ("signed": the official code; LOM App. A.4.1);
    # the likelihood always scores x in [0,1]
    encoder_input: str = "unit"


class EfficientMORL(HubModel, paper_url="https://arxiv.org/abs/2107.04164"):
    config_class = EMORLConfig
    citation = """@inproceedings{emami2021efficient,
  title={Efficient Iterative Amortized Inference for Learning Symmetric and Disentangled Multi-Object Representations},
  author={Emami, Patrick and He, Pan and Ranka, Sanjay and Rangarajan, Anand},
  booktitle={ICML}, year={2021}}"""

    def __init__(self, config: EMORLConfig):
        super().__init__()
        self.config = c = config
        if (c.prior not in PRIORS or c.decoder not in DECODERS or c.likelihood not in ("gaussian", "mixture")
                or c.encoder_input not in ("unit", "signed")):
            raise ValueError(f"EMORL config: prior in {PRIORS}, decoder in {tuple(DECODERS)}, likelihood "
                             f"gaussian|mixture, encoder_input unit|signed; got {c.prior!r}, {c.decoder!r}, "
                             f"{c.likelihood!r}, {c.encoder_input!r}")
        d = c.slot_dim
        self.encoder = ImageEncoder(c.resolution, c.encoder_channels)
        self.layer = StochasticLayer(c.encoder_channels[-1], d)
        self.lambda0 = nn.Parameter(torch.cat([torch.zeros(d), torch.full((d,), math.log(math.e - 1))]))  # mu 0, var 1
        self.prior = PriorLayer(d)
        self.refine = RefinementNetwork(d)
        pad, ch, ks, ps, ss, act = DECODERS[c.decoder]
        h, w = c.resolution
        self.decoder = SpatialBroadcastDecoder(d, (h, w), (h + pad, w + pad), ch, ks, ps, ss, "add", act)
        target = None if c.geco_target is None else c.geco_target * 3 * h * w
        self.geco = None if target is None else GECOLagrangeNLL(
            target, c.geco_step, c.geco_alpha, c.geco_floor, c.geco_warm_start, c.geco_acceleration)

    # -- Stage 1 -------------------------------------------------------------------------------
    def bottom_up(self, images: Tensor, z0: Tensor | None = None):
        """Algorithm 1 lines 2-17: posteriors q(z^l | x, z^{l-1}), samples z^l, attentions (l = 1..L) and
        lambda^L [B,K,2D]. z0 [B,K,D] replaces the sample of q(z^0) (to test equivariance, App. A.1)."""
        b, k, d = images.shape[0], self.config.num_slots, self.config.slot_dim
        features = self.encoder(images if self.config.encoder_input == "unit" else 2 * images - 1)  # [B,N,C]
        lam = self.lambda0.expand(b, k, 2 * d)  # [B,K,2D]
        z = DiagonalGaussian.from_params(*lam.chunk(2, -1)).rsample() if z0 is None else z0  # [B,K,D]
        posteriors, samples, attns = [], [], []
        for l in range(self.config.stochastic_layers):
            lam, attn = self.layer(features, z, lam)
            if l == self.config.stochastic_layers - 1 and torch.is_grad_enabled() and not lam.requires_grad:
                lam = lam.detach().requires_grad_(True)  # frozen parameters: refinement still needs dL/dlambda
            q = DiagonalGaussian.from_params(*lam.chunk(2, -1))
            z = q.rsample()
            posteriors.append(q), samples.append(z), attns.append(attn)
        return posteriors, samples, attns, lam

    def hierarchical_kl(self, posteriors: list[DiagonalGaussian], samples: list[Tensor]) -> tuple[Tensor, DiagonalGaussian]:
        """Eq. 4 (or its reversed variant) per image [B], each layer's term under free bits when set (LOM
        App. A.4.2), and the prior the refinement KL uses."""
        L = len(posteriors)
        kl = 0.0
        if self.config.prior == "bottom_up":  # p(z^1) = N(0, I), p(z^l | z^{l-1})
            priors = [DiagonalGaussian.standard(samples[0])] + [self.prior(samples[l - 1]) for l in range(1, L)]
            refine_prior = priors[-1]
        else:  # reversed: p(z^L) = N(0, I), p(z^l | z^{l+1})
            priors = [self.prior(samples[l + 1]) for l in range(L - 1)] + [DiagonalGaussian.standard(samples[-1])]
            refine_prior = priors[0] if self.config.prior == "reversed++" else priors[-1]
        for q, p in zip(posteriors, priors):
            kl = kl + free_bits(q.kl(p).sum((1, 2)), self.config.free_bits)  # max(lambda, KL) per layer
        return kl, refine_prior

    # -- decoding and the per-image loss ---------------------------------------------------------
    def decode(self, z: Tensor, decoder: nn.Module | None = None) -> tuple[Tensor, Tensor]:
        """z [B,K,D] -> RGB y [B,K,3,H,W] (sigmoid), log masks log pi [B,K,1,H,W] (log-softmax over K), with
        this model's decoder or `decoder` (a copy of it with other weights: SRI's own decoder)."""
        rgb, logits = split_rgb_mask((self.decoder if decoder is None else decoder)(z.flatten(0, 1)), z.shape[0])
        return rgb.sigmoid(), logits.log_softmax(1)

    def decode_image(self, z: Tensor) -> Tensor:
        """z [B,K,D] -> the reconstructed image sum_k pi_k y_k [B,3,H,W]."""
        rgb, log_m = self.decode(z)
        return (log_m.exp() * rgb).sum(1)

    def nll(self, images: Tensor, rgb: Tensor, log_masks: Tensor) -> Tensor:
        """Eq. 12 or 13 without the 1/2 log 2pi constant (as EMORL), summed over C,H,W: [B]."""
        c = self.config
        x, y, log_m = images.float(), rgb.float(), log_masks.float()
        if c.likelihood == "gaussian":
            return gaussian_nll(x, masked_mean_image(y, log_m.exp()), c.sigma)
        return mixture_nll(x, y, log_m, c.sigma)

    def refinement_steps(self, step: int | None) -> int:
        c = self.config
        if not self.training:
            return c.test_refinement_steps if c.test_refinement_steps is not None else \
                (c.curriculum[-1][1] if c.curriculum else c.refinement_steps)
        steps = c.refinement_steps
        for start, value in c.curriculum:
            if step is not None and step >= start:
                steps = value
        return steps

    def iteration_weights(self, steps: int) -> list[float]:
        """Eq. 8: L^(L,0) + sum_i (I-(i-1))/(I+1) L^(L,i); 'official': (I+3-i)/(I+1), i = 0..I."""
        if self.config.loss_weights == "official":
            return [(steps + 3 - i) / (steps + 1) for i in range(steps + 1)]
        return [1.0] + [(steps - (i - 1)) / (steps + 1) for i in range(1, steps + 1)]

    def _loss(self, nll: Tensor, kl: Tensor) -> Tensor:
        """Batch loss of one iteration: the ELBO, or its GECO form (App. F.2) once GECO is active."""
        if self.geco is None:
            return (nll + kl).mean()
        return self.geco.loss(nll.mean(), kl.mean())

    # -- the two stages --------------------------------------------------------------------------
    def infer(self, images: Tensor, steps: int, z0: Tensor | None = None) -> dict:
        """Two-stage inference. Returns per iteration i = 0..I: nll, kl (the loss's KL term: Eq. 4's sum
        over the L layers at i = 0, the refinement term KL(q(z^{L,i}) || p) at i >= 1), kl_refinement
        (KL(q(z^{L,i}) || p) at every i, also i = 0: one quantity across I, Fig. 7d), log_masks, rgb,
        lambda; and the Stage-1 posteriors, samples and attentions. The rgb and log_masks of i < I are
        detached, and the NLL of i < I carries its gradient only into losses linear in its batch sum
        (see `_refined_nll`).

        Refinement needs dL/dlambda even at test time, so gradients are on whenever steps > 0; decoder
        weight gradients are formed only when the caller has gradients on (training).
        """
        train_grads = torch.is_grad_enabled()
        with torch.set_grad_enabled(train_grads or steps > 0):
            return self._infer(images, steps, z0, train_grads)

    def _infer(self, images: Tensor, steps: int, z0: Tensor | None, train_grads: bool) -> dict:
        posteriors, samples, attns, lam = self.bottom_up(images, z0)
        kl0, refine_prior = self.hierarchical_kl(posteriors, samples)
        its = {"nll": [], "kl": [kl0], "log_masks": [], "rgb": [], "lambda": [lam],
               "kl_refinement": [posteriors[-1].kl(refine_prior).sum((1, 2))], "z": [samples[-1]]}
        params = [p for p in self.decoder.parameters() if p.requires_grad] if train_grads else []  # trained here
        w = 1.0 if self.geco is None else self.geco.nll_weight()  # the NLL's weight in the loss
        h = None
        for _ in range(steps):
            nll, rgb, log_m, g_z = self._refined_nll(images, its["z"][-1], params)
            its["nll"].append(nll), its["rgb"].append(rgb), its["log_masks"].append(log_m)
            grad, = torch.autograd.grad([its["z"][-1], its["kl"][-1].sum()], lam, [w * g_z, None],
                                        retain_graph=True)  # each image's d(w NLL + KL)/dlambda, first order
            delta, h = self.refine(lam, grad, h)
            lam = lam + delta
            q = DiagonalGaussian.from_params(*lam.chunk(2, -1))
            its["z"].append(q.rsample())
            its["kl_refinement"].append(q.kl(refine_prior).sum((1, 2)))
            its["kl"].append(free_bits(its["kl_refinement"][-1], self.config.free_bits))
            its["lambda"].append(lam)
        rgb, log_m = self.decode(its["z"][-1])  # the last iteration: nothing refines after it
        its["nll"].append(self.nll(images, rgb, log_m)), its["rgb"].append(rgb), its["log_masks"].append(log_m)
        its.update(posteriors=posteriors, attention=attns, samples=samples)
        return its

    def _refined_nll(self, images: Tensor, z: Tensor, params: list[nn.Parameter]) -> tuple[Tensor, ...]:
        """Iteration i < I: NLL [B], RGB, log masks, and dNLL/dz [B,K,D] from one backward through the decoder.

        The refinement needs dL/dz, and training needs the decoder weights' gradient of the same term:
        one decoder backward gives both, and its graph is freed. The NLL returned has the NLL's value and,
        straight through, exactly its gradient w.r.t. z and `params` for any loss linear in the batch sum of
        NLLs (Eq. 8's is), so the final backward does not go through this decoder pass again. The
        official code backpropagates twice through every decoder pass before the last.
        """
        z_cut = z.detach().requires_grad_(True)
        rgb, log_m = self.decode(z_cut)
        nll = self.nll(images, rgb, log_m)  # [B]
        g_z, *g_w = torch.autograd.grad(nll.sum(), [z_cut, *params])  # [B,K,D], one per parameter
        s = (g_z * z).flatten(1).sum(1)  # [B]
        if params:  # every parameter's <p, g> in one product: a few kernels, not three per parameter
            s = s + torch.dot(_flat(params), _flat(g_w)) / z.shape[0]
        return nll.detach() + (s - s.detach()), rgb.detach(), log_m.detach(), g_z

    @property
    def num_slots(self) -> int:
        return self.config.num_slots

    @property
    def slot_dim(self) -> int:
        return self.config.slot_dim

    def forward(self, images: Tensor, step: int | None = None, steps: int | None = None,
                z0: Tensor | None = None) -> ModelOutput:
        return self.segregate(images, step, steps, z0).output

    def segregate(self, images: Tensor, step: int | None = None, steps: int | None = None,
                  z0: Tensor | None = None) -> Segregation:
        """The segregation interface (common.models.segregation) that SRI-EMORL and LOM-EMORL use: the
        final refined posterior q(z^{L,I} | x), the sample decoded from it, and EMORL's own loss (Eq. 8)."""
        steps = self.refinement_steps(step) if steps is None else steps
        its = self.infer(images, steps, z0)
        weights = self.iteration_weights(steps)
        loss = sum(w * self._loss(n, k) for w, n, k in zip(weights, its["nll"], its["kl"]))
        masks = its["log_masks"][-1].exp()
        recon = (masks * its["rgb"][-1]).sum(1)
        nll, kl = its["nll"][-1].mean().detach(), its["kl"][-1].mean().detach()
        logs = {"nll": nll, "kl": kl, "refinement_steps": float(steps)}
        if self.geco is not None:
            logs.update(geco_weight=self.geco.weight.detach(), geco_c_ema=self.geco.c_ema.detach())
        q = DiagonalGaussian.from_params(*its["lambda"][-1].chunk(2, -1))
        out = ModelOutput(loss=loss, recon=recon, masks=masks, slots=q.mean, logs=logs)
        return Segregation(q.mean, q.std, its["z"][-1], out)

    def after_step(self, out: ModelOutput, ok: Tensor | bool = True) -> None:
        """GECO's Lagrange update from the last iteration's batch-mean NLL (App. F.2); none when the
        loop skipped the step (`ok` false)."""
        if self.geco is not None:
            self.geco.update(out.logs["nll"], ok)

    @torch.no_grad()
    def negative_elbo(self, images: Tensor) -> Tensor:
        """Single-sample -ELBO per image [B] in nats at the test-time I (SRI's bits/dim convention) of the model
        `sample` draws from: the decoder reads z^L ~ p(z^L) = N(0, I) (the reversed priors, §3.3), so -ELBO =
        NLL of the last iteration under the normalised density (the 1/2 log 2pi per element EMORL drops, added
        back) + KL(q(z^L; lambda^(L,I)) || N(0, I)), for any I and without free bits."""
        if self.config.prior == "bottom_up":
            raise ValueError("negative_elbo is written for the reversed priors (p(z^L) = N(0, I)); the bottom-up "
                             "chain's bound needs Eq. 4's lower layers beside the refined top one")
        its = self.infer(images, self.refinement_steps(None))
        q = DiagonalGaussian.from_params(*its["lambda"][-1].chunk(2, -1))  # [B,K,D]
        kl = q.kl(DiagonalGaussian.standard(q.mean)).sum((1, 2))  # [B]
        return its["nll"][-1].detach() + HALF_LOG_2PI * images[0].numel() + kl.detach()

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Ancestral sample of K independent slots (§3.1: the reversed hierarchy's top prior N(0, I), or the
        bottom-up chain), every std scaled by tau: images [n,3,H,W], masks [n,K,1,H,W], slots [n,K,D]. The
        slots are drawn independently, hence SRI's "incoherent scenes" baseline (SRI §5, Table 2)."""
        c, device = self.config, self.lambda0.device
        noise = lambda: torch.randn(n, c.num_slots, c.slot_dim, generator=generator, device=device)  # [n,K,D]
        z = temperature * noise()
        if c.prior == "bottom_up":
            for _ in range(c.stochastic_layers - 1):
                p = self.prior(z)
                z = p.mean + temperature * p.std * noise()
        rgb, log_m = self.decode(z)
        masks = log_m.exp()  # [n,K,1,H,W]
        return {"images": (masks * rgb).sum(1), "masks": masks, "slots": z}


def _flat(tensors: list[Tensor]) -> Tensor:
    """Tensors of any shapes and layouts -> one vector [sum of numels] (torch's parameters_to_vector needs contiguous
    tensors; a narrow decoder's weights are channels-last on the CPU)."""
    return torch.cat([t.reshape(-1) for t in tensors])
