"""Symbols <-> bytes for the byte-oriented back-ends (gzip, brotli, zstd, xz).

Symbols from an alphabet of at most 256 are written one byte each. Larger alphabets use
unsigned LEB128 varints: ranks are small, so almost all take one byte, while a rare large rank
or token id still fits (a fixed u16 doubles the size of the common case and caps the alphabet).
"""

import numpy as np

from ..errors import BadArchiveError

_BLOCK = 1 << 20  # values serialized at a time: LEB128's temporaries stay small on huge inputs


def symbols_to_bytes(symbols: np.ndarray, alphabet: int) -> bytes:
    """Serialize non-negative ints below ``alphabet``: u8 when the alphabet fits, else LEB128."""
    values = np.asarray(symbols)
    if alphabet <= 256:
        return values.astype(np.uint8, copy=False).tobytes()
    return b"".join(leb128_encode(values[start:start + _BLOCK]) for start in range(0, len(values), _BLOCK))


def serialized_limit(count: int, alphabet: int) -> int:
    """The most bytes ``count`` symbols below ``alphabet`` serialize to."""
    if alphabet <= 256:
        return count
    return count * -(-(alphabet - 1).bit_length() // 7)


def bytes_to_symbols(data: bytes, alphabet: int) -> np.ndarray:
    """Inverse of :func:`symbols_to_bytes`; rejects values outside the alphabet.

    Small alphabets stay uint8 (a raw frame's bytes are not widened eightfold), others int64.
    """
    if alphabet <= 256:
        values = np.frombuffer(data, dtype=np.uint8)
    else:
        values = leb128_decode(data)
    if values.size and int(values.max()) >= alphabet:
        raise BadArchiveError(f"symbol {int(values.max())} is outside the alphabet of {alphabet}")
    return values


def leb128_encode(values: np.ndarray) -> bytes:
    """Unsigned LEB128 of every value, vectorized: 7 bits a byte, high bit = more follows."""
    values = np.asarray(values, dtype=np.uint64)
    if values.size == 0:
        return b""
    # Number of 7-bit groups each value needs (at least one, for zero).
    widths = np.ones(values.shape, dtype=np.int64)
    rest = values >> np.uint64(7)
    while rest.any():
        widths += rest > 0
        rest >>= np.uint64(7)
    starts = np.concatenate(([0], np.cumsum(widths)[:-1]))
    out = np.zeros(int(widths.sum()), dtype=np.uint8)
    for group in range(int(widths.max())):
        has = widths > group
        chunk = (values[has] >> np.uint64(7 * group)) & np.uint64(0x7F)
        more = (widths[has] > group + 1).astype(np.uint8) << 7
        out[starts[has] + group] = chunk.astype(np.uint8) | more
    return out.tobytes()


def leb128_decode(data: bytes) -> np.ndarray:
    """Inverse of :func:`leb128_encode`; a truncated last varint is an error."""
    raw = np.frombuffer(data, dtype=np.uint8)
    if raw.size == 0:
        return np.zeros(0, dtype=np.int64)
    if raw[-1] & 0x80:
        raise BadArchiveError("truncated varint at the end of a symbol stream")
    ends = np.flatnonzero((raw & 0x80) == 0)
    starts = np.concatenate(([0], ends[:-1] + 1))
    widths = ends - starts + 1
    if widths.max() > 9:
        raise BadArchiveError("varint longer than 63 bits in a symbol stream")
    values = np.zeros(ends.size, dtype=np.int64)
    for group in range(int(widths.max())):
        has = widths > group
        values[has] |= (raw[starts[has] + group] & 0x7F).astype(np.int64) << (7 * group)
    return values


def count_bytes(value: int) -> bytes:
    """A payload's leading symbol count: one unsigned LEB128 varint (the Huffman and rank-ac coders)."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def read_count(data: bytes, coder: str) -> tuple[int, int]:
    """The count :func:`count_bytes` wrote at the start of ``data``, in minimal form; (value, bytes used)."""
    value = 0
    for index, byte in enumerate(data[:10]):
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            if byte == 0 and index > 0:
                raise BadArchiveError(f"{coder} symbol count is not in minimal form")
            return value, index + 1
    raise BadArchiveError(f"{coder} symbol count is truncated")
