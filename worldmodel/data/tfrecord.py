"""Reading TFRecord files of ``tf.train.Example`` protos without TensorFlow.

Why hand-written: the only thing needed from TensorFlow is its record framing and the
``Example -> Features -> map<string, Feature>`` proto (bytes/float/int64 lists); depending on
TensorFlow (hundreds of MB) or on generated protobuf classes for that would dwarf this
module. The framing of one record is::

    uint64 length | uint32 masked_crc32c(length) | data[length] | uint32 masked_crc32c(data)

(little-endian), with ``masked(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8 (mod 2**32)``.

CRC32C (Castagnoli; ``zlib.crc32`` uses another polynomial) comes from ``google_crc32c``, a
dependency of the toolkit (Google's C implementation, using SSE4.2/ARM CRC instructions: GB/s),
so imports run at disk speed. If its C extension is unavailable, the ``crc32c`` package is used
when installed, else the table-driven pure-Python implementation below, which runs at about
1-10 MB/s and warns once (a ``RuntimeWarning``) when first used; checking can then be switched
off (``check_crc=False``, ``--no-crc``). Never imports torch.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from worldmodel.data.format import DatasetError

_MASK_DELTA = 0xA282EAD8
_POLY = 0x82F63B78  # CRC32C (Castagnoli), reflected


def _make_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _make_table()


def crc32c_python(data: bytes, crc: int = 0) -> int:
    """CRC32C of ``data`` (continuing from ``crc``), pure Python, table-driven."""
    table = _TABLE
    c = crc ^ 0xFFFFFFFF
    for b in data:
        c = table[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _python_with_warning() -> Callable[[bytes], int]:
    """:func:`crc32c_python` that warns once, at its first call, that it is slow."""
    warned = False

    def crc(data: bytes) -> int:
        nonlocal warned
        if not warned:
            warned = True
            warnings.warn(
                "CRC32C: using the pure-Python fallback (about 1-10 MB/s) because google_crc32c's C extension is "
                "not available; `pip install google-crc32c` (a dependency of worldmodel-toolkit) for disk-speed "
                "imports, or skip the check with --no-crc",
                RuntimeWarning,
                stacklevel=2,
            )
        return crc32c_python(data)

    return crc


def resolve_crc32c() -> tuple[Callable[[bytes], int], str]:
    """``(crc32c function, backend name)``: the fastest available implementation.

    ``google_crc32c`` with its C extension, else the ``crc32c`` package, else the pure-Python
    fallback (named ``"python"``, warning once at first use). ``google_crc32c`` without its C
    extension is no faster than ours, so it counts as unavailable.
    """
    try:
        import google_crc32c  # type: ignore[import-not-found]

        if getattr(google_crc32c, "implementation", "c") == "c":
            value = google_crc32c.value
            return (lambda data: int(value(data if isinstance(data, bytes) else bytes(data)))), "google_crc32c"
    except ImportError:
        pass
    try:
        import crc32c as _crc32c  # type: ignore[import-not-found]

        return (lambda data: int(_crc32c.crc32c(data))), "crc32c"
    except ImportError:
        return _python_with_warning(), "python"


crc32c: Callable[[bytes], int]
"""CRC32C of a byte string (the fastest implementation available, see :func:`resolve_crc32c`)."""
CRC32C_BACKEND: str
"""Which implementation :func:`crc32c` uses: ``google_crc32c``, ``crc32c`` or ``python``."""
crc32c, CRC32C_BACKEND = resolve_crc32c()


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC32C of ``data``."""
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def iter_records(path: str | Path, check_crc: bool = True) -> Iterator[bytes]:
    """Yield the payloads of the records of a TFRecord file (uncompressed).

    Raises :class:`DatasetError` naming the file and byte offset on a truncated record or a
    CRC mismatch.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        offset = 0
        while True:
            header = fh.read(12)
            if not header:
                return
            if len(header) < 12:
                raise DatasetError(f"{path}: truncated record header at byte {offset}")
            length_bytes = header[:8]
            (length,) = struct.unpack("<Q", length_bytes)
            (length_crc,) = struct.unpack("<I", header[8:])
            if check_crc and masked_crc32c(length_bytes) != length_crc:
                raise DatasetError(
                    f"{path}: corrupt record length at byte {offset} (CRC mismatch); not a TFRecord file?"
                )
            data = fh.read(length)
            footer = fh.read(4)
            if len(data) < length or len(footer) < 4:
                raise DatasetError(f"{path}: truncated record at byte {offset} (needs {length} bytes)")
            if check_crc and masked_crc32c(data) != struct.unpack("<I", footer)[0]:
                raise DatasetError(f"{path}: record at byte {offset} failed its CRC32C check (corrupt data)")
            offset += 16 + length
            yield data


# ----------------------------------------------------------------------------- protobuf

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """Yield ``(field number, wire type, value)``; LEN values are memoryview slices."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
        elif wire == _I64:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == _LEN:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + n], pos + n
        elif wire == _I32:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > end:
            raise ValueError("truncated protobuf field")
        yield number, wire, value


def _feature(buf: memoryview) -> list[bytes] | np.ndarray:
    for number, wire, value in _fields(buf):
        if wire != _LEN:
            continue
        if number == 1:  # BytesList { repeated bytes value = 1; }
            return [bytes(v) for n, w, v in _fields(value) if n == 1 and w == _LEN]
        if number == 2:  # FloatList { repeated float value = 1 [packed]; }
            parts: list[np.ndarray] = []
            for n, w, v in _fields(value):
                if n == 1 and w == _LEN:
                    parts.append(np.frombuffer(v, dtype="<f4"))
                elif n == 1 and w == _I32:
                    parts.append(np.frombuffer(v, dtype="<f4"))
            return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
        if number == 3:  # Int64List { repeated int64 value = 1 [packed]; }
            ints: list[int] = []
            for n, w, v in _fields(value):
                if n == 1 and w == _LEN:
                    p = 0
                    while p < len(v):
                        x, p = _varint(v, p)
                        ints.append(x & 0xFFFFFFFFFFFFFFFF)
                elif n == 1 and w == _VARINT:
                    ints.append(v & 0xFFFFFFFFFFFFFFFF)
            return np.array(ints, dtype=np.uint64).astype(np.int64)
    return []  # an empty Feature (no kind set)


def parse_example(data: bytes) -> dict[str, list[bytes] | np.ndarray]:
    """Decode a serialized ``tf.train.Example`` into ``{name: list of bytes | float32/int64 array}``."""
    out: dict[str, list[bytes] | np.ndarray] = {}
    buf = memoryview(data)
    for number, wire, features in _fields(buf):
        if number != 1 or wire != _LEN:  # Example { Features features = 1; }
            continue
        for n, w, entry in _fields(features):  # Features { map<string, Feature> feature = 1; }
            if n != 1 or w != _LEN:
                continue
            key, value = "", memoryview(b"")
            for en, ew, ev in _fields(entry):
                if en == 1 and ew == _LEN:
                    key = bytes(ev).decode("utf-8")
                elif en == 2 and ew == _LEN:
                    value = ev
            out[key] = _feature(value)
    return out
