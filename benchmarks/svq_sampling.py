"""Sampling SVQ's transformer priors (§3.1, §5 "Baselines", App. B.3: 8 layers, 4 heads, d 192, FFN 768) with
the key/value cache (`SemanticPrior.sample`, the default) against recomputing the whole prefix at every
position (`cache=False`, what nn.TransformerEncoder alone does), alternating in one run on the same weights
and generator seed: the semantic prior over SVQ's N M = 4 x 16 codes of 128, and the dVAE baseline's prior
over the 256 tokens of a 64 px image (vocabulary 4096). The draws are the same (tests/test_svq.py); prints
seconds per batch of scenes and the ratio cached / full.
"""
from __future__ import annotations

import statistics
from functools import partial

import torch

from benchmarks.common import table
from benchmarks.official import alternating_seconds
from common.provenance import hardware
from papers.svq.prior import PriorConfig, SemanticPrior

PRIORS = {"semantic prior, 4 x 16 codes of 128": PriorConfig(num_slots=4, blocks=16, codebook_size=128),
          "dVAE prior, 256 tokens of 4096": PriorConfig(num_slots=256, blocks=1, codebook_size=4096)}


def draw(prior: SemanticPrior, n: int, device: str, cache: bool) -> torch.Tensor:
    return prior.sample(n, generator=torch.Generator(device).manual_seed(0), cache=cache)  # [n,N,M]


def main(n: int | None = None, repeats: int = 3, warmup: int = 1) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    n = n or (256 if device == "cuda" else 4)
    print(f"SVQ's transformer priors, {n} scenes per batch, on {hardware()}")
    rows = []
    for name, config in PRIORS.items():
        torch.manual_seed(0)
        prior = SemanticPrior(config).to(device).eval()
        draws = {"cached": partial(draw, prior, n, device, True), "full prefix": partial(draw, prior, n, device, False)}
        times = alternating_seconds(draws, repeats, warmup)
        cached, full = (statistics.median(times[k]) for k in ("cached", "full prefix"))
        rows.append({"prior": name, "cached s": cached, "full prefix s": full, "cached / full": cached / full})
    print(table(rows))


if __name__ == "__main__":
    main()
