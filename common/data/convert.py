"""Published releases -> the scene schema (`../shared/reference/datasets.md` §1-2).

Sources:
  tetrominoes, multi_dsprites, objects_room, clevr_with_masks: DeepMind multi_object_datasets GZIP
      TFRecords (entity 0 is the background; Objects Room's first four entities are)
  emorl_h5: EfficientMORL's HDF5 release, groups {train,val,test}/{imgs,masks,factors}
  shapestacks, clevrtex, sysbinder: image-folder releases (common.data.folders)

Splits are taken in record order (`train=70000,test=rest`), then the CLEVR object-count filter is
applied. CLEVR crops: `iodine` = [29:221, 64:256] (IODINE, Slot Attention, EMORL), `center` =
[24:216, 64:256] (GENESIS, OCLF, ClevrTex). Resizing is bilinear for images (no antialiasing, as
TF1's resize) and nearest for masks. Visibility is recomputed after cropping.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common.data import folders
from common.data.schema import FactorSpec, SceneMeta, concat
from common.data.store import DatasetError, save_dataset
from common.data.tetrominoes import COLOURS as TETROMINO_COLOURS
from common.data.tfrecord import RecordError, parse_example, read_records

CROPS = {"iodine": (29, 221, 64, 256), "center": (24, 216, 64, 256), "none": None}
COUNTS = ("foreground", "oclf", "iodine-release")
CHUNK = 1000


@dataclass(frozen=True)
class Source:
    size: tuple[int, int]
    num_background: int
    mask_layout: str  # "KHW" or "HWK"
    factors: tuple[FactorSpec, ...]


CLEVR_FACTORS = tuple(FactorSpec(n, "continuous") for n in ("x", "y", "z", "rotation")) + (
    FactorSpec("pixel_coords", "continuous", shape=(3,)),
    *(FactorSpec(n, "categorical") for n in ("size", "material", "shape", "colour")))
SOURCES = {
    "tetrominoes": Source((35, 35), 1, "KHW", (
        FactorSpec("shape", "categorical"), FactorSpec("colour", "categorical", values=tuple(TETROMINO_COLOURS)),
        FactorSpec("x", "continuous"), FactorSpec("y", "continuous"))),
    "multi_dsprites": Source((64, 64), 1, "HWK", (
        FactorSpec("shape", "categorical"), *(FactorSpec(n, "continuous") for n in ("scale", "orientation", "x", "y")),
        FactorSpec("colour", "continuous", shape=(3,)))),
    "objects_room": Source((64, 64), 4, "KHW", ()),
    "clevr_with_masks": Source((240, 320), 1, "KHW", CLEVR_FACTORS),
}


def parse_splits(spec: str) -> list[tuple[str, int | None]]:
    """'train=70000,test=rest' -> [("train", 70000), ("test", None)]."""
    out = []
    for part in spec.split(","):
        name, _, n = part.partition("=")
        if not name or not n or (n != "rest" and not n.isdigit()):
            raise ValueError(f"bad split spec {part!r}: expected NAME=COUNT or NAME=rest")
        out.append((name, None if n == "rest" else int(n)))
    if any(n is None for _, n in out[:-1]):
        raise ValueError(f"only the last split may be 'rest' in {spec!r}")
    return out


def _feature(ex: dict, name: str, size: int | None, where: str) -> np.ndarray:
    if name not in ex:
        raise RecordError(f"{where}: missing feature '{name}'")
    a = ex[name]
    if isinstance(a, list):
        raise RecordError(f"{where}: feature '{name}' holds multi-byte strings, expected one byte per entry")
    if size is not None and a.size != size:
        raise RecordError(f"{where}: feature '{name}' has {a.size} values, expected {size}")
    return a


def _label_map(mask: np.ndarray) -> np.ndarray:
    """[K,H,W] 0/255 entity masks -> uint8 [H,W] labels (entity index)."""
    return mask.argmax(0).astype(np.uint8)


def _factors(source: str, ex: dict, k: int, nb: int, where: str) -> dict[str, np.ndarray]:
    if source == "objects_room":
        return {}
    if source == "clevr_with_masks":
        out = {f"factor.{n}": _feature(ex, n, k, where)[nb:].astype(np.float32) for n in ("x", "y", "z", "rotation")}
        out["factor.pixel_coords"] = _feature(ex, "pixel_coords", 3 * k, where).reshape(k, 3)[nb:].astype(np.float32)
        for name, key in (("size", "size"), ("material", "material"), ("shape", "shape"), ("colour", "color")):
            codes = _feature(ex, key, k, where)[nb:].astype(np.int32)
            out[f"factor.{name}"] = np.maximum(codes - 1, 0)  # 1-based object codes, 0 = none
        return out
    if source == "tetrominoes":
        rgb = _feature(ex, "color", 3 * k, where).reshape(k, 3)[nb:]
        palette = np.array(list(TETROMINO_COLOURS.values()), np.float32) / 255
        colour = np.abs(rgb[:, None] - palette[None]).sum(-1).argmin(1).astype(np.int32)
        return {"factor.shape": _feature(ex, "shape", k, where)[nb:].astype(np.int32), "factor.colour": colour,
                "factor.x": _feature(ex, "x", k, where)[nb:].astype(np.float32),
                "factor.y": _feature(ex, "y", k, where)[nb:].astype(np.float32)}
    colour = _feature(ex, "color", None, where).reshape(k, -1)[nb:]
    out = {f"factor.{n}": _feature(ex, n, k, where)[nb:].astype(np.float32) for n in ("scale", "orientation", "x", "y")}
    out["factor.shape"] = _feature(ex, "shape", k, where)[nb:].astype(np.int32)
    out["factor.colour"] = np.repeat(colour, 3 // colour.shape[1], 1).astype(np.float32)
    return out


def decode(source: str, ex: dict, where: str) -> dict[str, np.ndarray]:
    """One parsed Example -> one scene (arrays without the batch axis) at the source resolution."""
    spec = SOURCES[source]
    h, w = spec.size
    mask = _feature(ex, "mask", None, where)
    if mask.size % (h * w):
        raise RecordError(f"{where}: feature 'mask' has {mask.size} values, not a multiple of {h}x{w}")
    k = mask.size // (h * w)
    mask = mask.reshape(h, w, k).transpose(2, 0, 1) if spec.mask_layout == "HWK" else mask.reshape(k, h, w)
    image = _feature(ex, "image", None, where)
    if image.size not in (h * w, h * w * 3):
        raise RecordError(f"{where}: feature 'image' has {image.size} values, expected {h}x{w}x3 (or x1)")
    image = np.repeat(image.reshape(h, w, -1), 3 // (image.size // (h * w)), 2)
    labels = _label_map(mask)
    vis = ex["visibility"] if "visibility" in ex else (mask.reshape(k, -1) > 0).any(1)
    return {"image": image, "mask": labels, "file_visibility": np.asarray(vis, np.float32).reshape(-1)[:k],
            **_factors(source, ex, k, spec.num_background, where)}


def keep(file_visibility: np.ndarray, max_objects: int | None, count: str, nb: int) -> bool:
    """The CLEVR6-style filter under each published counting convention."""
    if max_objects is None:
        return True
    if count == "foreground":
        return file_visibility[nb:].sum() <= max_objects
    if count == "oclf":
        return file_visibility.sum() < max_objects + 1
    if count == "iodine-release":
        return file_visibility.sum() == max_objects
    raise ValueError(f"unknown count convention {count!r} (choose from {', '.join(COUNTS)})")


def crop_resize(batch: dict[str, np.ndarray], crop: str | None, size: int | None, nb: int) -> dict[str, np.ndarray]:
    """Crop [rows, cols], resize (image bilinear, mask nearest), recompute visibility and counts."""
    if crop not in CROPS and crop is not None:
        raise ValueError(f"unknown crop {crop!r} (choose from {', '.join(CROPS)})")
    image, mask = batch["image"], batch["mask"]
    if CROPS.get(crop):
        r0, r1, c0, c1 = CROPS[crop]
        if image.shape[1] < r1 or image.shape[2] < c1:
            raise DatasetError(f"--crop {crop} takes rows {r0}:{r1} and columns {c0}:{c1}, but these images are "
                               f"{image.shape[1]}x{image.shape[2]}; use --crop none (and --size) for them")
        image, mask = image[:, r0:r1, c0:c1], mask[:, r0:r1, c0:c1]
    if size is not None:
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        image = x.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
        m = torch.from_numpy(np.ascontiguousarray(mask))[:, None].float()
        mask = F.interpolate(m, size=(size, size), mode="nearest")[:, 0].byte().numpy()
    m_obj = batch["visibility"].shape[1]
    present = np.stack([(mask == nb + j).any((1, 2)) for j in range(m_obj)], 1)
    visibility = (batch["visibility"] > 0) & present
    return {**batch, "image": np.ascontiguousarray(image), "mask": np.ascontiguousarray(mask),
            "visibility": visibility.astype(np.uint8), "num_objects": visibility.sum(1).astype(np.int32)}


def _batch(scenes: list[dict], nb: int) -> dict[str, np.ndarray]:
    b = {k: np.stack([s[k] for s in scenes]) for k in scenes[0] if k != "file_visibility"}
    vis = np.stack([s["file_visibility"] for s in scenes])
    b["visibility"] = (vis[:, nb:] > 0).astype(np.uint8)
    b["num_objects"] = b["visibility"].sum(1).astype(np.int32)
    return b


def _tfrecord_splits(source, path, splits, crop, size, max_objects, count, min_objects=None):
    """Records in file order fill the splits in turn; each kept scene is cropped/resized in chunks.
    `min_objects` keeps scenes with at least that many foreground objects (IODINE Fig. 9: 7-9)."""
    nb = SOURCES[source].num_background
    plan = parse_splits(splits)
    ends = np.cumsum([np.inf if n is None else n for _, n in plan])  # record index where each split ends
    parts = {name: [] for name, _ in plan}
    pending = {name: [] for name, _ in plan}

    def flush(name):
        if pending[name]:
            parts[name].append(crop_resize(_batch(pending[name], nb), crop, size, nb))
            pending[name] = []

    read = 0
    for i, record in enumerate(read_records(path)):
        if i >= ends[-1]:
            break
        read = i + 1
        name = plan[int(np.searchsorted(ends, i, side="right"))][0]
        scene = decode(source, parse_example(record), f"{path}: record {i}")
        enough = min_objects is None or scene["file_visibility"][nb:].sum() >= min_objects
        if enough and keep(scene["file_visibility"], max_objects, count, nb):
            pending[name].append(scene)
        if len(pending[name]) == CHUNK:
            flush(name)
    for name in parts:
        flush(name)
    _check_splits(path, plan, ends, read, parts)
    return {name: concat(batches) for name, batches in parts.items()}


def _check_splits(path, plan, ends, read: int, parts: dict) -> None:
    """Every split of the plan gets all the records it asked for, and at least one scene."""
    starts = [0, *ends[:-1]]
    for (name, n), start, end in zip(plan, starts, ends):
        if n is not None and read < end:
            raise DatasetError(f"{path}: split {name}={n} needs records up to {int(end)}, the file has {read}")
        if not parts[name]:
            why = "no records are left for it" if read <= start else "none of its records passed the object filters"
            raise DatasetError(f"{path}: split '{name}' is empty ({why}; the file has {read} records)")


def _meta(source: str, name: str, batch: dict, params: dict) -> SceneMeta:
    spec = SOURCES.get(source)
    factors = spec.factors if spec else tuple(FactorSpec(k[7:], "continuous", shape=batch[k].shape[2:])
                                              for k in batch if k.startswith("factor."))
    return SceneMeta(name=name, source=f"common.data.convert:{source}", version="1",
                     image_size=tuple(batch["image"].shape[1:3]), max_objects=batch["visibility"].shape[1],
                     num_background=spec.num_background if spec else 1, factors=factors, params=params)


def _emorl_splits(path: Path, crop, size):
    import h5py
    out = {}
    try:
        with h5py.File(path, "r") as f:
            for split in ("train", "val", "test"):
                if split not in f:
                    continue
                g = f[split]
                for key in ("imgs", "masks"):
                    if key not in g:
                        raise DatasetError(f"{path}: group '{split}' has no '{key}' dataset")
                parts = []
                for s in range(0, len(g["imgs"]), CHUNK):
                    imgs, masks = g["imgs"][s:s + CHUNK], g["masks"][s:s + CHUNK]  # [n,H,W,C], [n,K,H,W,1]
                    if masks.ndim != 5 or imgs.shape[1:3] != masks.shape[2:4]:
                        raise DatasetError(f"{path}: {split}: masks {masks.shape} do not match imgs {imgs.shape}")
                    if imgs.dtype != np.uint8:
                        imgs = np.round(np.asarray(imgs, np.float32) * (255 if imgs.max() <= 1 else 1)).astype(np.uint8)
                    labels = masks[..., 0].argmax(1).astype(np.uint8)
                    vis = (masks[:, 1:, ..., 0].reshape(len(masks), masks.shape[1] - 1, -1) > 0).any(-1)
                    b = {"image": imgs, "mask": labels, "visibility": vis.astype(np.uint8)}
                    if "factors" in g and g["factors"].ndim == 3:  # [n,K,F]: per-entity factor vectors
                        b["factor.emorl"] = np.asarray(g["factors"][s:s + CHUNK][:, 1:], np.float32)
                    parts.append(crop_resize(b, crop, size, 1))
                out[split] = concat(parts)
    except OSError as err:
        raise DatasetError(f"{path}: not a readable HDF5 file ({err})") from err
    if not out:
        raise DatasetError(f"{path}: no train/val/test groups")
    return out


def convert(source: str, path: str | Path, out: str | Path, splits: str = "train=rest", crop: str | None = None,
            size: int | None = None, max_objects: int | None = None, count: str = "foreground",
            overwrite: bool = False, min_objects: int | None = None) -> Path:
    """Read a published release at `path` into a dataset folder `out` (written atomically)."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    if count not in COUNTS:
        raise ValueError(f"unknown count convention {count!r} (choose from {', '.join(COUNTS)})")
    params = {"input": path.name, "splits": splits, "crop": crop, "size": size, "max_objects": max_objects,
              "count": count, **({"min_objects": min_objects} if min_objects is not None else {})}
    if source in FOLDER_SOURCES:
        if not path.is_dir():
            raise DatasetError(f"{path}: {source} reads a folder")
        return _convert_folder(source, path, Path(out), size, params, overwrite)
    if source == "emorl_h5":
        data = _emorl_splits(path, crop, size)
    elif source in SOURCES:
        data = _tfrecord_splits(source, path, splits, crop, size, max_objects, count, min_objects)
    else:
        raise ValueError(f"unknown source {source!r} (choose from {', '.join([*SOURCES, 'emorl_h5', *FOLDER_SOURCES])})")
    if not data:
        raise DatasetError(f"{path}: no records survived the split and filter settings")
    first = next(iter(data.values()))
    meta = _meta(source, f"{source}:{path.stem}", first, params)
    for batch in data.values():
        batch.setdefault("num_objects", batch["visibility"].sum(1).astype(np.int32))
    return save_dataset(out, meta, data, overwrite)


FOLDER_SOURCES = ("shapestacks", "clevrtex", "sysbinder")


def _convert_folder(source: str, root: Path, out: Path, size: int | None, params: dict, overwrite: bool) -> Path:
    """The image-folder releases (common.data.folders) into the schema."""
    if source == "shapestacks":
        splits, factors = folders.shapestacks(root, size or 64), folders.SHAPESTACKS_FACTORS
    elif source == "clevrtex":
        splits, factors = folders.clevrtex(root, size or 128)
    else:
        splits, factors = folders.sysbinder(root, size or 128), folders.SYSBINDER_FACTORS
    data = {k: {name: np.stack([s[name] for s in scenes]) for name in scenes[0]} for k, scenes in splits.items() if scenes}
    if not data:
        raise DatasetError(f"{root}: no scenes found")
    first = next(iter(data.values()))
    meta = SceneMeta(name=f"{source}:{root.name}", source=f"common.data.convert:{source}", version="1",
                     image_size=tuple(first["image"].shape[1:3]), max_objects=first["visibility"].shape[1],
                     factors=factors, params=params)
    return save_dataset(out, meta, data, overwrite)
