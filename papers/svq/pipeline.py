"""python -m papers.svq.pipeline {prepare,scenes,train,prior,dvae,genesis,evaluate,report} --dataset D --profile P [--seed S]

prepare: SVQ's scenes; scenes: for 2D Sprites, the odd-one-out scenes its priors model (App. B.1); train: SVQ;
prior: the semantic prior on the frozen SVQ's codes (§3.1); dvae: the dVAE baseline's token prior over the same
SVQ's dVAE (§5 "Baselines"); genesis: GENESIS-v2 on the CLEVR sets (Table 3); evaluate: papers/svq/evaluate.py;
report: papers/svq/report.ipynb. The generation-accuracy judge is `common.profile_judge --task
generation_accuracy`'s (the root dvc.yaml's profile_judge stage).
"""
from common.requirements import require

require("pipeline")  # before the imports that need it

import dataclasses
import hashlib
import sys

import torch

from common.config import ConfigError
from common.hub import WEIGHTS
from common.pipeline import Stage, main, prepare, train
from common.train.experiment import load_train_images
from common.train.loop import to_float_images
from papers.svq.evaluate import evaluate, genesis_stage, load_model, prepared, prior_stage, scenes_stage, svq_eval

DUMP_BATCH = 320  # the official dump's batch (checked 7.1)


def prepare_scenes(stage: Stage):
    """The priors' own scenes where they differ from SVQ's (App. B.1: 2D Sprites' odd-one-out scenes)."""
    scenes = scenes_stage(stage)
    if scenes is stage:
        raise ConfigError(f"{stage.dataset}'s priors model SVQ's own scenes (no eval.prior_scenes): nothing to prepare")
    return prepare(scenes)


@torch.no_grad()
def dump(stage: Stage, kind: str) -> torch.Tensor:
    """What a prior learns, from the frozen eval-mode SVQ on the priors' training scenes (checked 7.1: one
    draw of the slot noise, fixed once dumped): the last iteration's code indices [n,N,M] (kind "svq") or the
    dVAE's most likely tokens as [n,L,1] (kind "dvae"). Cached beside the prior's run, keyed by SVQ's weights."""
    weights = hashlib.sha256((stage.run_dir / "model" / WEIGHTS).read_bytes()).hexdigest()
    cache = prior_stage(stage, kind).run_dir.with_name(f"seed{stage.seed}-codes.pt")
    if cache.is_file() and (saved := torch.load(cache))["svq_sha256"] == weights:
        return saved["rows"]
    svq = load_model(stage.run_dir)
    images = load_train_images(prepared(scenes_stage(stage)))
    torch.manual_seed(svq_eval(stage).seed)
    parts = []
    for batch in images.split(DUMP_BATCH):
        x = to_float_images(batch).to(next(svq.parameters()).device)
        parts.append(svq.encode(x)["indices"] if kind == "svq" else svq.dvae.tokenize(x).flatten(1)[..., None])
    rows = torch.cat(parts).cpu()
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"svq_sha256": weights, "rows": rows}, cache.with_suffix(".tmp"))
    cache.with_suffix(".tmp").replace(cache)
    return rows


def fit_prior(stage: Stage, kind: str):
    """Train a prior (papers/svq/configs/prior.yaml) on `dump(stage, kind)` through the shared loop."""
    if not svq_eval(stage).generative:
        raise ConfigError(f"{stage.dataset} is an App. A.2 run (eval.generative: false): it has no priors")
    svq = load_model(stage.run_dir).config
    shape = ((svq.num_slots, svq.blocks, svq.codebook_size) if kind == "svq"
             else (svq.tokens, 1, svq.vocab))  # the dVAE's L tokens as L positions of one block of V codes
    settings = tuple(f"model_config.{k}={v}" for k, v in zip(("num_slots", "blocks", "codebook_size"), shape))
    prior = dataclasses.replace(prior_stage(stage, kind), overrides=settings)
    return train(prior, data=scenes_stage(stage), rows=dump(stage, kind), prepare=lambda rows: rows)


def fit_genesis(stage: Stage):
    if not svq_eval(stage).genesis:
        raise ConfigError(f"{stage.dataset} has no GENESIS-v2 baseline (eval.genesis: false; Table 3 is CLEVR's)")
    return train(genesis_stage(stage), data=stage)


if __name__ == "__main__":
    sys.exit(main("svq", evaluate, extra={"scenes": prepare_scenes, "prior": lambda s: fit_prior(s, "svq"),
                                          "dvae": lambda s: fit_prior(s, "dvae"), "genesis": fit_genesis}))
