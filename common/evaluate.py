"""python -m common.evaluate --run DIR [--checkpoint STEP|latest]: ARI-FG and MSE of a trained model on
held-out scenes.

Relies only on the `ModelOutput` contract, so every model evaluates the same way. Writes
`metrics.json` (default folder DIR/eval; with profile, steps, seed, hardware, commit, the training record and
the scenes' source: `common.provenance`) and a decomposition figure.
`--checkpoint` evaluates a training checkpoint instead of the final model (into DIR/eval/step_XXXXXXXX): a
progress check of an unfinished run, never a result of record.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from common.config import ConfigError, from_dict
from common.hub import CheckpointError
from common.metrics import ari_fg, mse
from common.provenance import provenance
from common.train.experiment import ExperimentConfig, build_model, load_scenes, model_class
from common.train.loop import checkpoint_folders, to_float_images, verify_checkpoint
from common.viz import save_decomposition


def eval_device() -> torch.device:
    """Where evaluation runs: the GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_of(model) -> torch.device:
    """The device of a model's parameters: evaluation moves its batches there."""
    return next(model.parameters()).device


def run_config(run: Path) -> ExperimentConfig:
    config_path = run / "config.yaml"
    if not config_path.is_file():
        raise CheckpointError(f"{run}: no config.yaml; is this a training run directory?")
    return from_dict(ExperimentConfig, yaml.safe_load(config_path.read_text()))


def load_run(run: Path):
    exp = run_config(run)
    return exp, model_class(exp.model).from_pretrained(run / "model")


def load_checkpoint(run: Path, step: int | None = None):
    """(exp, model, folder) of the training checkpoint of `run` at `step` (None: the newest), its files checked
    against their SHA-256: to follow an unfinished run."""
    exp = run_config(run)
    found = checkpoint_folders(run / "checkpoints")
    if not found or (step is not None and step not in found):
        raise CheckpointError(f"{run}: no checkpoint at step {step if found else 'any'} (saved: "
                              f"{', '.join(map(str, sorted(found))) or 'none'})")
    folder = found[max(found) if step is None else step]
    verify_checkpoint(folder)
    model, state = build_model(exp), load_file(folder / "model.safetensors")
    consume_prefix_in_state_dict_if_present(state, "module.")  # saved from a DistributedDataParallel wrapper
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{folder}: its weights do not fit the run's config.yaml ({err})") from err
    return exp, model, folder


@torch.no_grad()
def evaluate(model, data: dict, background: tuple[int, ...] = (0,), batch_size: int = 32,
             seed: int = 0) -> tuple[dict, tuple]:
    """Per-image ARI-FG and MSE averaged over the split; returns metrics and the first batch's outputs."""
    torch.manual_seed(seed)
    device = device_of(model)
    aris, mses, first = [], [], None
    for start in range(0, len(data["image"]), batch_size):
        images = to_float_images(data["image"][start:start + batch_size]).to(device)
        out = model(images)
        out.check(images)
        aris.append(ari_fg(data["mask"][start:start + batch_size].to(device), out.masks, background).cpu())
        mses.append(mse(images, out.recon).cpu())
        first = first or (images.cpu(), out)
    ari, err = torch.cat(aris), torch.cat(mses)
    return {"ari_fg": float(ari.mean()), "ari_fg_std": float(ari.std()), "mse": float(err.mean()),
            "n_images": int(len(ari))}, first


def parse_step(text: str) -> int:
    if not text.isdigit():
        raise ConfigError(f"--checkpoint takes a step number or 'latest', got {text!r}")
    return int(text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m common.evaluate", description=__doc__)
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--n", type=int, default=320, help="held-out images (EMORL/GENESIS: 320)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="output folder (default: RUN/eval)")
    p.add_argument("--checkpoint", default=None, metavar="STEP|latest",
                   help="evaluate this training checkpoint (progress of an unfinished run) instead of RUN/model")
    args = p.parse_args(argv)
    try:
        if args.checkpoint is None:
            (exp, model), step = load_run(args.run), None
        else:
            exp, model, checkpoint = load_checkpoint(args.run, None if args.checkpoint == "latest" else
                                                     parse_step(args.checkpoint))
            step = int(checkpoint.name[5:])
    except (ConfigError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    model = model.to(eval_device()).eval()
    meta, data = load_scenes(exp.data, exp.data.eval_split, args.n)
    metrics, (images, out) = evaluate(model, data, meta.background_ids, seed=args.seed)
    record = {"metrics": metrics, "model": exp.model, "profile": exp.profile,
              "steps": exp.train.steps if step is None else step, "seed": exp.train.seed, "eval_seed": args.seed,
              "dataset": exp.data.path or exp.data.name, "eval_split": exp.data.eval_split}
    if step is None:
        record |= provenance(args.run)
    else:
        record |= {"checkpoint": step, "of_steps": exp.train.steps, **provenance(args.run, checkpoint)}
    out_dir = args.out or args.run / "eval" / ("" if step is None else f"step_{step:08d}")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(record, indent=2))
    save_decomposition(out_dir / "decomposition.png", images[:8], out.recon[:8].cpu(), out.masks[:8].cpu())
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
