"""python -m papers.svq.pipeline {prepare,scenes,train,prior,dvae,vqvae,pixelcnn,genesis,evaluate,downstream,report}
    --dataset D --profile P [--seed S]

prepare: SVQ's scenes; scenes: for 2D Sprites, the odd-one-out scenes its priors model (App. B.1); train: SVQ;
prior: the semantic prior on the frozen SVQ's codes (§3.1); dvae: the dVAE baseline's token prior over the same
SVQ's dVAE (§5 "Baselines"); vqvae, pixelcnn: the VQ-VAE baseline and its gated PixelCNN prior (App. B.3); genesis:
GENESIS-v2 on the CLEVR sets (Table 3); evaluate: papers/svq/evaluate.py; downstream: Tables 4-5 on the frozen SVQ,
VQ-VAE and SysBinder (`<config>_sysbinder`) of sprites_quadrant / clevr_hard (papers/svq/downstream.py), reported
as `<config>_downstream`; report: papers/svq/report.ipynb. The generation-accuracy judge is `common.profile_judge --task
generation_accuracy`'s (the root dvc.yaml's profile_judge stage).
"""
from common.requirements import require

require("pipeline")  # before the imports that need it

import dataclasses
import hashlib
import sys
from pathlib import Path

import torch

from common.config import ConfigError
from common.hub import WEIGHTS
from common.pipeline import Stage, main, prepare, train
from common.train.experiment import load_train_images
from common.train.loop import to_float_images
from papers.svq.evaluate import (evaluate, evaluate_downstream, genesis_stage, load_model, prepared, prior_stage,
                                 scenes_stage, svq_eval, vqvae_stage)

DUMP_BATCH = 320  # the official dump's batch (checked 7.1)


def prepare_scenes(stage: Stage):
    """The priors' own scenes where they differ from SVQ's (App. B.1: 2D Sprites' odd-one-out scenes)."""
    scenes = scenes_stage(stage)
    if scenes is stage:
        raise ConfigError(f"{stage.dataset}'s priors model SVQ's own scenes (no eval.prior_scenes): nothing to prepare")
    return prepare(scenes)


def source(stage: Stage, kind: str) -> Path:
    """The run whose codes a prior of this kind learns: SVQ's (kinds "svq" and "dvae") or the VQ-VAE's."""
    return vqvae_stage(stage).run_dir if kind == "vqvae" else stage.run_dir


@torch.no_grad()
def codes(model, x: torch.Tensor, kind: str) -> torch.Tensor:
    """images [B,3,H,W] -> what a prior of this kind learns: SVQ's last-iteration code indices [B,N,M]; the dVAE's
    most likely tokens as [B,L,1]; the VQ-VAE's code grid [B,h,w]."""
    if kind == "svq":
        return model.encode(x)["indices"]
    return model.dvae.tokenize(x).flatten(1)[..., None] if kind == "dvae" else model.encode(x)


def dump(stage: Stage, kind: str) -> torch.Tensor:
    """`codes` of the priors' training scenes from the frozen eval-mode source model (checked 7.1: for SVQ, one
    draw of the slot noise, fixed once dumped). Cached beside the prior's run, keyed by the source's weights."""
    weights = hashlib.sha256((source(stage, kind) / "model" / WEIGHTS).read_bytes()).hexdigest()
    cache = prior_stage(stage, kind).run_dir.with_name(f"seed{stage.seed}-codes.pt")
    if cache.is_file() and (saved := torch.load(cache))["source_sha256"] == weights:
        return saved["rows"]
    model = load_model(source(stage, kind))
    images = load_train_images(prepared(scenes_stage(stage)))
    torch.manual_seed(svq_eval(stage).seed)
    device = next(model.parameters()).device
    rows = torch.cat([codes(model, to_float_images(b).to(device), kind).cpu() for b in images.split(DUMP_BATCH)])
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"source_sha256": weights, "rows": rows}, cache.with_suffix(".tmp"))
    cache.with_suffix(".tmp").replace(cache)
    return rows


def prior_settings(stage: Stage, kind: str) -> tuple[str, ...]:
    """The sequence a prior of this kind models, from its source run's config."""
    c = load_model(source(stage, kind)).config
    if kind == "vqvae":
        return f"model_config.grid=[{c.grid[0]},{c.grid[1]}]", f"model_config.codebook_size={c.codebook_size}"
    shape = ((c.num_slots, c.blocks, c.codebook_size) if kind == "svq"
             else (c.tokens, 1, c.vocab))  # the dVAE's L tokens as L positions of one block of V codes
    return tuple(f"model_config.{k}={v}" for k, v in zip(("num_slots", "blocks", "codebook_size"), shape))


def fit_prior(stage: Stage, kind: str):
    """Train a prior (`PRIORS[kind]`'s config) on `dump(stage, kind)` through the shared loop."""
    if not svq_eval(stage).generative:
        raise ConfigError(f"{stage.dataset} is an App. A.2 run (eval.generative: false): it has no priors")
    prior = dataclasses.replace(prior_stage(stage, kind), overrides=prior_settings(stage, kind))
    return train(prior, data=scenes_stage(stage), rows=dump(stage, kind), prepare=lambda rows: rows)


def fit_vqvae(stage: Stage):
    """The VQ-VAE baseline on SVQ's training scenes (App. B.1: 2D Sprites' `random` ones; Table 4: `quadrant`)."""
    if not (svq_eval(stage).generative or svq_eval(stage).downstream):
        raise ConfigError(f"{stage.dataset} has neither priors nor a downstream task: it has no baselines")
    return train(vqvae_stage(stage), data=stage)


def fit_genesis(stage: Stage):
    if not svq_eval(stage).genesis:
        raise ConfigError(f"{stage.dataset} has no GENESIS-v2 baseline (eval.genesis: false; Table 3 is CLEVR's)")
    return train(genesis_stage(stage), data=stage)


if __name__ == "__main__":
    sys.exit(main("svq", evaluate, extra={"scenes": prepare_scenes, "prior": lambda s: fit_prior(s, "svq"),
                                          "dvae": lambda s: fit_prior(s, "dvae"), "vqvae": fit_vqvae,
                                          "pixelcnn": lambda s: fit_prior(s, "vqvae"), "genesis": fit_genesis,
                                          "downstream": evaluate_downstream}))
