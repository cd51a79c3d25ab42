"""SVQ's downstream tasks (`../shared/seeds/svq.txt` §5.2, App. B.4; Tables 4-5): a transformer trained on the frozen
representations of a pretrained model, in distribution (ID) and on an out-of-distribution (OOD) split.

- Odd-one-out (Table 4): 2D Sprites `quadrant` scenes (one object per quadrant, one with a unique property); the
  label is the odd object's quadrant. Pretrained on all 12 shapes and 7 colours (the config's data), the downstream
  model trains on the `id` palette (9 shapes, 4 colours) and is tested on the `ood` one (the other 3 and 3). Reported:
  the steps to 98 % ID validation accuracy and the OOD accuracy. Downstream model: 3 layers, 8 heads, Adam 3e-4.
- Property comparison (Table 5): CLEVR-Hard; each shape, colour and material value gets a number (a seeded
  permutation of 0..n-1 per property), the label is the sum over the three properties of the scene's maximum. 50
  (shape, colour, material) combinations present in the data are held out: ID scenes contain none of them, OOD
  scenes at least one. Reported: ID and OOD accuracy. Downstream model: 8 layers, 4 heads, Adam 1e-4.

Representations (computed once, under no_grad, from the eval-mode pretrained models: nothing reaches them): the dVAE's
tokens (SVQ's jointly trained dVAE), the VQ-VAE's indices and codebook vectors (one token per grid cell, with a learned
position), SysBinder's slots, SVQ's indices (a slot token is the sum of its blocks' code embeddings) and SVQ's
codebook vectors (its quantised slots); slots are orderless tokens without position. Every downstream model: d 192,
FFN 768, dropout 0.1, a learned [CLS] token read by a linear classifier (ours: the paper gives no more).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.nn import TransformerBlock
from common.train.loop import to_float_images


@dataclass
class DownstreamConfig:
    task: str = "odd_one_out"  # or "property"
    layers: int = 3  # App. B.4: 3 (2D Sprites) / 8 (CLEVR-Hard)
    heads: int = 8  # 8 / 4
    lr: float = 3e-4  # 3e-4 / 1e-4
    d_model: int = 192
    ffn: int = 768
    dropout: float = 0.1
    batch_size: int = 64
    steps: int = 100_000
    eval_every: int = 1_000
    target: float = 0.98  # Table 4: steps to 98 % ID validation accuracy
    n_train: int = 20_000  # odd-one-out: ID training scenes (the paper does not say)
    n_val: int = 2_000  # ID validation scenes, and OOD test scenes
    held_out: int = 50  # property comparison: (shape, colour, material) combinations held out (§5.2.2)
    seed: int = 0
    representations: tuple[str, ...] = field(default_factory=tuple)  # default: the task's table


TABLE4 = ("dVAE", "VQ-VAE Indices", "SysBinder", "SVQ Indices", "SVQ Codebook")
TABLE5 = ("dVAE", "VQ-VAE Indices", "VQ-VAE Codebook", "SysBinder", "SVQ Indices", "SVQ Codebook")
PROPERTIES = ("shape", "colour", "material")


# -- labels and splits ----------------------------------------------------------------------------------------
def odd_quadrant(scenes: dict) -> np.ndarray:
    """Odd-one-out label: the quadrant (0-3) of the scene's odd object. factor.odd is one-hot over objects."""
    return scenes["factor.quadrant"][np.arange(len(scenes["factor.odd"])), scenes["factor.odd"].argmax(1)]


def property_numbers(sizes: dict[str, int], seed: int) -> dict[str, np.ndarray]:
    """Each property's values numbered by a seeded permutation of 0..n-1."""
    rng = np.random.default_rng([seed, 5])
    return {p: rng.permutation(sizes[p]) for p in PROPERTIES}


def property_label(scenes: dict, numbers: dict[str, np.ndarray]) -> np.ndarray:
    """Table 5's label: sum over shape, colour and material of the maximum number among the scene's objects."""
    present = np.arange(scenes["factor.shape"].shape[1])[None] < scenes["num_objects"][:, None]  # [n,K]
    total = np.zeros(len(present), dtype=np.int64)
    for p in PROPERTIES:
        values = np.where(present, numbers[p][scenes[f"factor.{p}"]], -1)  # [n,K]
        total += values.max(1)
    return total


def combinations(scenes: dict) -> list[set[tuple[int, int, int]]]:
    """The (shape, colour, material) of each scene's objects."""
    return [{(int(s), int(c), int(m)) for s, c, m in zip(*(scenes[f"factor.{p}"][i, :k] for p in PROPERTIES))}
            for i, k in enumerate(scenes["num_objects"])]


def hold_out(scenes: dict, n: int, seed: int) -> tuple[set, np.ndarray]:
    """n combinations present in `scenes`, chosen at random, and whether each scene contains any of them [N]."""
    combos = combinations(scenes)
    present = sorted(set().union(*combos))
    if len(present) <= n:
        raise ValueError(f"only {len(present)} property combinations in the data: cannot hold out {n}")
    rng = np.random.default_rng([seed, 6])
    held = {present[i] for i in rng.choice(len(present), n, replace=False)}
    return held, np.array([bool(c & held) for c in combos])


# -- representations -----------------------------------------------------------------------------------------------
SOURCE = {"dVAE": "svq", "VQ-VAE Indices": "vqvae", "VQ-VAE Codebook": "vqvae", "SysBinder": "sysbinder",
          "SVQ Indices": "svq", "SVQ Codebook": "svq"}  # representation -> the pretrained model it comes from


def features(name: str, model, x: Tensor) -> Tensor:
    """One batch of images [B,3,H,W] -> this representation (see `represent`)."""
    if name == "dVAE":
        return model.dvae.tokenize(x).flatten(1)  # [B,L]
    if name == "VQ-VAE Indices":
        return model.encode(x).flatten(1)  # [B,hw]
    if name == "VQ-VAE Codebook":
        return F.embedding(model.encode(x), model.codebook.codebook[0]).flatten(1, 2)  # [B,hw,d]
    if name == "SVQ Indices":
        return model.encode(x)["indices"]  # [B,N,M]
    return model.encode(x)["slots"].float()  # SysBinder, SVQ Codebook: [B,N,d_s]


@torch.no_grad()
def represent(name: str, models: dict, images: Tensor, batch_size: int = 100) -> Tensor:
    """Frozen features of uint8 images [n,H,W,3]: long indices [n,T] (dVAE, VQ-VAE Indices), long [n,N,M] (SVQ
    Indices) or float tokens [n,T,D] (the rest). `models`: "svq", "vqvae", "sysbinder" (eval mode)."""
    if name not in SOURCE:
        raise ValueError(f"unknown representation {name!r} (choose from {', '.join(SOURCE)})")
    model = models[SOURCE[name]]
    device = next(model.parameters()).device
    return torch.cat([features(name, model, to_float_images(b).to(device)).cpu() for b in images.split(batch_size)])


class Downstream(nn.Module):
    """features -> class logits: tokens embedded (indices: a table; SVQ indices: per block, summed over a slot's
    blocks; vectors: a linear map) to d, a learned position for grid tokens, [CLS] first, pre-LN transformer blocks,
    LayerNorm, linear classifier on [CLS]."""

    def __init__(self, c: DownstreamConfig, classes: int, kind: str, size: int, length: int):
        super().__init__()
        self.kind = kind  # "index" (vocab size), "blocks" (M K codes), "vector" (input dim)
        if kind == "vector":
            self.embed = nn.Linear(size, c.d_model)
        else:
            self.embed = nn.Embedding(size, c.d_model)
        self.position = nn.Parameter(torch.zeros(1, length, c.d_model)) if length else None
        self.cls = nn.Parameter(torch.zeros(1, 1, c.d_model))
        self.blocks = nn.ModuleList(TransformerBlock(c.d_model, c.heads, c.ffn / c.d_model, c.dropout)
                                    for _ in range(c.layers))
        self.norm = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, classes)

    def forward(self, features: Tensor) -> Tensor:
        if self.kind == "blocks":  # [B,N,M] codes -> block-offset tokens, summed per slot
            m = features.shape[-1]
            offset = torch.arange(m, device=features.device) * (self.embed.num_embeddings // m)
            x = self.embed(features + offset).sum(2)  # [B,N,d]
        else:
            x = self.embed(features)  # [B,T,d]
        if self.position is not None:
            x = x + self.position
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], 1)  # [B,1+T,d]
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, 0]))


def build(c: DownstreamConfig, name: str, features: Tensor, classes: int, models: dict) -> Downstream:
    """The downstream model for this representation's features."""
    if name in ("dVAE", "VQ-VAE Indices"):
        vocab = models["svq"].config.vocab if name == "dVAE" else models["vqvae"].config.codebook_size
        return Downstream(c, classes, "index", vocab, features.shape[1])
    if name == "SVQ Indices":
        cfg = models["svq"].config
        return Downstream(c, classes, "blocks", cfg.blocks * cfg.codebook_size, 0)
    length = features.shape[1] if name == "VQ-VAE Codebook" else 0  # grid tokens have a position, slots none
    return Downstream(c, classes, "vector", features.shape[-1], length)


@torch.no_grad()
def accuracy(model: Downstream, features: Tensor, labels: Tensor, batch_size: int = 500) -> float | None:
    """The share of scenes classified right; None for an empty split."""
    if not len(labels):
        return None
    model.eval()
    device = next(model.parameters()).device
    right = sum(int((model(f.to(device)).argmax(-1).cpu() == y).sum())
                for f, y in zip(features.split(batch_size), labels.split(batch_size)))
    model.train()
    return right / len(labels)


def fit(c: DownstreamConfig, model: Downstream, train: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor],
        test: tuple[Tensor, Tensor], device: torch.device) -> dict:
    """Adam on cross-entropy; every eval_every steps the ID validation accuracy (the learning curve). Returns the
    curve, the first step at which it reached `target` (None if never), and the final ID and OOD accuracies."""
    torch.manual_seed(c.seed)
    model = model.to(device).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=c.lr)
    generator = torch.Generator().manual_seed(c.seed)
    curve, reached = [], None
    for step in range(1, c.steps + 1):
        pick = torch.randint(len(train[1]), (c.batch_size,), generator=generator)
        loss = F.cross_entropy(model(train[0][pick].to(device)), train[1][pick].to(device))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if step % c.eval_every == 0 or step == c.steps:
            acc = accuracy(model, *val)
            curve.append({"step": step, "loss": float(loss.detach()), "val_accuracy": acc})
            if reached is None and acc is not None and acc >= c.target:
                reached = step
    return {"curve": curve, "steps_to_target": reached, "id_accuracy": accuracy(model, *val),
            "ood_accuracy": accuracy(model, *test), "n_train": len(train[1]), "n_val": len(val[1]),
            "n_ood": len(test[1])}


# -- the stage ------------------------------------------------------------------------------------------------------
def task_data(c: DownstreamConfig, data, prepared_data) -> tuple[dict, dict, dict, dict]:
    """ID training, ID validation and OOD scenes (uint8 images and labels) and what defines the split.
    `data`: the pretrained config's DataConfig; `prepared_data`: the same reading its prepared folder."""
    from common.data import generate_split
    from common.train.experiment import load_scenes
    if c.task == "odd_one_out":
        params = {**data.params, "variant": "quadrant"}
        scenes = [generate_split("sprites", n, data.seed + 1, split, {**params, "palette": palette})[1]
                  for n, split, palette in ((c.n_train, "train", "id"), (c.n_val, "test", "id"), (c.n_val, "test", "ood"))]
        parts = [{"image": torch.from_numpy(np.asarray(s["image"])), "label": torch.from_numpy(odd_quadrant(s)).long()}
                 for s in scenes]
        return (*parts, {"classes": 4, "id_palette": "id", "ood_palette": "ood"})
    if c.task != "property":
        raise ValueError(f"unknown downstream task {c.task!r} (odd_one_out, property)")
    meta, train = load_scenes(prepared_data, prepared_data.train_split)
    _, test = load_scenes(prepared_data, prepared_data.eval_split)
    train, test = ({k: v.numpy() for k, v in d.items()} for d in (train, test))
    sizes = {f.name: len(f.values) for f in meta.factors if f.name in PROPERTIES}
    numbers = property_numbers(sizes, c.seed)
    both = {k: np.concatenate([train[k], test[k]]) for k in ("num_objects", *(f"factor.{p}" for p in PROPERTIES))}
    held, ood = hold_out(both, c.held_out, c.seed)  # [n_train + n_test]: whether a scene holds a held-out object
    split = lambda d, keep: {"image": torch.from_numpy(d["image"][keep]),
                             "label": torch.from_numpy(property_label(d, numbers)[keep])}
    in_train, in_test = ~ood[:len(train["image"])], ~ood[len(train["image"]):]
    return (split(train, in_train), split(test, in_test), split(test, ~in_test),
            {"classes": sum(n - 1 for n in sizes.values()) + 1, "held_out": sorted(held),
             "numbers": {k: v.tolist() for k, v in numbers.items()}})


def run(c: DownstreamConfig, models: dict, data, prepared_data, device: torch.device) -> dict:
    """Every representation of the task's table: features, a downstream model, its training and accuracies."""
    train, val, ood, split = task_data(c, data, prepared_data)
    names = c.representations or (TABLE4 if c.task == "odd_one_out" else TABLE5)
    results = {}
    for name in names:
        feats = [represent(name, models, d["image"]) for d in (train, val, ood)]
        torch.manual_seed(c.seed)
        model = build(c, name, feats[0], split["classes"], models)
        results[name] = fit(c, model, (feats[0], train["label"]), (feats[1], val["label"]), (feats[2], ood["label"]),
                            device)
    return {"task": c.task, "results": results, "split": split}


def curves_figure(results: dict, path, target: float):
    """Each representation's ID validation accuracy over training (the learning curves)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, r in results.items():
        ax.plot([p["step"] for p in r["curve"]], [p["val_accuracy"] for p in r["curve"]], label=name)
    ax.axhline(target, color="grey", lw=0.8, ls="--")
    ax.set(xlabel="step", ylabel="ID validation accuracy")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
