"""Read ``tf.train.Example`` records from TFRecord files without TensorFlow (the official ClickMe release's format).

A TFRecord file is a sequence of records, each ``uint64 length | uint32 masked CRC32C of the length |
data | uint32 masked CRC32C of the data`` (little endian). The data of an Example is the protobuf
``Example { Features features = 1 }``, ``Features { map<string, Feature> feature = 1 }``,
``Feature { oneof { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3 } }``.
Only what the ClickMe shards hold is decoded: bytes and int64 features. The CRCs are not verified
(no CRC32C in the standard library); a truncated file or a record that is not an Example is a
one-line error.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

from videonet.errors import UserError

Features = dict[str, "list[bytes] | list[int]"]


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """(value, next position) of the base-128 varint at ``pos``."""
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, bytes | int]]:
    """(field number, wire type, value) of every field of a serialized message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
            if pos > len(buf):
                raise ValueError("truncated field")
        elif wire in (1, 5):  # fixed64 / fixed32 (a FloatList's floats): skipped
            pos += 8 if wire == 1 else 4
            continue
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


def _int64s(buf: bytes) -> list[int]:
    """Int64List's values, packed or not, as signed integers."""
    values = []
    for _, wire, value in _fields(buf):
        if wire == 2:  # packed
            pos = 0
            while pos < len(value):
                item, pos = _varint(value, pos)
                values.append(item)
        else:
            values.append(value)
    return [v - (1 << 64) if v >= 1 << 63 else v for v in values]


def parse_example(data: bytes) -> Features:
    """The bytes and int64 features of a serialized ``tf.train.Example`` (float features are left out)."""
    out: Features = {}
    for number, _, features in _fields(data):
        if number != 1:
            continue
        for entry_number, _, entry in _fields(features):
            if entry_number != 1:
                continue
            key, feature = "", b""
            for n, _, v in _fields(entry):
                if n == 1:
                    key = v.decode()
                elif n == 2:
                    feature = v
            for kind, _, values in _fields(feature):
                if kind == 1:
                    out[key] = [v for n, _, v in _fields(values) if n == 1]
                elif kind == 3:
                    out[key] = _int64s(values)
    return out


def read_records(path: Path) -> Iterator[tuple[int, bytes]]:
    """(offset, data) of every record of a TFRecord file."""
    size = path.stat().st_size
    with path.open("rb") as f:
        while True:
            offset = f.tell()
            header = f.read(12)
            if not header:
                return
            if len(header) < 12:
                raise UserError(f"{path}: truncated TFRecord at byte {offset}")
            (length,) = struct.unpack("<Q", header[:8])
            if offset + 12 + length + 4 > size:
                raise UserError(f"{path}: record at byte {offset} runs past the end of the file (not a TFRecord?)")
            data = f.read(length)
            f.read(4)
            yield offset, data


def read_record(path: Path, offset: int) -> bytes:
    """The data of the record that starts at ``offset`` (as :func:`read_records` gave it)."""
    with path.open("rb") as f:
        f.seek(offset)
        (length,) = struct.unpack("<Q", f.read(12)[:8])
        return f.read(length)


def read_examples(path: Path) -> Iterator[tuple[int, Features]]:
    """(offset, features) of every Example of a TFRecord file; a record that is not one is a UserError."""
    for offset, data in read_records(path):
        try:
            yield offset, parse_example(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise UserError(f"{path}: the record at byte {offset} is not a tf.train.Example ({exc})") from None
