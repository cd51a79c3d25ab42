"""IODINE evaluation (§4): ARI-FG (background excluded), MSE and KL at every inference iteration, up
to `iterations` (Fig. 8 evaluates models trained with T = 1..6 up to 15), optionally with more slots
at test time (Fig. 9: K = 11 on 7-9 objects). Writes reports/iodine/<dataset>-<profile>/metrics.json.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from common.config import from_dict
from common.data import load_meta
from common.metrics import ari_fg, mse
from common.pipeline import Stage, data_path
from common.provenance import provenance
from common.train.experiment import load_scenes
from common.train.loop import to_float_images
from common.viz import save_decomposition
from papers.iodine.model import IODINE


@dataclass
class IODINEEval:
    iterations: int = 15
    num_slots: int | None = None
    batch_size: int = 16
    seed: int = 0


def per_iteration(model: IODINE, data: dict, cfg: IODINEEval, background) -> list[dict]:
    """Mean ARI-FG, MSE and KL after each iteration t = 1..cfg.iterations."""
    torch.manual_seed(cfg.seed)
    sums = [{"ari_fg": 0.0, "mse": 0.0, "kl": 0.0} for _ in range(cfg.iterations)]
    n = len(data["image"])
    for s in range(0, n, cfg.batch_size):
        images = to_float_images(data["image"][s:s + cfg.batch_size])
        its = model.infer(images, cfg.iterations)
        for t in range(cfg.iterations):
            masks, means = its["masks"][t], its["means"][t]
            sums[t]["ari_fg"] += float(ari_fg(data["mask"][s:s + cfg.batch_size], masks, background).sum())
            sums[t]["mse"] += float(mse(images, (masks * means).sum(1)).sum())
            sums[t]["kl"] += float(its["kl"][t].sum())
    return [{k: v / n for k, v in row.items()} for row in sums]


def evaluate(stage: Stage) -> Path:
    exp = stage.experiment()
    cfg = from_dict(IODINEEval, exp.eval, "eval")
    model = IODINE.from_pretrained(stage.run_dir / "model")
    if cfg.num_slots is not None:  # the initial posterior is shared by all slots: K is free at test time
        model.config = dataclasses.replace(model.config, num_slots=cfg.num_slots)
    path = data_path(stage)
    meta = load_meta(path)
    _, data = load_scenes(dataclasses.replace(exp.data, path=str(path)), exp.data.eval_split, exp.data.n_eval)
    rows = per_iteration(model, data, cfg, meta.background_ids)
    t_train = model.config.iterations
    record = {"paper": "iodine", "dataset": stage.dataset, "profile": stage.profile, "steps": exp.train.steps,
              "seed": exp.train.seed, "num_slots": model.config.num_slots, "train_iterations": t_train,
              "metrics": {**rows[min(t_train, cfg.iterations) - 1], "n_images": len(data["image"])},
              "per_iteration": rows, **provenance()}
    stage.report_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    images = to_float_images(data["image"][:8])
    its = model.infer(images, t_train)
    masks, means = its["masks"][-1], its["means"][-1]
    save_decomposition(stage.report_dir / "decomposition.png", images, (masks * means).sum(1), masks, means)
    out = stage.report_dir / "metrics.json"
    out.write_text(json.dumps(record, indent=2))
    return out
