"""IODINE (Greff et al. 2019): iterative amortised inference for a spatial-mixture slot VAE.

§2.1 and Eq. 1 define the generative model; the lost §2.2-2.3 are restored in
`../shared/seeds/README.md`. T counts refinement updates: a learned initial posterior lambda^(0)
shared by all K slots, then for t = 0..T-1 sample z ~ q(z; lambda^(t)), decode, and refine
lambda^(t+1) = lambda^(t) + f_phi(z, x, a) with the auxiliary inputs a of App. B. The loss is the
paper's sum_{t=1..T} (t/T) L^(t), L^(t) = -log p(x|z) + KL(q || N(0, I)) of the posterior after t
updates; L^(0) is computed (its gradients are inputs of the first update) with weight 0. This is the
released code's linspace(0, 1, T+1) over its T+1 decodes, so the two readings coincide, and a model
trained with T = 1 (Fig. 8) has a trained refinement network. Other `official`-style switches
reproduce the released TensorFlow code (implementation-notes §2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.hub import HubModel
from common.nn import SpatialBroadcastDecoder, linear_grid
from common.nn.decoders import split_rgb_mask
from common.output import ModelOutput
from common.prob import DiagonalGaussian, at_least_fp32


@dataclass
class IODINEConfig:
    """Defaults: Tetrominoes (App. B.3): K=4, z 32, T=5, no LSTM."""

    resolution: tuple[int, int] = (35, 35)
    num_slots: int = 4
    latent_dim: int = 32
    iterations: int = 5  # T refinement updates (T + 1 decodes)
    sigma: float = 0.1  # sigma_x of Eq. 1
    decoder_channels: tuple[int, ...] = (32, 32, 32, 4)  # App. B.3: 4 convolutional layers
    decoder_kernel: int = 5
    refine_channels: tuple[int, ...] = (32, 32, 32)  # stride-2 convolutions
    refine_kernel: int = 5
    refine_mlp: tuple[int, ...] = (128,)
    lstm_size: int = 0  # 0: no LSTM (Tetrominoes)
    likelihood: str = "gaussian"  # "gaussian" (Eq. 1) or "logistic" (official: scale 0.03)
    logistic_scale: float = 0.03
    prior_variance: float = 1.0  # N(0, I) in the paper; official: ln 2
    decoder_constant: float | None = None  # official: a constant 5.0 channel appended to z


def leave_one_out(log_masks: Tensor, log_p: Tensor) -> Tensor:
    """log p(x | z_{i != k}) (App. B's leave-one-out likelihood): the mixture without slot k, its masks
    renormalised over the other K - 1 slots. log_masks, log_p [B,K,1,H,W] -> [B,K,1,H,W]."""
    k = log_masks.shape[1]
    joint = log_masks + log_p  # [B,K,1,H,W]
    eye = torch.eye(k, dtype=torch.bool, device=joint.device)[None, :, :, None, None, None]  # [1,K,K,1,1,1]
    without = lambda a: torch.logsumexp(a.unsqueeze(1).masked_fill(eye, float("-inf")), dim=2)  # [B,K,1,H,W]
    return without(joint) - without(log_masks)


def layer_norm_neg_exp(r: Tensor, eps: float = 1e-5) -> Tensor:
    """F.layer_norm(-exp(r)) per (b, k) over C, H, W, without forming exp(r) (which overflows where a
    slot's mask is tiny): with M = max r and u = exp(r - M) <= 1, it is -(u - mean u) / sqrt(var u +
    eps exp(-2M)). r [B,K,C,H,W] -> [B,K,C,H,W]."""
    m = r.amax((2, 3, 4), keepdim=True)  # [B,K,1,1,1]
    u = (r - m).exp()
    mean, var = u.mean((2, 3, 4), keepdim=True), u.var((2, 3, 4), unbiased=False, keepdim=True)
    return -(u - mean) / torch.sqrt(var + eps * torch.exp(-2 * m))


class RefinementNetwork(nn.Module):
    """f_phi (App. B): stride-2 convolutions over the spatial inputs, an MLP, the flat inputs
    (lambda and its layer-normalised gradient) concatenated, an optional LSTM, a linear update."""

    def __init__(self, c: IODINEConfig, in_channels: int):
        super().__init__()
        layers, ch, (h, w) = [], in_channels, c.resolution
        for out in c.refine_channels:
            layers += [nn.Conv2d(ch, out, c.refine_kernel, stride=2, padding=c.refine_kernel // 2), nn.ELU()]
            ch, h, w = out, (h + 1) // 2, (w + 1) // 2
        self.convs = nn.Sequential(*layers).to(memory_format=torch.channels_last)
        sizes, mlp = [ch * h * w, *c.refine_mlp], []
        for a, b in zip(sizes, sizes[1:]):
            mlp += [nn.Linear(a, b), nn.ELU()]
        self.mlp = nn.Sequential(*mlp)
        flat = sizes[-1] + 4 * c.latent_dim  # + dL/dlambda + lambda
        self.lstm = nn.LSTMCell(flat, c.lstm_size) if c.lstm_size else None
        self.update = nn.Linear(c.lstm_size or flat, 2 * c.latent_dim)

    def forward(self, spatial: Tensor, flat: Tensor, state):
        """spatial [N,C,H,W], flat [N,4D] (N = B*K) -> delta lambda [N,2D], new LSTM state."""
        h = self.mlp(self.convs(spatial.contiguous(memory_format=torch.channels_last)).flatten(1))
        h = torch.cat([h, flat], -1)
        if self.lstm is not None:
            state = self.lstm(h, state)
            h = state[0]
        return self.update(h), state


class IODINE(HubModel, paper_url="https://arxiv.org/abs/1903.00450"):
    config_class = IODINEConfig
    citation = """@inproceedings{greff2019multi,
  title={Multi-Object Representation Learning with Iterative Variational Inference},
  author={Greff, Klaus and Kaufman, Rapha{\\"e}l Lopez and Kabra, Rishabh and Watters, Nick and Burgess, Chris
          and Zoran, Daniel and Matthey, Loic and Botvinick, Matthew and Lerchner, Alexander},
  booktitle={ICML}, year={2019}}"""

    # App. B's table in its order (name, channels): the spatial inputs [B,K,C,H,W] ...
    SPATIAL = (("image", 3), ("means", 3), ("mask", 1), ("mask_logits", 1), ("grad_means", 3), ("grad_mask", 1),
               ("mask_posterior", 1), ("likelihood", 1), ("leave_one_out", 1), ("coordinates", 2))
    FLAT = ("grad_lambda", "lambda")  # ... and the flat ones [B,K,2D]
    STOP_GRADIENT = ("grad_means", "grad_mask", "grad_lambda", "likelihood", "leave_one_out")  # App. B's SG column
    SPATIAL_INPUTS = sum(c for _, c in SPATIAL)  # 17

    def __init__(self, config: IODINEConfig):
        super().__init__()
        self.config = c = config
        if c.likelihood not in ("gaussian", "logistic") or c.iterations < 1:
            raise ValueError(f"IODINE: likelihood gaussian|logistic and iterations >= 1; got "
                             f"{c.likelihood!r}, {c.iterations}")
        d = c.latent_dim
        self.lambda1 = nn.Parameter(torch.zeros(2 * d))  # lambda^(0) = (mu, log sigma), shared by the slots
        extra = 1 if c.decoder_constant is not None else 0
        n = len(c.decoder_channels)
        self.decoder = SpatialBroadcastDecoder(d + extra, c.resolution, c.resolution, c.decoder_channels,
                                               (c.decoder_kernel,) * n, (c.decoder_kernel // 2,) * n,
                                               position="concat", act="elu")
        self.refine = RefinementNetwork(c, self.SPATIAL_INPUTS)
        self.norm_grad = nn.LayerNorm(2 * d)
        self.register_buffer("coords", linear_grid(*c.resolution).permute(2, 0, 1), persistent=False)  # [2,H,W]

    # -- the generative side ---------------------------------------------------------------------
    def posterior(self, lam: Tensor) -> DiagonalGaussian:
        mu, log_sigma = at_least_fp32(lam).chunk(2, -1)  # the KL in fp32 under autocast too
        return DiagonalGaussian(mu, torch.exp(2 * log_sigma))

    def decode(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """z [B,K,D] -> pixel means [B,K,3,H,W], mask logits [B,K,1,H,W]."""
        if self.config.decoder_constant is not None:
            z = torch.cat([z, torch.full_like(z[..., :1], self.config.decoder_constant)], -1)
        return split_rgb_mask(self.decoder(z.flatten(0, 1)), z.shape[0])

    def pixel_log_prob(self, x: Tensor, means: Tensor) -> Tensor:
        """log N(x; mu_k, sigma_x^2 I) (or the official logistic) per pixel, joint over RGB: [B,K,1,H,W]."""
        c = self.config
        diff = x.unsqueeze(1).float() - means.float()
        if c.likelihood == "gaussian":
            lp = -0.5 * (diff / c.sigma) ** 2 - math.log(c.sigma) - 0.5 * math.log(2 * math.pi)
        else:
            u = diff / c.logistic_scale
            lp = -u - math.log(c.logistic_scale) - 2 * F.softplus(-u)
        return lp.sum(2, keepdim=True)

    def terms(self, x: Tensor, lam: Tensor, means: Tensor, logits: Tensor) -> dict[str, Tensor]:
        """Per-image NLL and KL of one posterior, and the per-pixel quantities the refinement reads."""
        log_m = logits.float().log_softmax(1)
        log_p = self.pixel_log_prob(x, means)  # [B,K,1,H,W]
        log_px = torch.logsumexp(log_m + log_p, 1, keepdim=True)  # [B,1,1,H,W]
        q = self.posterior(lam)
        prior_var = torch.full_like(q.var, self.config.prior_variance)
        kl = q.kl(DiagonalGaussian(torch.zeros_like(q.mean), prior_var)).sum((1, 2))
        return {"nll": -log_px.flatten(1).sum(1), "kl": kl, "log_masks": log_m, "log_p": log_p, "log_px": log_px}

    # -- inference -------------------------------------------------------------------------------
    def refinement_inputs(self, x: Tensor, lam: Tensor, means: Tensor, logits: Tensor,
                          t: dict[str, Tensor]) -> dict[str, Tensor]:
        """App. B's auxiliary inputs by name (SPATIAL [B,K,C,H,W], FLAT [B,K,2D]); `t` = terms(...).

        The gradients are of sum_b L_b, so each image gets its own, first order (no create_graph);
        grad_mask is dL/dm_k = -p(x|k) / p(x) per pixel (the KL does not depend on m). LN: layer norm
        per slot over C, H, W (flat: over 2D, with a learned gain and bias). The STOP_GRADIENT inputs
        are detached; the others keep their graph, so the loss of later iterations trains the decoder
        and lambda through them."""
        b, k = logits.shape[:2]
        loss = (t["nll"] + t["kl"]).sum()
        d_lam, d_means = torch.autograd.grad(loss, [lam, means], retain_graph=True)  # [B,K,2D], [B,K,3,H,W]
        ln = lambda a: F.layer_norm(a, a.shape[2:])  # over C,H,W per (b, k)
        slots = lambda a: a.expand(b, k, *a.shape[2:])  # [B,1,...] -> [B,K,...]
        log_m, log_p, log_px = t["log_masks"], t["log_p"], t["log_px"]
        return {
            "image": slots(x.unsqueeze(1)),  # [B,K,3,H,W]
            "means": means,  # [B,K,3,H,W]
            "mask": log_m.exp(),  # m_k [B,K,1,H,W]
            "mask_logits": logits,  # [B,K,1,H,W]
            "grad_means": ln(d_means),  # [B,K,3,H,W]
            "grad_mask": layer_norm_neg_exp(log_p - log_px).detach(),  # LN(-p(x|k)/p(x)) [B,K,1,H,W]
            "grad_lambda": self.norm_grad(d_lam),  # [B,K,2D]
            "lambda": lam,  # [B,K,2D]
            "mask_posterior": (log_m + log_p - log_px).exp(),  # p(m_k | x, mu) [B,K,1,H,W]
            "likelihood": slots(ln(log_px)).detach(),  # log p(x|z), the mixture, for every slot [B,K,1,H,W]
            "leave_one_out": ln(leave_one_out(log_m, log_p)).detach(),  # log p(x | z_{i != k}) [B,K,1,H,W]
            "coordinates": self.coords.expand(b, k, *self.coords.shape),  # [B,K,2,H,W]
        }

    def infer(self, x: Tensor, iterations: int | None = None, lam: Tensor | None = None) -> dict[str, list[Tensor]]:
        """T refinement updates (default: the training T): nll, kl, masks, means and lambda of the
        posterior after t = 0..T updates (T + 1 entries; t = 0 is the initial posterior). `lam` [B,K,2D]
        replaces the learned initial posterior (e.g. to test equivariance). In eval mode the outputs
        are detached and each iteration's graph is freed, so memory stays flat over T."""
        with torch.set_grad_enabled(True):
            return self._infer(x, self.config.iterations if iterations is None else iterations, lam)

    def _infer(self, x: Tensor, iterations: int, lam: Tensor | None) -> dict[str, list[Tensor]]:
        c, b = self.config, x.shape[0]
        lam = self.lambda1.expand(b, c.num_slots, -1) if lam is None else lam
        if not lam.requires_grad:
            lam = lam.detach().requires_grad_(True)
        out = {key: [] for key in ("nll", "kl", "masks", "means", "lambda")}
        state = None
        for t in range(iterations + 1):
            z = self.posterior(lam).rsample()  # [B,K,D]
            means, logits = self.decode(z)
            terms = self.terms(x, lam, means, logits)
            for key, value in (("nll", terms["nll"]), ("kl", terms["kl"]), ("masks", terms["log_masks"].exp()),
                               ("means", means), ("lambda", lam)):
                out[key].append(value if self.training else value.detach())
            if t == iterations:
                break
            a = self.refinement_inputs(x, lam, means, logits, terms)
            spatial = torch.cat([a[name] for name, _ in self.SPATIAL], 2).flatten(0, 1)  # [B*K,17,H,W]
            flat = torch.cat([a[name] for name in self.FLAT], -1).flatten(0, 1)  # [B*K,4D]
            delta, state = self.refine(spatial, flat, state)
            lam = lam + delta.view_as(lam)  # lambda^(t+1)
            if not self.training:  # evaluation: no parameter gradients needed, keep memory flat over T
                lam = lam.detach().requires_grad_(True)
                state = None if state is None else tuple(h.detach() for h in state)
        return out

    @staticmethod
    def iteration_weights(iterations: int) -> list[float]:
        """t/T for the posterior after t = 0..T updates: the paper's sum_{t=1..T} (t/T) L^(t) with the
        initial L^(0) at weight 0, which is also the released code's linspace(0, 1, T+1)."""
        return [t / iterations for t in range(iterations + 1)]

    def forward(self, images: Tensor, step: int | None = None, iterations: int | None = None) -> ModelOutput:
        t_max = self.config.iterations if iterations is None else iterations
        its = self.infer(images, t_max)
        loss = sum(w * (n + k).mean() for w, n, k in zip(self.iteration_weights(t_max), its["nll"], its["kl"]))
        masks, means = its["masks"][-1], its["means"][-1]
        logs = {"nll": its["nll"][-1].mean().detach(), "kl": its["kl"][-1].mean().detach()}
        return ModelOutput(loss=loss, recon=(masks * means).sum(1), masks=masks,
                           slots=its["lambda"][-1][..., : self.config.latent_dim], logs=logs)
