import gzip
import struct

import numpy as np
import pytest
import torch

from common.data.convert import convert, parse_splits
from common.data.registry import generate_split
from common.data.store import DatasetError, load_meta, load_split
from common.data.tfrecord import RecordError, encode_example, masked_crc, parse_example, read_records, write_records


def test_crc32c_and_mask_known_values():
    import google_crc32c
    assert google_crc32c.value(b"123456789") == 0xE3069283  # the CRC-32C check value
    crc = 0xE3069283
    assert masked_crc(b"123456789") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def test_example_encoding_matches_hand_built_bytes():
    # Example{features{feature{key:"a" value{int64_list{value:[1]}}}}} built field by field:
    # Int64List = 0A 01 01; Feature = 1A 03 <Int64List>; entry = 0A 01 'a' 12 05 <Feature>;
    # Features = 0A 0A <entry>; Example = 0A 0C <Features>.
    expected = bytes([0x0A, 0x0C, 0x0A, 0x0A, 0x0A, 0x01, ord("a"), 0x12, 0x05, 0x1A, 0x03, 0x0A, 0x01, 0x01])
    assert encode_example({"a": ("int", [1])}) == expected
    assert parse_example(expected)["a"].tolist() == [1]


def test_example_round_trip_of_every_kind():
    img = np.arange(300, dtype=np.uint8)
    ex = parse_example(encode_example({"image": ("bytes", img), "x": ("float", [0.5, -2.0]),
                                       "n": ("int", [3, -1]), "name": ("bytes", [b"ab", b"c"])}))
    assert np.array_equal(ex["image"], img) and ex["x"].tolist() == [0.5, -2.0] and ex["n"].tolist() == [3, -1]
    assert ex["name"] == [b"ab", b"c"]


def _entity_masks(labels: np.ndarray, k: int) -> np.ndarray:
    return np.stack([(labels == i) * 255 for i in range(k)]).astype(np.uint8)  # [K,H,W]


def _tetromino_records(n=5):
    meta, b = generate_split("tetrominoes", n, seed=0)
    palette = np.array([(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255)])
    records = []
    for i in range(n):
        colour = np.concatenate([[0], b["factor.colour"][i] + 1])
        records.append(encode_example({
            "image": ("bytes", b["image"][i]), "mask": ("bytes", _entity_masks(b["mask"][i], 4)[..., None]),
            "x": ("float", np.concatenate([[0], b["factor.x"][i]])), "y": ("float", np.concatenate([[0], b["factor.y"][i]])),
            "shape": ("float", np.concatenate([[0], b["factor.shape"][i]])),
            "color": ("float", palette[colour] / 255.0), "visibility": ("float", [1, 1, 1, 1])}))
    return b, records


def test_tetrominoes_tfrecord_reproduces_known_records(tmp_path):
    b, records = _tetromino_records()
    write_records(tmp_path / "tetrominoes_train.tfrecords", records)
    out = convert("tetrominoes", tmp_path / "tetrominoes_train.tfrecords", tmp_path / "tet", splits="train=3,test=rest")
    train, test = load_split(out, "train"), load_split(out, "test")
    assert len(train["image"]) == 3 and len(test["image"]) == 2
    for k in ("image", "mask", "factor.colour", "factor.shape", "factor.x", "factor.y", "visibility"):
        np.testing.assert_array_equal(np.concatenate([train[k], test[k]]), b[k], err_msg=k)


def test_multi_dsprites_hwk_masks_and_binarized_images(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, size=(2, 64, 64))
    for channels in (3, 1):
        image = rng.integers(0, 256, size=(2, 64, 64, channels), dtype=np.uint8)
        recs = [encode_example({
            "image": ("bytes", image[i]), "mask": ("bytes", _entity_masks(labels[i], 6).transpose(1, 2, 0)[..., None]),
            **{k: ("float", rng.random(6)) for k in ("x", "y", "scale", "orientation")},
            "shape": ("float", rng.integers(0, 3, 6)), "color": ("float", rng.random((6, channels))),
            "visibility": ("float", [1, 1, 1, 1, 1, 0])}) for i in range(2)]
        write_records(tmp_path / f"md{channels}.tfrecords", recs)
        out = convert("multi_dsprites", tmp_path / f"md{channels}.tfrecords", tmp_path / f"md{channels}")
        got = load_split(out, "train")
        np.testing.assert_array_equal(got["mask"], labels)
        np.testing.assert_array_equal(got["image"], np.repeat(image, 3 // channels, -1))
        assert got["visibility"].tolist() == [[1, 1, 1, 1, 0]] * 2 and got["factor.colour"].shape == (2, 5, 3)


def test_objects_room_has_four_background_entities(tmp_path):
    labels = np.random.default_rng(1).integers(0, 7, size=(64, 64))
    rec = encode_example({"image": ("bytes", np.zeros((64, 64, 3), np.uint8)),
                          "mask": ("bytes", _entity_masks(labels, 7)[..., None])})
    write_records(tmp_path / "objects_room_train.tfrecords", [rec])
    out = convert("objects_room", tmp_path / "objects_room_train.tfrecords", tmp_path / "or")
    meta, got = load_meta(out), load_split(out, "train")
    assert meta.num_background == 4 and meta.background_ids == (0, 1, 2, 3) and meta.max_objects == 3
    np.testing.assert_array_equal(got["mask"][0], labels)


def _clevr_records(counts):
    """CLEVR-format records whose foreground object counts are `counts`; objects are horizontal bands."""
    recs, labels_all = [], []
    for i, c in enumerate(counts):
        labels = np.zeros((240, 320), np.uint8)
        for j in range(c):
            labels[40 + 16 * j:40 + 16 * j + 10, 100:200] = j + 1
        labels_all.append(labels)
        vis = np.array([1] * (c + 1) + [0] * (10 - c), np.float32)
        codes = np.array([0] + [1 + j % 2 for j in range(c)] + [0] * (10 - c))
        recs.append(encode_example({
            "image": ("bytes", (np.stack([labels * 20] * 3, -1) + i).astype(np.uint8)),
            "mask": ("bytes", _entity_masks(labels, 11)[..., None]),
            **{k: ("float", np.arange(11, dtype=np.float32) + i) for k in ("x", "y", "z", "rotation")},
            "pixel_coords": ("float", np.ones((11, 3))), "visibility": ("float", vis),
            **{k: ("bytes", codes.astype(np.uint8)) for k in ("size", "material", "shape", "color")}}))
    return recs, np.stack(labels_all)


@pytest.mark.parametrize("count,kept", [("foreground", [0, 1, 3]), ("oclf", [0, 1]), ("iodine-release", [1])])
def test_clevr6_filter_conventions(tmp_path, count, kept):
    recs, _ = _clevr_records([3, 5, 7, 6])
    write_records(tmp_path / "clevr.tfrecords", recs)
    out = convert("clevr_with_masks", tmp_path / "clevr.tfrecords", tmp_path / count, max_objects=6, count=count)
    got = load_split(out, "train")
    assert got["image"][:, 0, 0, 0].tolist() == kept  # the record index is painted into the image


@pytest.mark.parametrize("crop,rows,cols", [("iodine", (29, 221), (64, 256)), ("center", (24, 216), (64, 256))])
def test_clevr_crops_and_resize(tmp_path, crop, rows, cols):
    recs, labels = _clevr_records([4, 2])
    write_records(tmp_path / "clevr.tfrecords", recs)
    out = convert("clevr_with_masks", tmp_path / "clevr.tfrecords", tmp_path / crop, crop=crop, size=128)
    got = load_split(out, "train")
    cropped = labels[:, rows[0]:rows[1], cols[0]:cols[1]]
    expected = torch.nn.functional.interpolate(torch.from_numpy(cropped)[:, None].float(), size=(128, 128), mode="nearest")
    np.testing.assert_array_equal(got["mask"], expected[:, 0].byte().numpy())
    assert got["image"].shape == (2, 128, 128, 3)
    assert got["num_objects"].tolist() == [4, 2] and got["factor.colour"][0, :4].tolist() == [0, 1, 0, 1]
    assert got["factor.x"][1, 0] == 2.0  # entity 1 of record 1: arange(11) + 1


def test_splits_that_get_no_records_or_too_few_are_errors(tmp_path):
    _, records = _tetromino_records(4)
    write_records(tmp_path / "tet.tfrecords", records)
    with pytest.raises(DatasetError, match="split 'test' is empty \\(no records are left for it; the file has 4"):
        convert("tetrominoes", tmp_path / "tet.tfrecords", tmp_path / "a", splits="train=4,test=rest")
    with pytest.raises(DatasetError, match="split train=6 needs records up to 6, the file has 4"):
        convert("tetrominoes", tmp_path / "tet.tfrecords", tmp_path / "b", splits="train=6")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_crop_larger_than_the_images_is_an_error(tmp_path):
    _, records = _tetromino_records(2)
    write_records(tmp_path / "tet.tfrecords", records)
    with pytest.raises(DatasetError, match="--crop iodine takes rows 29:221 and columns 64:256, but these images are 35x35"):
        convert("tetrominoes", tmp_path / "tet.tfrecords", tmp_path / "c", crop="iodine")
    assert not (tmp_path / "c").exists()


def test_parse_splits():
    assert parse_splits("train=70000,test=rest") == [("train", 70000), ("test", None)]
    with pytest.raises(ValueError, match="only the last"):
        parse_splits("train=rest,test=5")


def _framed(records):
    return b"".join(struct.pack("<Q", len(r)) + struct.pack("<I", masked_crc(struct.pack("<Q", len(r)))) + r
                    + struct.pack("<I", masked_crc(r)) for r in records)


def test_bad_files_name_file_and_record_and_leave_nothing(tmp_path):
    _, records = _tetromino_records(3)
    raw = _framed(records)
    cases = {
        "truncated": gzip.compress(raw[:-100]),
        "crc": gzip.compress(raw[:200] + bytes([raw[200] ^ 1]) + raw[201:]),
        "missing": gzip.compress(_framed([encode_example({"image": ("bytes", np.zeros((35, 35, 3), np.uint8))})])),
        "shape": gzip.compress(_framed([encode_example({"image": ("bytes", np.zeros(10, np.uint8)),
                                                        "mask": ("bytes", np.zeros((4, 35, 35), np.uint8))})])),
    }
    messages = {"truncated": "record 2: truncated data", "crc": "record 0: data CRC mismatch",
                "missing": "record 0: missing feature 'mask'", "shape": "record 0: feature 'image' has 10 values"}
    for name, data in cases.items():
        path = tmp_path / f"{name}.tfrecords"
        path.write_bytes(data)
        with pytest.raises(RecordError, match=messages[name]) as err:
            convert("tetrominoes", path, tmp_path / "out")
        assert str(path) in str(err.value)
        assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))
    with pytest.raises(DatasetError, match="no such file"):
        convert("tetrominoes", tmp_path / "nope.tfrecords", tmp_path / "out")


def test_read_records_streams_in_order(tmp_path):
    write_records(tmp_path / "r.tfrecords", [b"a", b"bc", b""])
    assert list(read_records(tmp_path / "r.tfrecords")) == [b"a", b"bc", b""]


def test_emorl_hdf5_layout(tmp_path):
    import h5py
    rng = np.random.default_rng(0)
    labels = {s: rng.integers(0, 4, size=(n, 35, 35)) for s, n in (("train", 3), ("test", 2))}
    with h5py.File(tmp_path / "tetrominoes.h5", "w") as f:
        for split, lab in labels.items():
            g = f.create_group(split)
            g["imgs"] = rng.integers(0, 256, size=(*lab.shape, 3), dtype=np.uint8)
            g["masks"] = np.stack([_entity_masks(x, 4) for x in lab])[..., None]
            g["factors"] = rng.random((len(lab), 4, 5)).astype(np.float32)
    out = convert("emorl_h5", tmp_path / "tetrominoes.h5", tmp_path / "emorl")
    assert set(load_meta(out).splits) == {"train", "test"}
    got = load_split(out, "test")
    np.testing.assert_array_equal(got["mask"], labels["test"])
    assert got["factor.emorl"].shape == (2, 3, 5)
    (tmp_path / "broken.h5").write_bytes(b"not hdf5")
    with pytest.raises(DatasetError, match="not a readable HDF5"):
        convert("emorl_h5", tmp_path / "broken.h5", tmp_path / "x")
