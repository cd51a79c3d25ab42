"""VQ-VAE (van den Oord et al. 2017), SVQ's patch-level baseline (`../shared/seeds/svq.txt` §2.1, §5 "Baselines";
App. B.3 gives only its prior, a 20-layer PixelCNN: papers/svq/pixelcnn.py). The encoder and decoder follow the
VQ-VAE paper's image model: two stride-2 4x4 convolutions of 256 channels and two residual blocks (ReLU, 3x3, ReLU,
1x1), the decoder their mirror with transposed convolutions, a 4x smaller latent grid (16 x 16 at 64 px, 32 x 32 at
128 px). The codebook is SVQ's own EMA quantiser with dead-code restarts (`BlockCodebooks` with one block, decay
0.99, tested as §3), so both models quantise the same way. The loss is the VQ-VAE paper's per image: the squared
error summed over pixels plus beta = 0.25 times the commitment ||z_e - sg[e]||^2 summed over the latent grid and
its d channels (EMA codebooks need no codebook loss); the quantiser's commitment is a mean, so it is scaled by
h w d here, else it would weigh ~10^4 times less than the reconstruction.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.hub import HubModel
from common.output import ModelOutput
from papers.svq.model import CITATION
from papers.svq.quantiser import BlockCodebooks


@dataclass
class VQVAEConfig:
    resolution: tuple[int, int] = (64, 64)
    channels: int = 256
    res_blocks: int = 2
    codebook_size: int = 512  # K
    code_dim: int = 64  # d
    beta: float = 0.25  # commitment weight (van den Oord et al.)
    decay: float = 0.99
    threshold: float = 1.0  # dead below this smoothed usage

    @property
    def grid(self) -> tuple[int, int]:
        return self.resolution[0] // 4, self.resolution[1] // 4


class Residual(nn.Module):
    """x + Conv1x1(ReLU(Conv3x3(ReLU(x))))."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class VQVAE(HubModel):
    """forward(images [B,3,H,W] in [0,1]) -> ModelOutput: loss = MSE (summed over pixels, batch mean) + beta x
    commitment; recon; `encode` -> code indices [B,h,w]; `decode_indices` -> images."""

    config_class = VQVAEConfig
    citation = CITATION

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        self.config = c = config
        if c.resolution[0] % 4 or c.resolution[1] % 4:
            raise ValueError(f"the VQ-VAE downsamples by 4: resolution {c.resolution} is not divisible by 4")
        ch = c.channels
        self.encoder = nn.Sequential(nn.Conv2d(3, ch, 4, 2, 1), nn.ReLU(), nn.Conv2d(ch, ch, 4, 2, 1),
                                     *(Residual(ch) for _ in range(c.res_blocks)), nn.ReLU(), nn.Conv2d(ch, c.code_dim, 1))
        self.decoder = nn.Sequential(nn.Conv2d(c.code_dim, ch, 3, padding=1), *(Residual(ch) for _ in range(c.res_blocks)),
                                     nn.ReLU(), nn.ConvTranspose2d(ch, ch, 4, 2, 1), nn.ReLU(),
                                     nn.ConvTranspose2d(ch, 3, 4, 2, 1))
        self.codebook = BlockCodebooks(1, c.codebook_size, c.code_dim, c.decay, threshold=c.threshold)

    def quantise(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """images -> z_q [B,d,h,w] (straight-through), indices [B,h,w], commitment."""
        z = self.encoder(images)  # [B,d,h,w]
        b, d, h, w = z.shape
        z_q, idx, commitment = self.codebook(z.permute(0, 2, 3, 1).reshape(b, h * w, 1, d))  # [B,hw,1,d]
        return z_q.view(b, h, w, d).permute(0, 3, 1, 2), idx.view(b, h, w), commitment

    def forward(self, images: Tensor, step: int | None = None) -> ModelOutput:
        z_q, idx, commitment = self.quantise(images)  # commitment: a mean over B h w d
        commitment = commitment * z_q[0].numel()  # per image: summed over h w d, as the reconstruction over pixels
        recon = self.decoder(z_q)  # [B,3,H,W]
        mse = ((recon.float() - images) ** 2).sum() / len(images)
        health = self.codebook.health(idx.reshape(-1, 1))
        logs = {"mse": mse.detach(), "commitment": commitment.detach(), "perplexity": health["perplexity"][0],
                "dead_codes": health["dead"][0].float()}
        return ModelOutput(loss=mse + self.config.beta * commitment, recon=recon.clamp(0, 1),
                           masks=torch.ones_like(images[:, None, :1]), slots=z_q.flatten(2).transpose(1, 2), logs=logs)

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """images [B,3,H,W] -> code indices [B,h,w] (what the PixelCNN prior learns)."""
        return self.quantise(images)[1]

    @torch.no_grad()
    def decode_indices(self, indices: Tensor) -> Tensor:
        """indices [B,h,w] -> images [B,3,H,W] in [0,1]."""
        z = self.codebook.lookup(indices[..., None])[..., 0, :]  # [B,h,w,d]
        return self.decoder(z.permute(0, 3, 1, 2)).clamp(0, 1)


def codebook_vectors(model: VQVAE, indices: Tensor) -> Tensor:
    """indices [B,h,w] -> the prototypes [B,h,w,d] (Table 5's "VQ-VAE Codebook" representation)."""
    return F.embedding(indices, model.codebook.codebook[0])
