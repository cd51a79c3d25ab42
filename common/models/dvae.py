"""The discrete VAE of SLATE / SysBinder / SVQ (Singh et al. 2022; SVQ §2.2, App. B.2; implementation-checked
§7.1): images to a 4x-downsampled grid of categorical tokens and back, relaxed with Gumbel-softmax. SVQ trains
it jointly by the MSE of its reconstruction from soft tokens; a second, independent Gumbel draw made hard gives
the tokens its transformer decoder reads and predicts, detached (checked 7.1: two noise draws, no CE gradient
into the dVAE). Its decoder turns the transformer's tokens back into images.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def conv(cin: int, cout: int, kernel: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    """Conv2d (kaiming-uniform before a ReLU, else xavier-uniform; zero bias) [+ ReLU] (checked 7.1)."""
    layer = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2 if stride == 1 else 0)
    if relu:
        nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
    else:
        nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return nn.Sequential(layer, nn.ReLU()) if relu else nn.Sequential(layer)


def gumbel_temperature(step: int | None, start: float = 1.0, final: float = 0.1, steps: int = 30_000) -> float:
    """tau at `step`: cosine from `start` to `final` over `steps` (SLATE; checked 7.1), then `final`; `final`
    when step is None (evaluation)."""
    if step is None or step >= steps:
        return final
    return final + 0.5 * (start - final) * (1 + math.cos(math.pi * step / steps))


class DVAE(nn.Module):
    """Encoder: Conv 4x4 stride 4 (3 -> 64), 6 x (1x1 conv + ReLU), 1x1 conv to the vocabulary, log-softmax.
    Decoder: 1x1 convs and two 3x3 convs around two PixelShuffle(2) stages back to RGB, no output activation
    (MSE on the raw output; clamped to [0,1] only when images are returned)."""

    def __init__(self, vocab: int = 4096, hidden: int = 64):
        super().__init__()
        self.vocab = vocab
        self.encoder = nn.Sequential(conv(3, hidden, 4, stride=4), *(conv(hidden, hidden, 1) for _ in range(6)),
                                     conv(hidden, vocab, 1, relu=False))
        self.decoder = nn.Sequential(
            conv(vocab, hidden, 1), conv(hidden, hidden, 3), conv(hidden, hidden, 1), conv(hidden, hidden, 1),
            conv(hidden, 4 * hidden, 1), nn.PixelShuffle(2),
            conv(hidden, hidden, 3), conv(hidden, hidden, 1), conv(hidden, hidden, 1),
            conv(hidden, 4 * hidden, 1), nn.PixelShuffle(2),
            conv(hidden, 3, 1, relu=False))

    def log_probs(self, images: Tensor) -> Tensor:
        """images [B,3,H,W] in [0,1] -> token log-probabilities [B,V,H/4,W/4]."""
        return F.log_softmax(self.encoder(images), dim=1)

    def decode(self, one_hot: Tensor) -> Tensor:
        """(relaxed) one-hot tokens [B,V,h,w] -> raw RGB [B,3,4h,4w] (unclamped)."""
        return self.decoder(one_hot)

    def decode_tokens(self, tokens: Tensor) -> Tensor:
        """token indices [B,h,w] -> images [B,3,4h,4w] clamped to [0,1]."""
        one_hot = F.one_hot(tokens, self.vocab).permute(0, 3, 1, 2).float()  # [B,V,h,w]
        return self.decode(one_hot).clamp(0, 1)

    def forward(self, images: Tensor, tau: float) -> dict[str, Tensor]:
        """A training pass: the MSE summed over pixels and averaged over the batch, its reconstruction from a
        soft Gumbel-softmax sample, and the tokens [B,h,w] of a second, independent hard sample (detached)."""
        log_p = self.log_probs(images)  # [B,V,h,w]
        soft = F.gumbel_softmax(log_p, tau=tau, hard=False, dim=1)  # [B,V,h,w]
        with torch.no_grad():
            tokens = F.gumbel_softmax(log_p, tau=tau, hard=True, dim=1).argmax(1)  # [B,h,w]
        recon = self.decode(soft)  # [B,3,H,W]
        mse = ((images - recon) ** 2).sum() / len(images)
        return {"mse": mse, "recon": recon, "tokens": tokens, "log_probs": log_p}

    @torch.no_grad()
    def tokenize(self, images: Tensor) -> Tensor:
        """The most likely token of each cell [B,h,w] (no noise): the dVAE baseline prior's training data."""
        return self.log_probs(images).argmax(1)
