"""Splits on disk with the `datasets` library (Arrow, `save_to_disk`), written atomically.

Layout: DIR/meta.json (SceneMeta with per-split counts and SHA-256) and DIR/<split>/ (a saved
`datasets.Dataset`). Arrays are flat fixed-size-list columns, so writing and loading are zero-copy;
their shapes come from the schema.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import torch

from common.config import from_dict
from common.data.schema import SceneMeta, validate

META = "meta.json"
datasets.disable_progress_bars()


class DatasetError(ValueError):
    """A stored dataset that is missing, incomplete or corrupt."""


def checksum(batch: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(batch):
        h.update(name.encode())
        h.update(np.ascontiguousarray(batch[name]).tobytes())
    return h.hexdigest()


def _column(a: np.ndarray) -> pa.Array:
    flat = pa.array(np.ascontiguousarray(a).reshape(-1))
    width = int(np.prod(a.shape[1:], dtype=np.int64))
    return flat if a.ndim == 1 else pa.FixedSizeListArray.from_arrays(flat, width)


def save_dataset(out: str | Path, meta: SceneMeta, splits: dict[str, dict[str, np.ndarray]],
                 overwrite: bool = False) -> Path:
    """Write every split and meta.json into a temporary folder, then rename it to `out`."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise DatasetError(f"{out} already exists (pass overwrite=True / --force to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        meta = dataclasses.replace(meta, splits={})
        for split, batch in splits.items():
            n = validate(batch, meta)
            table = pa.table({name: _column(batch[name]) for name in meta.columns()})
            datasets.Dataset(table).save_to_disk(str(tmp / split))
            meta.splits[split] = {"n": n, "sha256": checksum(batch)}
        (tmp / META).write_text(json.dumps(dataclasses.asdict(meta), indent=2))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def load_meta(path: str | Path) -> SceneMeta:
    path = Path(path)
    if not (path / META).is_file():
        raise DatasetError(f"{path}: no {META}; not a dataset written by `python -m common.data`")
    return from_dict(SceneMeta, json.loads((path / META).read_text()))


def load_split(path: str | Path, split: str, verify: bool = True) -> dict[str, np.ndarray]:
    """One split into memory as numpy arrays (zero-copy views of the Arrow buffers)."""
    path, meta = Path(path), load_meta(path)
    if split not in meta.splits:
        raise DatasetError(f"{path}: no split '{split}' (has {', '.join(meta.splits)})")
    try:
        table = datasets.load_from_disk(str(path / split)).data.table
    except Exception as err:
        raise DatasetError(f"{path / split}: unreadable ({err})") from err
    n = meta.splits[split]["n"]
    batch = {}
    for name, (shape, dtype) in meta.columns().items():
        col = table.column(name).combine_chunks()
        values = col if col.type == pa.from_numpy_dtype(dtype) else col.flatten()
        batch[name] = values.to_numpy(zero_copy_only=False).astype(dtype, copy=False).reshape(n, *shape)
    if verify and checksum(batch) != meta.splits[split]["sha256"]:
        raise DatasetError(f"{path / split}: checksum mismatch; the files changed since they were written")
    return batch


def load_tensors(path: str | Path, split: str, verify: bool = True) -> dict[str, torch.Tensor]:
    """One split as torch tensors (image uint8 [N,H,W,3], mask uint8 [N,H,W], ...), for training."""
    return {k: torch.from_numpy(np.array(v)) for k, v in load_split(path, split, verify).items()}
