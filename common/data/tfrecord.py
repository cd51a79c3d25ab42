"""TFRecord files of `tf.train.Example` without TensorFlow (`../shared/reference/datasets.md` §5).

Framing per record: uint64 length, uint32 masked CRC32C of the length, data, uint32 masked CRC32C of
the data. DeepMind's multi_object_datasets files are GZIP-compressed as a whole. An Example is
`features { feature { key: name, value { bytes_list | float_list | int64_list } } }`; DeepMind stores
images as bytes_list entries of one byte each (`0A 01 xx` on the wire), decoded here in one numpy step.
"""
from __future__ import annotations

import gzip
import struct
from collections.abc import Iterator
from pathlib import Path

import google_crc32c
import numpy as np


class RecordError(ValueError):
    """A malformed TFRecord file or Example, named by file and record index."""


def masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _open(path: Path, compression: str | None):
    return gzip.open(path, "rb") if compression == "gzip" else open(path, "rb")


def read_records(path: str | Path, compression: str | None = "gzip", verify: bool = True) -> Iterator[bytes]:
    """Yield each record's bytes; truncation and CRC mismatches raise RecordError naming the record."""
    path = Path(path)
    index = 0
    try:
        with _open(path, compression) as f:
            while header := f.read(12):
                if len(header) < 12:
                    raise RecordError(f"{path}: record {index}: truncated header")
                (length,), (length_crc,) = struct.unpack("<Q", header[:8]), struct.unpack("<I", header[8:])
                if verify and masked_crc(header[:8]) != length_crc:
                    raise RecordError(f"{path}: record {index}: length CRC mismatch")
                data, footer = f.read(length), f.read(4)
                if len(data) < length or len(footer) < 4:
                    raise RecordError(f"{path}: record {index}: truncated data ({len(data)} of {length} bytes)")
                if verify and masked_crc(data) != struct.unpack("<I", footer)[0]:
                    raise RecordError(f"{path}: record {index}: data CRC mismatch")
                yield data
                index += 1
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise RecordError(f"{path}: record {index}: cannot read ({err})") from err


def write_records(path: str | Path, records: list[bytes], compression: str | None = "gzip") -> None:
    """Write framed records (used to make fixtures in the published format)."""
    out = b"".join(struct.pack("<Q", len(r)) + struct.pack("<I", masked_crc(struct.pack("<Q", len(r))))
                   + r + struct.pack("<I", masked_crc(r)) for r in records)
    Path(path).write_bytes(gzip.compress(out) if compression == "gzip" else out)


# -- protobuf wire format -------------------------------------------------------------------------
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise RecordError("varint runs past the end of the message")
        b = buf[pos]
        result |= (b & 0x7F) << shift
        pos += 1
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value): bytes for length-delimited, int for varint, bytes for fixed."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        else:
            raise RecordError(f"unsupported wire type {wire}")
        if pos > len(buf):
            raise RecordError("field runs past the end of the message")
        yield field, wire, value


def _bytes_list(buf: bytes) -> np.ndarray | list[bytes]:
    raw = np.frombuffer(buf, np.uint8)
    if len(raw) % 3 == 0 and (raw[0::3] == 0x0A).all() and (raw[1::3] == 0x01).all():
        return raw[2::3].copy()  # fast path: one byte per entry
    values = [v for f, _, v in _fields(buf) if f == 1]
    return np.frombuffer(b"".join(values), np.uint8) if all(len(v) == 1 for v in values) else values


def _numbers(buf: bytes, dtype: str) -> np.ndarray:
    out = []
    for field, wire, value in _fields(buf):
        if field != 1:
            continue
        if wire == 2 and dtype == "<f4":
            out.append(np.frombuffer(value, "<f4"))
        elif wire == 2:  # packed varints
            pos, ints = 0, []
            while pos < len(value):
                v, pos = _varint(value, pos)
                ints.append(v - (1 << 64) if v >= 1 << 63 else v)
            out.append(np.array(ints, np.int64))
        else:
            out.append(np.frombuffer(value, "<f4") if wire == 5 else np.array([value], np.int64))
    return np.concatenate(out) if out else np.zeros(0, dtype)


def parse_example(buf: bytes) -> dict[str, np.ndarray | list[bytes]]:
    """tf.train.Example bytes -> {name: uint8 array (bytes), float32 array, or int64 array}."""
    features = {}
    for field, _, fbuf in _fields(buf):
        if field != 1:
            continue
        for entry_field, _, entry in _fields(fbuf):
            if entry_field != 1:
                continue
            kv = {f: v for f, _, v in _fields(entry)}
            name, value = kv.get(1, b"").decode(), kv.get(2, b"")
            for kind, _, payload in _fields(value):
                features[name] = (_bytes_list(payload) if kind == 1 else
                                  _numbers(payload, "<f4").astype(np.float32) if kind == 2 else
                                  _numbers(payload, "<i8"))
            features.setdefault(name, np.zeros(0, np.float32))
    return features


def _len_delim(field: int, payload: bytes) -> bytes:
    return _encode_varint(field << 3 | 2) + _encode_varint(len(payload)) + payload


def _encode_varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def encode_example(features: dict[str, tuple[str, object]]) -> bytes:
    """{name: ("bytes", uint8 array or list of bytes) | ("float", floats) | ("int", ints)} -> Example bytes.

    uint8 arrays are written one byte per entry, as DeepMind's files store images and masks.
    """
    entries = b""
    for name, (kind, value) in features.items():
        if kind == "bytes" and isinstance(value, np.ndarray):  # one byte per entry: 0A 01 xx each
            v = np.asarray(value, np.uint8).reshape(-1)
            payload = _len_delim(1, np.stack([np.full_like(v, 0x0A), np.full_like(v, 0x01), v], 1).tobytes())
        elif kind == "bytes":
            payload = _len_delim(1, b"".join(_len_delim(1, v) for v in value))
        elif kind == "float":
            payload = _len_delim(2, _len_delim(1, np.asarray(value, "<f4").reshape(-1).tobytes()))
        elif kind == "int":
            packed = b"".join(_encode_varint(int(v) & (2**64 - 1)) for v in np.asarray(value).reshape(-1))
            payload = _len_delim(3, _len_delim(1, packed))
        else:
            raise ValueError(f"feature {name!r}: kind must be bytes, float or int, got {kind!r}")
        entries += _len_delim(1, _len_delim(1, name.encode()) + _len_delim(2, payload))
    return _len_delim(1, entries)
