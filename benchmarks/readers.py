"""DeepMind TFRecord reading: CLEVR-with-masks records/s through parse + crop + resize + store,
on records written here in the published format (240x320, 11 entities, GZIP)."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import table
from common.data.convert import convert
from common.data.tfrecord import encode_example, parse_example, read_records, write_records
from common.provenance import hardware

N = 100


def clevr_record(rng: np.random.Generator) -> bytes:
    labels = rng.integers(0, 11, size=(240, 320))
    masks = np.stack([(labels == i) * 255 for i in range(11)]).astype(np.uint8)[..., None]
    return encode_example({
        "image": ("bytes", rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)), "mask": ("bytes", masks),
        **{k: ("float", rng.random(11)) for k in ("x", "y", "z", "rotation")},
        "pixel_coords": ("float", rng.random(33)), "visibility": ("float", np.ones(11)),
        **{k: ("bytes", rng.integers(0, 4, 11).astype(np.uint8)) for k in ("size", "material", "shape", "color")}})


def main() -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clevr_with_masks_train.tfrecords"
        write_records(path, [clevr_record(rng)] * N)
        tic = time.perf_counter()
        for record in read_records(path):
            parse_example(record)
        parse = N / (time.perf_counter() - tic)
        tic = time.perf_counter()
        convert("clevr_with_masks", path, Path(tmp) / "out", crop="iodine", size=128)
        full = N / (time.perf_counter() - tic)
    print(f"{N} CLEVR-with-masks records, on {hardware()}")
    print(table([{"stage": "read + CRC + parse", "records/s": parse},
                 {"stage": "convert (parse, labels, crop, resize 128, store)", "records/s": full}]))
