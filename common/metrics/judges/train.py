"""Train a judge on generator scenes labelled by its rule, measure it on held-out scenes (clean and
degraded, per class and per kind), and save it with that accuracy in its model card. Deterministic given
the seed (CPU)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from common.data import sprites
from common.metrics.judges.augment import degrade, fixed_degradation
from common.metrics.judges.data import SPRITE_KINDS, SPRITE_SETTINGS, sprite_scenes, valid_from_counts
from common.metrics.judges.model import Judge, JudgeConfig
from common.train.loop import to_float_images

SCENES = {"generation_accuracy": (sprite_scenes, SPRITE_KINDS, SPRITE_SETTINGS)}


def fit(judge: Judge, images: torch.Tensor, targets: torch.Tensor, steps: int, batch_size: int, lr: float,
        seed: int, log=print) -> None:
    """Adam on augmented mini-batches (degrade()) of uint8 images [N,H,W,3] with targets [N,V]."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(judge.parameters(), lr=lr)
    judge.train()
    for step in range(steps):
        idx = torch.randint(len(images), (batch_size,), generator=g)
        x = degrade(to_float_images(images[idx]), g)
        loss = judge.loss(x, targets[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % max(1, steps // 10) == 0:
            log(f"step {step + 1}/{steps}: loss {loss.item():.4f}")
    judge.eval()


def measure(judge: Judge, test: dict, kinds: tuple, settings: tuple) -> dict:
    """Accuracy overall, per class, per kind and per setting, on the clean and the degraded test scenes."""
    x = to_float_images(torch.from_numpy(test["image"]))
    truth = torch.from_numpy(test["label"])
    out = {}
    for name, images in (("clean", x), ("degraded", fixed_degradation(x))):
        read = judge.read(images).numpy()  # [N,V]
        right = (torch.from_numpy(valid_from_counts(read)) == truth).numpy()
        colours = len(sprites.COLOURS)  # counts hold the colours first, then the shapes (data.value_counts)
        out[f"{name}_reading"] = {  # scenes whose every colour count / every shape count the judge read right
            "all_colour_counts": float((read[:, :colours] == test["counts"][:, :colours]).all(1).mean()),
            "all_shape_counts": float((read[:, colours:] == test["counts"][:, colours:]).all(1).mean())}
        groups = {"overall": np.ones_like(right, bool), "class=valid": test["label"], "class=invalid": ~test["label"],
                  **{f"kind={k}": test["kind"] == i for i, k in enumerate(kinds)},
                  **{f"setting={json.dumps(s, sort_keys=True)}": test["setting"] == i for i, s in enumerate(settings)}}
        out[name] = {g: {"accuracy": float(right[m].mean()), "n": int(m.sum())} for g, m in groups.items() if m.any()}
    return out


def train(task: str, out: Path, seed: int = 0, n_train: int = 20_000, n_test: int = 2_000, steps: int = 3_000,
          batch_size: int = 64, lr: float = 1e-3) -> dict:
    make, kinds, settings = SCENES[task]
    torch.manual_seed(seed)
    train_set, test_set = make(n_train, seed), make(n_test, seed + 1_000_000)
    judge = Judge(JudgeConfig(task=task))
    fit(judge, torch.from_numpy(train_set["image"]), torch.from_numpy(train_set["counts"]), steps, batch_size, lr, seed)
    accuracy = measure(judge, test_set, kinds, settings)
    record = {"task": task, "seed": seed, "n_train": n_train, "n_test": n_test, "steps": steps,
              "batch_size": batch_size, "lr": lr, "accuracy": accuracy}
    judge.save_pretrained(Path(out), metrics=record)
    return record
