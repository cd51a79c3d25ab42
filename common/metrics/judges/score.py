"""The one entry point SRI, LOM and SVQ use: generated images in, the judged accuracy with a 95 % Wilson
interval out, recording which judge (SHA-256 of its weights) and how many images."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from common.hub import WEIGHTS, CheckpointError
from common.metrics.judges.model import JUDGES
from common.metrics.judges.rules import wilson_interval


def judge_id(folder: str | Path) -> str:
    return hashlib.sha256((Path(folder) / WEIGHTS).read_bytes()).hexdigest()


def load_judge(folder: str | Path):
    """The judge saved in `folder`, of the class its config.json's task names."""
    config = Path(folder) / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{config}: no judge saved there")
    task = json.loads(config.read_text()).get("task")
    if task not in JUDGES:
        raise CheckpointError(f"{config}: task {task!r} is not a judge's (choose from {', '.join(JUDGES)})")
    return JUDGES[task].from_pretrained(folder)


def verdicts(judge, images: torch.Tensor) -> torch.Tensor:
    """bool [N]: whether each image (float [N,3,H,W] in [0,1]) follows the judge's rule."""
    if tuple(images.shape[2:]) != tuple(judge.config.resolution):
        raise ValueError(f"the judge reads {tuple(judge.config.resolution)} images, got {tuple(images.shape[2:])}")
    return judge.verdicts(images.float())


def score(judge_dir: str | Path, images: torch.Tensor, n: int | None = None) -> dict:
    """Accuracy of the first n images (default all) with its 95 % Wilson interval and the judge's provenance.
    The judge's own measured accuracy (its model card: overall, clean and degraded) is reported beside it."""
    judge = load_judge(judge_dir)
    images = images[:n] if n is not None else images
    k, total = int(verdicts(judge, images).sum()), len(images)
    lo, hi = wilson_interval(k, total)
    card = Path(judge_dir) / "metrics.json"  # written by save_pretrained(metrics=...) in train.py
    own = json.loads(card.read_text())["accuracy"] if card.is_file() else None
    return {"task": judge.config.task, "accuracy": k / total, "interval_95": [lo, hi], "n": total,
            "judge": str(judge_dir), "judge_sha256": judge_id(judge_dir),
            "judge_accuracy": None if own is None else {name: own[name]["overall"] for name in ("clean", "degraded")}}


def load_pngs(folder: str | Path) -> torch.Tensor:
    """Every *.png in `folder`, sorted by name, as float [N,3,H,W] in [0,1]."""
    paths = sorted(Path(folder).glob("*.png"))
    if not paths:
        raise FileNotFoundError(f"{folder}: no .png images")
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255
