"""GENESIS-v2 (Engelcke et al. 2021): a UNet encoder, instance-colouring stick-breaking (IC-SBP) masks,
masked-mean slot posteriors, a shared spatial broadcast decoder, and an autoregressive or independent
slot prior. The shared generative baseline and segregation backbone of SRI, LOM and SVQ.

Its paper is not among our seeds: the specification is `../shared/reference/implementation-notes.md` §4
as checked against the official code in `implementation-checked.md` §4 (cited below as "checked 4.x"),
plus SRI and LOM App. A.4 for the settings they changed. Re-implemented from that description.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.hub import HubModel
from common.models.segregation import Segregation
from common.nn import SpatialBroadcastDecoder, linear_grid, split_rgb_mask
from common.output import ModelOutput
from common.prob import GECOMultiplicativeKL, gaussian_nll, geco_step_scale, masked_mean_image, mixture_nll
from common.prob.likelihood import HALF_LOG_2PI, gaussian_log_density


@dataclass
class GenesisV2Config:
    """Defaults: ShapeStacks 64 px, K = 9, F = 64, GENv2-MoG (normalised mixture, sigma 0.7), LSTM prior."""

    resolution: tuple[int, int] = (64, 64)
    num_slots: int = 9  # K_steps
    feat_dim: int = 64  # F = |z|
    likelihood: Literal["mixture", "gaussian"] = "mixture"  # GENv2-MoG | GENv2-G (masked-sum Gaussian)
    normalised: bool = True  # keep 1/2 log 2pi (MoG 0.7); G and CLEVR6's sigma-0.1 MoG drop it
    sigma: float = 0.7
    prior: Literal["autoregressive", "independent"] = "autoregressive"
    geco_goal: float | None = 0.5655  # per pixel-channel; None: plain ELBO (beta = 1)
    geco_step: float = 1e-5
    geco_step_scaling: Literal["genesis", "none"] = "genesis"  # x 64^2 / (H W) as GENESIS-v2's code (checked 4.2)
    geco_alpha: float = 0.99
    geco_speedup: float = 10.0


def straight_through_clamp(x: Tensor, low: float, high: float) -> Tensor:
    """clamp in the forward pass, identity gradient (checked 4.1: alpha in [0.01, 0.99])."""
    return x + (x.clamp(low, high) - x).detach()


def conv_gn_relu(c_in: int, c_out: int, kernel: int = 3, bias: bool = False) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=bias), nn.GroupNorm(8, c_out),
                         nn.ReLU())


class UNet(nn.Module):
    """log2(size) - 1 blocks of Conv3x3 (no bias) -> GN(8) -> ReLU, nearest x0.5 between them, a bottleneck
    MLP (ReLU after every layer), and an up path with skip concatenation and nearest x2 (checked 4.1).
    Down channels: c for all but the last three blocks, 2c for those (64-64-128-128-128 at 64 px)."""

    def __init__(self, size: int, c: int = 64, hidden: int = 128):
        super().__init__()
        n = int(math.log2(size)) - 1
        self.bottom = size // 2 ** (n - 1)
        if self.bottom * 2 ** (n - 1) != size:
            raise ValueError(f"GENESIS-v2 UNet: image size {size} is not a multiple of {2 ** (n - 1)}")
        down = [c] * (n - 3) + [2 * c] * 3
        self.down = nn.ModuleList(conv_gn_relu(a, b) for a, b in zip([3, *down[:-1]], down))
        flat = down[-1] * self.bottom**2
        self.mlp = nn.Sequential(nn.Linear(flat, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, flat), nn.ReLU())
        outs = [c, *down[:-1]]  # up block j maps [x; skip_j] (2 down[j] channels) to outs[j]
        self.up = nn.ModuleList(conv_gn_relu(2 * down[j], outs[j]) for j in range(n))

    def forward(self, x: Tensor) -> Tensor:
        """[B,3,H,W] -> features [B,c,H,W]."""
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            skips.append(x)
            if i < len(self.down) - 1:
                x = F.interpolate(x, scale_factor=0.5, mode="nearest")
        x = self.mlp(x.flatten(1)).view_as(x)  # [B,2c,b,b]
        for j in reversed(range(len(self.up))):
            x = self.up[j](torch.cat([x, skips[j]], 1))
            if j > 0:
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return x


class SemiConv(nn.Module):
    """Colour embedding: gate * Conv1x1(F -> 8) + [0,...,0, y, x] with the gate starting at 0, so the
    embedding is pure pixel coordinates at initialisation (checked 4.1)."""

    def __init__(self, feat_dim: int, size: tuple[int, int], dim: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(feat_dim, dim, 1)
        self.gate = nn.Parameter(torch.zeros(()))
        offset = torch.zeros(dim, *size)
        offset[-2:] = linear_grid(*size).permute(2, 0, 1)  # row, then column coordinate
        self.register_buffer("offset", offset, persistent=False)

    def forward(self, features: Tensor) -> Tensor:
        return self.gate * self.conv(features) + self.offset  # [B,8,H,W]


class ICSBP(nn.Module):
    """Instance-colouring stick-breaking process with a Gaussian kernel (checked 4.1): one U(0,1) map per
    image; for k < K the seed pixel is argmax(u * scope), alpha_k = exp(-|c - c_seed|^2 / sigma) clamped
    to [0.01, 0.99] straight-through, log m_k = log s + log alpha_k, log s += log(1 - alpha_k); the last
    mask is the remaining scope. sigma = exp(log_sigma), initialised to 1 / (K ln 2)."""

    def __init__(self, num_slots: int):
        super().__init__()
        self.num_slots = num_slots
        self.log_sigma = nn.Parameter(torch.tensor(math.log(1.0 / (num_slots * math.log(2)))))

    def forward(self, colour: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """colour [B,E,H,W] -> log masks [B,K,1,H,W] that sum to one over K."""
        b, e, h, w = colour.shape
        flat = colour.flatten(2)  # [B,E,HW]
        u = torch.rand(b, h * w, device=colour.device, generator=generator)  # [B,HW]
        log_s = torch.zeros(b, h * w, device=colour.device, dtype=flat.dtype)  # log scope [B,HW]
        log_m = []
        for _ in range(self.num_slots - 1):
            pixel = (u * log_s.exp()).argmax(1)  # [B], no gradient through the choice
            seed = flat.gather(2, pixel.view(b, 1, 1).expand(b, e, 1))  # [B,E,1], the value has one
            alpha = torch.exp(-((flat - seed) ** 2).sum(1) / self.log_sigma.exp())  # [B,HW]
            alpha = straight_through_clamp(alpha, 0.01, 0.99)
            log_m.append(log_s + alpha.log())
            log_s = log_s + (1 - alpha).log()
        log_m.append(log_s)
        return torch.stack(log_m, 1).view(b, self.num_slots, 1, h, w)


class AutoregressivePrior(nn.Module):
    """p(z_1) = N(0, I); p(z_k | z_<k) from LSTM(F, 4F) -> Linear(4F, 2F): mean tanh, std sigmoid(x + 4)
    + 1e-4 (checked 4.2). Teacher-forced on posterior samples in training, nothing detached. With `scene_dim`
    (SRI Table 4's "GENv2 + scene variable") the LSTM's first input is GELU(W_s s), as in SRI's prior (Eq. 2),
    and p(z_1 | s) comes from the same head."""

    def __init__(self, dim: int, scene_dim: int | None = None):
        super().__init__()
        self.lstm = nn.LSTM(dim, 4 * dim, batch_first=True)
        self.head = nn.Linear(4 * dim, 2 * dim)
        self.project = nn.Sequential(nn.Linear(scene_dim, dim), nn.GELU()) if scene_dim else None  # W_s

    def params(self, h: Tensor) -> tuple[Tensor, Tensor]:
        mean, s = self.head(h).chunk(2, -1)
        return mean.tanh(), torch.sigmoid(s + 4.0) + 1e-4

    def forward(self, z: Tensor, s: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Teacher forcing: z [B,K,D] (and s [B,S] with a scene variable) -> prior mean, std [B,K,D] of each
        slot given the earlier ones."""
        if s is not None:
            h, _ = self.lstm(torch.cat([self.project(s).unsqueeze(1), z[:, :-1]], 1))  # [B,K,4D]
            return self.params(h)
        h, _ = self.lstm(z[:, :-1])  # [B,K-1,4D]
        mean, std = self.params(h)
        first_mean, first_std = torch.zeros_like(z[:, :1]), torch.ones_like(z[:, :1])
        return torch.cat([first_mean, mean], 1), torch.cat([first_std, std], 1)

    def sample(self, n: int, k: int, dim: int, temperature: float, generator, device,
               s: Tensor | None = None) -> Tensor:
        """Roll the LSTM on its own samples (from GELU(W_s s) when s [n,S] is given): [n,K,D]; temperature
        scales every std."""
        if s is None:
            zs = [temperature * torch.randn(n, 1, dim, generator=generator, device=device)]  # z_1 ~ N(0, tau^2 I)
            x = zs[0]
        else:
            zs, x = [], self.project(s).unsqueeze(1)  # [n,1,D]
        state = None
        while len(zs) < k:
            h, state = self.lstm(x, state)  # [n,1,4D]
            mean, std = self.params(h)
            x = mean + temperature * std * torch.randn(mean.shape, generator=generator, device=device)
            zs.append(x)
        return torch.cat(zs, 1)


def broadcast_decoder(c: GenesisV2Config) -> SpatialBroadcastDecoder:
    """GENESIS-v2's spatial broadcast decoder (checked 4.1): z [N,F] -> RGB and mask logits [N,4,H,W], from
    a 1/16-size broadcast through four stride-2 transposed convolutions."""
    f, (h, w) = c.feat_dim, c.resolution
    return SpatialBroadcastDecoder(f, (h, w), (h // 16, w // 16), (f, f, 64, 64, 4), (5, 5, 5, 5, 1),
                                   (2, 2, 2, 2, 0), (2, 2, 2, 2, 1), position="concat", groups=8)


def decode_slots(decoder: nn.Module, z: Tensor) -> tuple[Tensor, Tensor]:
    """z [B,K,F] -> RGB means [B,K,3,H,W] (sigmoid), log masks [B,K,1,H,W] (log-softmax over K)."""
    rgb, logits = split_rgb_mask(decoder(z.flatten(0, 1)), z.shape[0])
    return rgb.sigmoid(), logits.log_softmax(1)


def slot_nll(c: GenesisV2Config, images: Tensor, rgb: Tensor, log_masks: Tensor) -> Tensor:
    """Per image [B], summed over C, H, W: the mixture over K per pixel-channel with the decoder masks
    (GENv2-MoG), or the Gaussian of the masked sum (GENv2-G); sigma global (checked 4.2)."""
    x, y, log_m = images.float(), rgb.float(), log_masks.float()
    if c.likelihood == "mixture":
        return mixture_nll(x, y, log_m, c.sigma, normalised=c.normalised)
    return gaussian_nll(x, masked_mean_image(y, log_m.exp()), c.sigma, normalised=c.normalised)


class GenesisV2(HubModel, paper_url="https://arxiv.org/abs/2104.09958"):
    config_class = GenesisV2Config
    citation = """@inproceedings{engelcke2021genesisv2,
  title={GENESIS-V2: Inferring Unordered Object Representations without Iterative Refinement},
  author={Engelcke, Martin and Parker Jones, Oiwi and Posner, Ingmar},
  booktitle={NeurIPS}, year={2021}}"""

    def __init__(self, config: GenesisV2Config):
        super().__init__()
        self.config = c = config
        h, w = c.resolution
        if h != w:
            raise ValueError(f"GENESIS-v2 takes square images, got resolution {c.resolution}")
        f, width = c.feat_dim, min(c.feat_dim, 64)
        self.encoder = UNet(h, width)
        self.seg_head = nn.Sequential(conv_gn_relu(width, f), SemiConv(f, (h, w)))
        self.icsbp = ICSBP(c.num_slots)
        self.feat_head = nn.Sequential(conv_gn_relu(width, f), nn.Conv2d(f, 2 * f, 1))
        self.z_head = nn.Sequential(nn.LayerNorm(2 * f), nn.Linear(2 * f, 2 * f), nn.ReLU(), nn.Linear(2 * f, 2 * f))
        self.decoder = broadcast_decoder(c)
        self.prior = AutoregressivePrior(f) if c.prior == "autoregressive" else None
        self.geco = None if c.geco_goal is None else GECOMultiplicativeKL(
            c.geco_goal * 3 * h * w, c.geco_step * geco_step_scale(c.geco_step_scaling, (h, w)), c.geco_alpha,
            speedup=c.geco_speedup)

    # -- inference -------------------------------------------------------------------------------
    def encode(self, images: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """images [B,3,H,W] in [0,1] -> IC-SBP log masks [B,K,1,H,W] and the slot posterior mean, std [B,K,F]."""
        features = self.encoder(images)  # [B,c,H,W]
        log_m = self.icsbp(self.seg_head(features), generator)  # [B,K,1,H,W]
        feats = self.feat_head(features).flatten(2)  # [B,2F,HW]
        m = log_m.exp().flatten(2)  # [B,K,HW]; not detached: the masks learn through this pooling (checked 4.1)
        pooled = (m @ feats.transpose(1, 2)) / (m.sum(2, keepdim=True) + 1e-5)  # [B,K,2F]: sum(m f) / (sum m + eps)
        mean, s = self.z_head(pooled).chunk(2, -1)  # [B,K,F] each
        return {"log_masks_enc": log_m, "mean": mean, "std": F.softplus(s + 0.5) + 1e-8}

    def decode(self, z: Tensor, decoder: nn.Module | None = None) -> tuple[Tensor, Tensor]:
        """z [B,K,F] -> RGB means [B,K,3,H,W] (sigmoid), log masks [B,K,1,H,W] (log-softmax over K), with
        this model's spatial broadcast decoder or `decoder` (a copy of it with other weights)."""
        return decode_slots(self.decoder if decoder is None else decoder, z)

    def nll(self, images: Tensor, rgb: Tensor, log_masks: Tensor) -> Tensor:
        """Per image [B]: `slot_nll` under this model's likelihood."""
        return slot_nll(self.config, images, rgb, log_masks)

    def kl(self, z: Tensor, mean: Tensor, std: Tensor) -> Tensor:
        """Single-sample Monte Carlo KL per image [B]: sum over slots and dims of log q(z) - log p(z)."""
        log_q = gaussian_log_density(z, mean, std, normalised=True)
        if self.prior is None:
            p_mean, p_std = torch.zeros_like(z), torch.ones_like(z)
        else:
            p_mean, p_std = self.prior(z)
        return (log_q - gaussian_log_density(z, p_mean, p_std, normalised=True)).flatten(1).sum(1)

    @property
    def num_slots(self) -> int:
        return self.config.num_slots

    @property
    def slot_dim(self) -> int:
        return self.config.feat_dim

    def forward(self, images: Tensor, step: int | None = None) -> ModelOutput:
        return self.segregate(images, step).output

    def elbo_terms(self, images: Tensor) -> dict[str, Tensor]:
        """One pass: the posterior, one sample per slot z [B,K,F], its decoding, and per image [B] the NLL
        under the configured likelihood and the single-sample KL."""
        post = self.encode(images)
        z = post["mean"] + post["std"] * torch.randn_like(post["std"])  # [B,K,F]
        rgb, log_m = self.decode(z)
        kl = self.kl(z.float(), post["mean"].float(), post["std"].float())
        return {**post, "z": z, "rgb": rgb, "log_masks": log_m, "nll": self.nll(images, rgb, log_m), "kl": kl}

    def segregate(self, images: Tensor, step: int | None = None) -> Segregation:
        """The segregation interface (common.models.segregation): posterior, the decoded sample, and the
        GENESIS-v2 loss (ELBO terms under GECO, checked 4.2)."""
        t = self.elbo_terms(images)
        err, kl = t["nll"].mean(), t["kl"].mean()
        loss = err + kl if self.geco is None else self.geco.loss(err, kl)
        masks = t["log_masks"].exp()
        logs = {"err": err.detach(), "kl": kl.detach()}
        if self.geco is not None:
            logs["geco_beta"] = self.geco.beta.detach()
        out = ModelOutput(loss=loss, recon=(masks * t["rgb"]).sum(1), masks=masks, slots=t["mean"], logs=logs)
        return Segregation(t["mean"], t["std"], t["z"], out)

    @torch.no_grad()
    def encoder_masks(self, images: Tensor) -> Tensor:
        """The IC-SBP masks [B,K,1,H,W] (GENESIS-v2 reports ARI-FG for these and the decoder's, checked 4.3)."""
        return self.encode(images)["log_masks_enc"].exp()

    @torch.no_grad()
    def negative_elbo(self, images: Tensor) -> Tensor:
        """Single-sample negative ELBO per image [B] in nats under the normalised likelihood on [0,1]
        pixels (SRI Tables 3-4's bits/dim convention), whichever normalisation training used."""
        t = self.elbo_terms(images)
        constant = 0.0 if self.config.normalised else HALF_LOG_2PI * images[0].numel()
        return t["nll"] + constant + t["kl"]

    def after_step(self, out: ModelOutput, ok: Tensor | bool = True) -> None:
        """GECO's multiplicative beta update from the batch-mean error; none on a skipped step."""
        if self.geco is not None:
            self.geco.update(out.logs["err"], ok)

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """n scenes from the prior, slots in generation order: images [n,3,H,W], masks [n,K,1,H,W], slots
        [n,K,F]. temperature scales the prior std (the official code samples at 1, checked 4.2)."""
        c, device = self.config, self.z_head[1].weight.device
        if self.prior is None:
            z = temperature * torch.randn(n, c.num_slots, c.feat_dim, generator=generator, device=device)
        else:
            z = self.prior.sample(n, c.num_slots, c.feat_dim, temperature, generator, device)
        rgb, log_m = self.decode(z)
        masks = log_m.exp()
        return {"images": (masks * rgb).sum(1), "masks": masks, "slots": z}
