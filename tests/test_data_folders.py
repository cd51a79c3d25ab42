"""Readers of the image-folder releases, on small files written in their published layouts."""
import json

import numpy as np
import pytest
from PIL import Image

from common.data.convert import convert
from common.data.store import DatasetError, load_meta, load_split


def _png(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8), mode).save(path)


def test_shapestacks_layout(tmp_path):
    rng = np.random.default_rng(0)
    scenarios = {"train": "env_ccs-easy-h=2-vcom=0-vpsf=0-v=1", "test": "env_ccs-hard-h=3-vcom=1-vpsf=0-v=2"}
    for split, scenario in scenarios.items():
        (tmp_path / "splits/default").mkdir(parents=True, exist_ok=True)
        (tmp_path / f"splits/default/{split}.txt").write_text(scenario + "\n")
        for cam in (1, 2):
            _png(tmp_path / f"recordings/{scenario}/rgb-w=0-f=0-l=0-c=original-cam_{cam}-mono-0.png",
                 rng.integers(0, 256, (224, 224, 3)))
            labels = np.zeros((224, 224), np.uint8)
            labels[60:160, 90:130] = 1
            labels[20:60, 100:120] = 2
            iseg = np.stack([labels * 32 + 5, np.zeros_like(labels), np.zeros_like(labels)], -1)
            _png(tmp_path / f"iseg/{scenario}/iseg-w=0-f=0-l=0-c=original-cam_{cam}-mono-0.map.png", iseg)
            (tmp_path / f"iseg/{scenario}/iseg-w=0-f=0-l=0-c=original-cam_{cam}-mono-0.map.png").rename(
                tmp_path / f"iseg/{scenario}/iseg-w=0-f=0-l=0-c=original-cam_{cam}-mono-0.map")
    out = convert("shapestacks", tmp_path, tmp_path / "out")
    train, test = load_split(out, "train"), load_split(out, "test")
    assert train["image"].shape == (2, 64, 64, 3) and set(np.unique(train["mask"])) == {0, 1, 2}
    expected = np.asarray(Image.fromarray(labels).crop((14, 14, 210, 210)).resize((64, 64), Image.NEAREST))
    np.testing.assert_array_equal(train["mask"][0], expected)
    assert train["factor.tower_stable"][0, :2].tolist() == [1, 1] and test["factor.tower_stable"][0, :2].tolist() == [0, 0]
    (tmp_path / f"recordings/{scenarios['test']}/rgb-w=0-f=0-l=0-c=original-cam_3-mono-0.png").write_bytes(b"x")
    with pytest.raises(DatasetError, match="no instance map for camera 3"):
        convert("shapestacks", tmp_path, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


def test_clevrtex_layout_and_index_splits(tmp_path):
    for i in range(10):
        stem = tmp_path / "clevrtex_full" / "0" / f"CLEVRTEX_full_{i:06d}"
        _png(stem.with_suffix(".png"), np.full((240, 320, 3), i * 10))
        labels = np.zeros((240, 320), np.uint8)
        labels[100:150, 120:200] = 1
        _png(stem.with_name(stem.name + "_flat.png"), labels, "L")
        objects = [{"shape": ["cube", "sphere"][i % 2], "material": "metal", "size": "large", "rotation": 30.0 * i}]
        stem.with_suffix(".json").write_text(json.dumps({"objects": objects}))
    out = convert("clevrtex", tmp_path, tmp_path / "out")
    meta = load_meta(out)
    assert {k: v["n"] for k, v in meta.splits.items()} == {"test": 1, "val": 1, "train": 8}
    test = load_split(out, "test")
    assert test["image"].shape == (1, 128, 128, 3) and (test["image"] == 0).all()  # index 0 is test
    expected = np.asarray(Image.fromarray(labels).crop((64, 24, 256, 216)).resize((128, 128), Image.NEAREST))
    np.testing.assert_array_equal(test["mask"][0], expected)
    assert load_split(out, "train")["factor.rotation"][:, 0].tolist() == [60.0, 90.0, 120.0, 150.0, 180.0, 210.0, 240.0, 270.0]


def test_sysbinder_flat_folder_and_annotated_split(tmp_path):
    for i in range(20):
        _png(tmp_path / "easy" / f"CLEVR_easy_{i:06d}.png", np.full((240, 320, 3), i))
    out = convert("sysbinder", tmp_path / "easy", tmp_path / "out")
    assert {k: v["n"] for k, v in load_meta(out).splits.items()} == {"train": 14, "val": 3, "test": 3}
    assert load_split(out, "val")["image"][0, 0, 0, 0] == 14  # sorted order, 70/15/15
    split = tmp_path / "annotated" / "test"
    mask = np.zeros((240, 320, 3), np.uint8)
    mask[10:50, 10:50] = (255, 0, 0)
    mask[100:140, 200:260] = (0, 255, 0)
    _png(split / "images" / "CLEVR_0.png", np.zeros((240, 320, 3)))
    _png(split / "images" / "CLEVR_0_mask.png", mask)
    (split / "scenes").mkdir()
    (split / "scenes" / "CLEVR_0.json").write_text(json.dumps({"objects": [
        {"shape": "sphere", "color": "red", "3d_coords": [-3.5, -2.5, 0.7]},
        {"shape": "cube", "color": "cyan", "3d_coords": [3.9, 3.9, 0.7]}]}))
    got = load_split(convert("sysbinder", tmp_path / "annotated", tmp_path / "out2"), "test")
    assert set(np.unique(got["mask"])) == {0, 1, 2} and got["factor.shape"][0, :2].tolist() == [1, 0]
    assert got["factor.colour"][0, :2].tolist() == [1, 6] and got["factor.position"][0, :2].tolist() == [0, 8]
