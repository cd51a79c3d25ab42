"""Readers of the published 3D releases stored as image folders (`../shared/reference/datasets.md` §3).

  shapestacks  recordings/<scenario>/rgb-...-cam_<N>-mono-0.png (224x224), instance maps
               iseg/<scenario>/iseg-...-cam_<N>-mono-0.map (label = red // 32), splits/default/
               {train,eval,test}.txt; centre crop 196, resize 64. Stable iff vcom=0 and vpsf=0.
  clevrtex     CLEVRTEX_<variant>_NNNNNN.png, _flat.png label masks, .json metadata; splits by index
               fraction (test [0, .1), val [.1, .2), train [.2, 1)); crop [24:216, 64:256], resize 128.
  sysbinder    SysBinder CLEVR-Easy/-Hard/-Tex: a folder of PNGs, sorted and split 70/15/15, resized to
               128 (Pillow's default bicubic); the annotated split <split>/images/*.png with <stem>_mask.png
               (objects pure red, green, blue; object j of the scene JSON is taken to be colour j,
               an assumption the release does not document) and <split>/scenes/<stem>.json.
Images resize bilinearly (Pillow bicubic for sysbinder, as its loader), masks by nearest neighbour.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from PIL import Image

from common.data.schema import FactorSpec
from common.data.store import DatasetError

RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def _open(path: Path, mode: str = "RGB") -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert(mode)
    except (OSError, ValueError) as err:
        raise DatasetError(f"{path}: unreadable image ({err})") from err


def _crop_resize(image: Image.Image, box: tuple[int, int, int, int] | None, size: int, resample) -> np.ndarray:
    """box = (left, top, right, bottom) in pixels, then resize to size x size."""
    if box is not None:
        image = image.crop(box)
    return np.asarray(image.resize((size, size), resample))


def _centre_box(w: int, h: int, side: int) -> tuple[int, int, int, int]:
    left, top = (w - side) // 2, (h - side) // 2
    return left, top, left + side, top + side


def _scene(image, labels, max_objects: int, factors: dict | None = None) -> dict:
    vis = np.array([(labels == j + 1).any() for j in range(max_objects)], np.uint8)
    out = {"image": image, "mask": labels.astype(np.uint8), "visibility": vis, "num_objects": np.int32(vis.sum())}
    out.update(factors or {})
    return out


# -- ShapeStacks ----------------------------------------------------------------------------------
def shapestacks(root: Path, size: int = 64, crop: int = 196) -> dict[str, list[dict]]:
    split_dir = root / "splits" / "default"
    if not split_dir.is_dir():
        raise DatasetError(f"{split_dir}: missing (expected the ShapeStacks splits/default/{{train,eval,test}}.txt)")
    out = {}
    for split, name in (("train", "train"), ("eval", "val"), ("test", "test")):
        listing = split_dir / f"{split}.txt"
        if not listing.is_file():
            continue
        scenes = []
        for scenario in listing.read_text().split():
            rgb_dir = root / "recordings" / scenario
            if not rgb_dir.is_dir():
                raise DatasetError(f"{rgb_dir}: listed in {listing} but missing")
            stable = float(re.search(r"vcom=0", scenario) is not None and re.search(r"vpsf=0", scenario) is not None)
            for rgb in sorted(rgb_dir.glob("rgb-*-cam_*-mono-0.png")):
                cam = re.search(r"cam_(\d+)", rgb.name).group(1)
                maps = sorted((root / "iseg" / scenario).glob(f"iseg-*-cam_{cam}-mono-0.map"))
                if not maps:
                    raise DatasetError(f"{root / 'iseg' / scenario}: no instance map for camera {cam} of {rgb.name}")
                img = _open(rgb)
                box = _centre_box(*img.size, crop)
                labels = np.asarray(_open(maps[0]))[..., 0] // 32
                labels = np.asarray(Image.fromarray(labels.astype(np.uint8)).crop(box).resize((size, size), Image.NEAREST))
                scene = _scene(_crop_resize(img, box, size, Image.BILINEAR), labels, 6)
                scene["factor.tower_stable"] = np.full(6, stable, np.int32) * scene["visibility"]
                scenes.append(scene)
        out[name] = scenes
    return out


SHAPESTACKS_FACTORS = (FactorSpec("tower_stable", "categorical", values=("no", "yes")),)


# -- CLEVRTex -------------------------------------------------------------------------------------
def clevrtex(root: Path, size: int = 128, max_objects: int = 10) -> tuple[dict[str, list[dict]], tuple]:
    images = sorted(p for p in root.rglob("CLEVRTEX_*.png") if re.fullmatch(r"CLEVRTEX_\w+?_\d{6}\.png", p.name))
    if not images:
        raise DatasetError(f"{root}: no CLEVRTEX_<variant>_NNNNNN.png images")
    records, vocab = [], {"shape": set(), "material": set(), "size": set()}
    for path in images:
        meta_path, mask_path = path.with_suffix(".json"), path.with_name(path.stem + "_flat.png")
        for p in (meta_path, mask_path):
            if not p.is_file():
                raise DatasetError(f"{p}: missing (each CLEVRTex image has _flat.png and .json beside it)")
        try:
            objects = json.loads(meta_path.read_text())["objects"]
        except (json.JSONDecodeError, KeyError) as err:
            raise DatasetError(f"{meta_path}: not CLEVRTex metadata ({err})") from err
        for o in objects:
            for k in vocab:
                vocab[k].add(str(o.get(k)))
        records.append((path, mask_path, objects))
    vocab = {k: sorted(v) for k, v in vocab.items()}
    box = (64, 24, 256, 216)
    splits: dict[str, list[dict]] = {"test": [], "val": [], "train": []}
    for i, (path, mask_path, objects) in enumerate(records):
        frac = i / len(records)
        split = "test" if frac < 0.1 else "val" if frac < 0.2 else "train"
        labels = np.asarray(_open(mask_path, "L").crop(box).resize((size, size), Image.NEAREST))
        factors = {f"factor.{k}": np.array([vocab[k].index(str(o.get(k))) for o in objects]
                                           + [0] * (max_objects - len(objects)), np.int32) for k in vocab}
        factors["factor.rotation"] = np.array([float(o.get("rotation", 0)) for o in objects]
                                              + [0.0] * (max_objects - len(objects)), np.float32)
        splits[split].append(_scene(_crop_resize(_open(path), box, size, Image.BILINEAR), labels, max_objects, factors))
    specs = tuple(FactorSpec(k, "categorical", values=tuple(v)) for k, v in vocab.items()) + (FactorSpec("rotation", "continuous"),)
    return {k: v for k, v in splits.items() if v}, specs


# -- SysBinder CLEVR-Easy / -Hard / -Tex ------------------------------------------------------------
CLEVR_SHAPES = ("cube", "sphere", "cylinder")
CLEVR_COLOURS = ("gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow")
SYSBINDER_FACTORS = (FactorSpec("shape", "categorical", values=CLEVR_SHAPES),
                     FactorSpec("colour", "categorical", values=CLEVR_COLOURS),
                     FactorSpec("position", "categorical", values=tuple(f"bin{i}" for i in range(9))))


def _position_bin(x: float, y: float) -> int:
    """3 x 3 bins of CLEVR 3d_coords, x in [-4, 4], y in [-3, 4]."""
    bx = min(2, max(0, int((x + 4) / 8 * 3)))
    by = min(2, max(0, int((y + 3) / 7 * 3)))
    return by * 3 + bx


def sysbinder(root: Path, size: int = 128) -> dict[str, list[dict]]:
    annotated = sorted(p for p in root.glob("*/images") if p.is_dir())
    if annotated:
        return {p.parent.name: [_sysbinder_annotated(img, p.parent, size) for img in sorted(p.glob("*.png"))
                                if not img.stem.endswith("_mask")] for p in annotated}
    images = sorted(root.glob("*.png"))
    if not images:
        raise DatasetError(f"{root}: no PNG images (SysBinder folders hold the PNGs directly, or <split>/images/)")
    n = len(images)
    cuts = [0, int(0.7 * n), int(0.85 * n), n]
    blank = np.zeros((size, size), np.uint8)
    return {name: [_scene(np.asarray(_open(p).resize((size, size), Image.BICUBIC)), blank, 3,
                          {f"factor.{f.name}": np.zeros(3, np.int32) for f in SYSBINDER_FACTORS})
                   for p in images[cuts[i]:cuts[i + 1]]] for i, name in enumerate(("train", "val", "test"))}


def _sysbinder_annotated(img: Path, split_dir: Path, size: int) -> dict:
    mask_path = img.with_name(img.stem + "_mask.png")
    scene_path = split_dir / "scenes" / f"{img.stem}.json"
    for p in (mask_path, scene_path):
        if not p.is_file():
            raise DatasetError(f"{p}: missing (annotated SysBinder splits pair each image with a mask and a scene)")
    rgb = np.asarray(_open(mask_path).resize((size, size), Image.NEAREST)).astype(np.int64)
    labels = np.zeros(rgb.shape[:2], np.uint8)
    for j in range(3):  # objects are pure red, green and blue in the mask
        labels[(rgb[..., j] > 127) & (rgb.sum(-1) - rgb[..., j] < 128)] = j + 1
    objects = json.loads(scene_path.read_text())["objects"]
    pad = lambda v: np.array(v + [0] * (3 - len(v)), np.int32)
    factors = {"factor.shape": pad([CLEVR_SHAPES.index(o["shape"]) for o in objects]),
               "factor.colour": pad([CLEVR_COLOURS.index(o["color"]) for o in objects]),
               "factor.position": pad([_position_bin(*o["3d_coords"][:2]) for o in objects])}
    return _scene(np.asarray(_open(img).resize((size, size), Image.BICUBIC)), labels, 3, factors)
