"""python -m common.evaluate_generative --run DIR: the generative evaluation SRI, LOM and SVQ share.

For a model with `sample(n, temperature, generator)` (-> {"images", "masks", ...}) and `negative_elbo(images)`
(GENESIS-v2 today): FID, KID and FID at infinite N of `--n` samples against as many real test scenes
(common.metrics.generative: the protocol and its pitfalls), the negative ELBO in bits per dimension over
`--bpd-n` validation scenes (single-sample, continuous likelihood on [0,1]; SRI Tables 3-4 use 5,000),
ARI-FG on 320 test scenes from the decoder masks and, where the model has `encoder_masks`, from those
too; a sample grid with masks coloured by slot number (generation order) and a decomposition figure.
Writes metrics.json with N, temperature, quantisation and provenance.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from common.config import ConfigError
from common.data import load_meta
from common.evaluate import device_of, eval_device, evaluate, load_run
from common.hub import CheckpointError
from common.metrics import ari_fg
from common.metrics.generative import QUANTISATIONS, bits_per_dim, evaluate_samples, quantise
from common.metrics.judges.score import score
from common.provenance import provenance
from common.train.experiment import load_scenes
from common.train.loop import to_float_images
from common.viz import colour_masks, grid, save_decomposition, save_png


@torch.no_grad()
def bpd(model, images: torch.Tensor, batch_size: int = 32) -> float:
    """Bits per dim of uint8 images [N,H,W,3] under the model's single-sample negative ELBO."""
    device, values = device_of(model), []
    for start in range(0, len(images), batch_size):
        x = to_float_images(images[start:start + batch_size]).to(device)
        values.append(model.negative_elbo(x).cpu())
    return bits_per_dim(torch.cat(values), int(images[0].numel()))


@torch.no_grad()
def encoder_ari(model, data: dict, background, batch_size: int = 32) -> float:
    device, aris = device_of(model), []
    for start in range(0, len(data["image"]), batch_size):
        x = to_float_images(data["image"][start:start + batch_size]).to(device)
        aris.append(ari_fg(data["mask"][start:start + batch_size].to(device), model.encoder_masks(x), background).cpu())
    return float(torch.cat(aris).mean())


def sample_grid(path: Path, samples: dict, per_row: int = 8) -> Path:
    """Row pairs: samples, then their masks coloured by slot number (slot k has the same colour everywhere)."""
    images, masks = samples["images"][:per_row].cpu(), samples["masks"][:per_row].cpu()
    return save_png(grid([images, colour_masks(masks)]), path, scale=2)


@torch.no_grad()
def draw(model, n: int, temperature: float, generator: torch.Generator, batch_size: int) -> dict:
    """n samples of model.sample in batches: images float [n,3,H,W] and masks [n,K,1,H,W] on the CPU."""
    parts = [model.sample(min(batch_size, n - i), temperature, generator=generator) for i in range(0, n, batch_size)]
    return {k: torch.cat([p[k].cpu() for p in parts]) for k in ("images", "masks")}


def s_acc(model, judge: Path, n: int, paper_n: int, temperature: float, quantisation: str, batch_size: int,
          generator: torch.Generator) -> dict:
    """S-Acc (SRI §5.3, LOM §4) by the learned judge in `judge` over n samples, quantised as images are saved,
    and over the first paper_n (the papers' hand-labelled count); a status naming the command when no judge."""
    if not (judge / "config.json").is_file():
        return {"status": f"no S-Acc judge in {judge}: python -m common.profile_judge --profile <profile>"}
    x = quantise(draw(model, n, temperature, generator, batch_size)["images"], quantisation).float() / 255
    return {**score(judge, x), "paper_count": score(judge, x, paper_n)}


def run(args) -> dict:
    exp, model = load_run(args.run)
    if not (hasattr(model, "sample") and hasattr(model, "negative_elbo")):
        raise ConfigError(f"{exp.model} has no sample()/negative_elbo(): not a generative model")
    model = model.to(eval_device()).eval()
    torch.manual_seed(args.seed)
    generator = torch.Generator(device=device_of(model)).manual_seed(args.seed)
    meta, test = load_scenes(exp.data, exp.data.eval_split, max(args.n, args.ari_n))
    real = test["image"][:args.n].permute(0, 3, 1, 2)  # uint8 [N,3,H,W]
    sample = lambda b: model.sample(b, args.temperature, generator)["images"]
    key = f"{exp.data.path or exp.data.name}|{exp.data.params}|{exp.data.seed}|{exp.data.eval_split}"
    fid = evaluate_samples(real, sample, args.n, key=key, temperature=args.temperature,
                           quantisation=args.quantisation, cache_dir=args.cache)
    ari_data = {k: v[:args.ari_n] for k, v in test.items()}
    seg, (images, out) = evaluate(model, ari_data, meta.background_ids, seed=args.seed)
    metrics = {**fid, "ari_fg_decoder": seg["ari_fg"], "mse": seg["mse"], "n_ari": seg["n_images"]}
    if hasattr(model, "encoder_masks"):
        metrics["ari_fg_encoder"] = encoder_ari(model, ari_data, meta.background_ids)
    split = "val" if not exp.data.path or "val" in load_meta(exp.data.path).splits else exp.data.eval_split
    _, val = load_scenes(exp.data, split, args.bpd_n)
    metrics.update(bpd=bpd(model, val["image"]), n_bpd=int(len(val["image"])), bpd_split=split,
                   bpd_convention="single-sample negative ELBO, normalised Gaussian density on [0,1] pixels")
    out_dir = args.out or args.run / "eval_generative"
    out_dir.mkdir(parents=True, exist_ok=True)
    sample_grid(out_dir / "samples.png", model.sample(8, args.temperature, generator))
    save_decomposition(out_dir / "decomposition.png", images[:8], out.recon[:8].cpu(), out.masks[:8].cpu())
    record = {"metrics": metrics, "model": exp.model, "profile": exp.profile, "steps": exp.train.steps,
              "seed": exp.train.seed, "eval_seed": args.seed, "dataset": exp.data.path or exp.data.name,
              **provenance(args.run)}
    (out_dir / "metrics.json").write_text(json.dumps(record, indent=2))
    return metrics


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m common.evaluate_generative", description=__doc__)
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--n", type=int, default=10_000, help="samples and real test scenes for FID/KID (papers: 10,000)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--quantisation", choices=QUANTISATIONS, default="truncate",
                   help="how samples become uint8: GENESIS-v2's compute_fid truncates (default); SVQ's dump rounds")
    p.add_argument("--bpd-n", type=int, default=5000, help="validation scenes for bits/dim (SRI: 5,000)")
    p.add_argument("--ari-n", type=int, default=320, help="test scenes for ARI-FG (GENESIS-v2, SRI: 320)")
    p.add_argument("--cache", type=Path, default=None, help="folder caching the real images' Inception features")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="output folder (default: RUN/eval_generative)")
    args = p.parse_args(argv)
    try:
        metrics = run(args)
    except (ConfigError, CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
