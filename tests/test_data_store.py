import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.data.registry import generate_dataset, generate_split
from common.data.store import DatasetError, load_meta, load_split, load_tensors, save_dataset

ROOT = Path(__file__).resolve().parents[1]


def test_round_trip_with_metadata(tmp_path):
    out = generate_dataset("tetrominoes", tmp_path / "tet", {"train": 30, "val": 5, "test": 0}, seed=7)
    meta = load_meta(out)
    assert meta.seed == 7 and meta.source == "common.data.tetrominoes" and set(meta.splits) == {"train", "val"}
    assert meta.params == {"size": 35, "block": 5, "num_objects": 3}
    _, expected = generate_split("tetrominoes", 30, 7, "train")
    got = load_split(out, "train")
    assert all(np.array_equal(got[k], expected[k]) and got[k].dtype == expected[k].dtype for k in expected)
    t = load_tensors(out, "val")
    assert t["image"].shape == (5, 35, 35, 3) and str(t["image"].dtype) == "torch.uint8"


def test_checksum_detects_changed_files(tmp_path):
    out = generate_dataset("tetrominoes", tmp_path / "tet", {"train": 20}, seed=0)
    arrow = next((out / "train").glob("*.arrow"))
    data = bytearray(arrow.read_bytes())
    data[len(data) // 2] ^= 0xFF
    arrow.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="checksum mismatch"):
        load_split(out, "train")
    with pytest.raises(DatasetError, match="no split 'test'"):
        load_split(out, "test")


def test_invalid_batch_leaves_nothing_behind(tmp_path):
    meta, batch = generate_split("tetrominoes", 4, 0)
    batch["mask"] = batch["mask"].astype(np.int64)
    with pytest.raises(ValueError, match="column 'mask'"):
        save_dataset(tmp_path / "bad", meta, {"train": batch})
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite(tmp_path):
    generate_dataset("tetrominoes", tmp_path / "tet", {"train": 4}, seed=0)
    with pytest.raises(DatasetError, match="already exists"):
        generate_dataset("tetrominoes", tmp_path / "tet", {"train": 4}, seed=0)
    generate_dataset("tetrominoes", tmp_path / "tet", {"train": 6}, seed=0, overwrite=True)
    assert load_meta(tmp_path / "tet").splits["train"]["n"] == 6


def test_cli_generate_and_show(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = lambda *a: subprocess.run([sys.executable, "-m", "common.data", *a], cwd=ROOT, env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=300)
    out = run("generate", "sprites", "--out", str(tmp_path / "s"), "--n-train", "16", "--seed", "1",
              "--set", "variant=quadrant", "--set", "palette=ood")
    assert out.returncode == 0, out.stderr
    assert load_meta(tmp_path / "s").params["palette"] == "ood"
    shown = run("show", str(tmp_path / "s"), "--png", str(tmp_path / "grid.png"))
    assert shown.returncode == 0 and (tmp_path / "grid.png").is_file()
    bad = run("generate", "sprites", "--out", str(tmp_path / "t"), "--n-train", "4", "--set", "variant=quad")
    assert bad.returncode == 2 and "unknown sprites variant 'quad'" in bad.stderr
    assert not (tmp_path / "t").exists()
