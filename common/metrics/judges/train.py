"""Train a judge on generator scenes labelled by its rule, measure it (held-out scenes clean and degraded,
per class and per kind; the dataset's own scenes; scenes composited from objects of different scenes), and
save it with that record in its model card. Deterministic given the seed (CPU)."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from common.data import shapestacks, sprites
from common.metrics.judges.augment import degrade, fixed_degradation
from common.metrics.judges.data import SPRITE_KINDS, SPRITE_SETTINGS, STACK_KINDS, sprite_scenes, stack_scenes
from common.metrics.judges.model import JUDGES
from common.metrics.judges.rules import odd_one_out_valid
from common.provenance import provenance
from common.train.loop import to_float_images


@dataclass(frozen=True)
class Task:
    scenes: Callable  # (n, seed) -> dict of arrays with "image", "label", "kind"
    kinds: tuple[str, ...]
    targets: tuple[str, ...]  # the arrays the judge's loss takes
    real: Callable  # (n, seed) -> the dataset's own scenes: image, label (the rule on their truth), ...
    composites: Callable  # (real scenes, n, seed) -> images [n,H,W,3] of objects from different scenes


def _real_sprites(n: int, seed: int) -> dict:
    """SVQ's odd-one-out sets as the dataset generates them (all follow the rule)."""
    rng = np.random.default_rng([seed, 16])
    parts = [sprites.generate(len(i), rng, sprites.SpritesParams(variant="odd_one_out", **s))
             for i, s in zip(np.array_split(np.arange(n), len(SPRITE_SETTINGS)), SPRITE_SETTINGS)]
    codes = [np.stack([d["factor.colour"], d["factor.shape"]], -1) for d in parts]
    return {"image": np.concatenate([d["image"] for d in parts]),
            "label": np.array([odd_one_out_valid(c) for cs in codes for c in cs])}


def _real_stacks(n: int, seed: int) -> dict:
    """ShapeStacks as the dataset generates it; the rule's truth is that every block touches its support."""
    d = shapestacks.generate(n, np.random.default_rng([seed, 16]), shapestacks.ShapeStacksParams())
    absent = d["factor.size"][..., 2] == 0  # [N,M] padding past the tower's blocks
    return {"image": d["image"], "mask": d["mask"], "label": (d["factor.supported"].astype(bool) | absent).all(1)}


def _composite_sprites(real: dict, n: int, seed: int) -> np.ndarray:
    """Sprites of different 4-object odd-one-out scenes, pasted on black."""
    d = sprites.generate(n, np.random.default_rng([seed, 17]), sprites.SpritesParams(variant="odd_one_out"))
    return composite(d["image"], d["mask"], np.zeros_like(d["image"]))


def _composite_stacks(real: dict, n: int, seed: int) -> np.ndarray:
    """Blocks of different dataset towers, pasted over the first tower's image."""
    return composite(real["image"], real["mask"], real["image"])


TASKS = {"generation_accuracy": Task(sprite_scenes, SPRITE_KINDS, ("centre", "codes"), _real_sprites,
                                     _composite_sprites),
         "s_acc": Task(stack_scenes, STACK_KINDS, ("label", "mask", "floating", "overlapping"), _real_stacks,
                       _composite_stacks)}


def composite(images: np.ndarray, masks: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Scenes that are known to be incoherent: object k of scene (i + k) mod N pasted, in order, over base[i].
    images uint8 [N,H,W,3], masks [N,H,W] (object k is k + 1), base [N,H,W,3]."""
    out = base.copy()
    for k in range(1, int(masks.max()) + 1):
        source = np.roll(np.arange(len(images)), -(k - 1))  # object 1 from scene i itself
        where = masks[source] == k  # [N,H,W]
        out[where] = images[source][where]
    return out


def fit(judge, data: dict, targets: tuple[str, ...], steps: int, batch_size: int, lr: float, seed: int,
        log=print) -> None:
    """Adam (one-cycle schedule) on augmented mini-batches (degrade()) of data["image"] uint8 [N,H,W,3]."""
    g = torch.Generator().manual_seed(seed)
    images = torch.from_numpy(data["image"])
    tensors = {k: torch.from_numpy(np.asarray(data[k])) for k in targets}
    opt = torch.optim.Adam(judge.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    judge.train()
    start = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(len(images), (batch_size,), generator=g)
        loss = judge.loss(degrade(to_float_images(images[idx]), g), **{k: v[idx] for k, v in tensors.items()},
                          generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        if (step + 1) % max(1, steps // 10) == 0:
            log(f"step {step + 1}/{steps}: loss {loss.item():.4f} ({time.perf_counter() - start:.0f} s)")
    judge.eval()


def _accuracy(right: np.ndarray, groups: dict) -> dict:
    return {g: {"accuracy": float(right[m].mean()), "n": int(m.sum())} for g, m in groups.items() if m.any()}


def _reading(judge, images: torch.Tensor, test: dict) -> dict:
    """Sprites: scenes where the judge found as many objects as there are, and read every (colour, shape)."""
    found = judge.codes(images)
    truth = [c[c[:, 0] >= 0] for c in test["codes"]]
    count = np.array([len(f) == len(t) for f, t in zip(found, truth)])
    codes = np.array([len(f) == len(t) and sorted(map(tuple, f.tolist())) == sorted(map(tuple, t.tolist()))
                      for f, t in zip(found, truth)])
    return {"object_count": float(count.mean()), "all_codes": float(codes.mean())}


def measure(judge, test: dict, kinds: tuple[str, ...]) -> dict:
    """Accuracy against the rule's label overall, per class, per kind (per setting where the test has settings;
    stable and unstable towers apart where it says which), on the clean and the fixed-degradation copies of the
    held-out scenes."""
    x = to_float_images(torch.from_numpy(test["image"]))
    truth = test["label"]
    groups = {"overall": np.ones(len(truth), bool), "class=valid": truth, "class=invalid": ~truth,
              **{f"kind={k}": test["kind"] == i for i, k in enumerate(kinds)}}
    if "unstable" in test:  # towers as built: stable, or one block far off centre but still touching
        tower = test["kind"] == kinds.index("tower")
        groups |= {"tower=stable": tower & ~test["unstable"], "tower=unstable": tower & test["unstable"]}
    if "setting" in test:
        groups |= {f"setting={json.dumps(s, sort_keys=True)}": test["setting"] == i
                   for i, s in enumerate(SPRITE_SETTINGS)}
    out = {}
    for name, images in (("clean", x), ("degraded", fixed_degradation(x))):
        out[name] = _accuracy(judge.verdicts(images).numpy() == truth, groups)
        if "codes" in test:
            out[f"{name}_reading"] = _reading(judge, images, test)
    return out


def anchors(judge, task: Task, n: int, seed: int) -> dict:
    """The judge's pass rate on the dataset's own scenes (the rule's rate on their truth beside it) and on
    composites of objects from different scenes (Task.composites; the judge's rate only)."""
    real = task.real(n, seed)
    passed = judge.verdicts(to_float_images(torch.from_numpy(real["image"]))).numpy()
    out = {"dataset": {"judge_pass_rate": float(passed.mean()), "rule_pass_rate": float(real["label"].mean()),
                       "n": len(passed)}}
    mixed = task.composites(real, n, seed)
    passed = judge.verdicts(to_float_images(torch.from_numpy(mixed))).numpy()
    out["composited"] = {"judge_pass_rate": float(passed.mean()), "n": len(passed)}
    return out


def train(task: str, out: Path, seed: int = 0, n_train: int = 20_000, n_test: int = 2_000, steps: int = 3_000,
          batch_size: int = 32, lr: float = 2e-3, n_anchor: int = 500, config: dict | None = None,
          log=print) -> dict:
    """The seeded command behind `python -m common.metrics.judges train`: scenes, fit, measure, save.
    `config` overrides fields of the judge's config (defaults: SpriteJudgeConfig, StackJudgeConfig)."""
    spec = TASKS[task]
    torch.manual_seed(seed)
    train_set, test_set = spec.scenes(n_train, seed), spec.scenes(n_test, seed + 1_000_000)
    judge_class = JUDGES[task]
    judge = judge_class(judge_class.config_class(**(config or {})))
    fit(judge, train_set, spec.targets, steps, batch_size, lr, seed, log)
    record = {"task": task, "seed": seed, "config": vars(judge.config), "n_train": n_train, "n_test": n_test, "steps": steps,
              "batch_size": batch_size, "lr": lr, "accuracy": measure(judge, test_set, spec.kinds),
              "anchors": anchors(judge, spec, n_anchor, seed + 2_000_000), "provenance": provenance()}
    judge.save_pretrained(Path(out), metrics=record)
    return record
