"""Byte-level writers for archives the container's own writer would not make, every CRC valid.

They follow the layouts of ``alphazip.container`` (format 2 in its docstring, format 1 as
``_read_version_1`` reads it) and take each count and length as an argument, so a case can make
any of them lie while the CRC-32s stay right: a CRC guards against noise, never against a forger.
"""

import json
import struct
import zlib
from dataclasses import MISSING, asdict, fields

from .. import container
from ..container import Archive, Frame, Header

_MODE_BYTES = {"raw": 0, "model": 1}  # a frame body's first byte


def leb128(value: int) -> bytes:
    """Unsigned LEB128 of any non-negative int, however large (the reader stops at 64 bits)."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def header_fields(header: Header) -> dict:
    """A header as the writer stores it: mode, back-end, and the fields that differ from defaults."""
    defaults = {f.name: f.default if f.default is not MISSING else f.default_factory()
                for f in fields(Header) if f.default is not MISSING or f.default_factory is not MISSING}
    return {k: v for k, v in asdict(header).items() if k not in defaults or v != defaults[k]}


def header_text(header: dict | bytes) -> bytes:
    """The JSON the reader parses; bytes pass through as they are (for JSON no writer makes)."""
    if isinstance(header, bytes):
        return header
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def frame_body(frame: Frame, *, mode: int | None = None, chunk_count: int | None = None,
               stream_count: int | None = None, stream_lengths: list[int] | None = None, tail: bytes = b"") -> bytes:
    """A format-2 frame body; each keyword, when given, replaces the true value with a lie."""
    parts = [bytes([_MODE_BYTES[frame.mode] if mode is None else mode]), leb128(frame.size)]
    parts.append(leb128(len(frame.chunk_tokens) if chunk_count is None else chunk_count))
    for tokens, crc in zip(frame.chunk_tokens, frame.chunk_crcs):
        parts += [leb128(tokens), struct.pack("<I", crc & 0xFFFFFFFF)]
    parts.append(leb128(len(frame.streams) if stream_count is None else stream_count))
    lengths = stream_lengths or [len(stream) for stream in frame.streams]
    for length, stream in zip(lengths, frame.streams):
        parts += [leb128(length), stream]
    return b"".join(parts) + tail


def frame_record(body: bytes, length: int | None = None, tag: int = 1) -> bytes:
    """A frame record: tag, body length (true unless given), body, CRC-32 of the body."""
    return bytes([tag]) + leb128(len(body) if length is None else length) + body + struct.pack("<I", zlib.crc32(body))


def trailer(size: int, sha256: bytes, tag: int = 0) -> bytes:
    """The end record, without the archive's CRC (``write_version_2`` appends that)."""
    return bytes([tag]) + leb128(size) + sha256


def write_version_2(header: dict | bytes, records: list[bytes], end: bytes, *, header_length: int | None = None,
                    version: int = 2, junk: bytes = b"") -> bytes:
    """A format-2 archive from its records: the header CRC and the overall CRC are computed."""
    text = header_text(header)
    head = container.MAGIC + bytes([version]) + struct.pack("<I", (len(text) if header_length is None
                                                                   else header_length) & 0xFFFFFFFF) + text
    out = head + struct.pack("<I", zlib.crc32(head)) + b"".join(records) + end
    return out + struct.pack("<I", zlib.crc32(out)) + junk


def write_archive(archive: Archive) -> bytes:
    """``container.write``, as the brief of a forger says; where the writer refuses hostile
    values (it may check what it writes), the same bytes by hand."""
    try:
        return container.write(archive)
    except Exception:  # noqa: BLE001 - any refusal: the forger writes it anyway
        records = [frame_record(frame_body(frame)) for frame in archive.frames]
        return write_version_2(header_fields(archive.header), records,
                               trailer(archive.original_size, archive.original_sha256))


def write_version_1(header: dict | bytes, frame: Frame, size: int, sha256: bytes, *, chunk_count: int | None = None,
                    stream_count: int | None = None, stream_lengths: list[int] | None = None) -> bytes:
    """A format-1 archive (one frame, fixed-width fields), its one CRC-32 valid; values too wide
    for their field wrap around, as a forger's would."""
    text = header_text(header)
    parts = [container.MAGIC, b"\x01", _fixed("<I", len(text)), text,
             _fixed("<I", len(frame.chunk_tokens) if chunk_count is None else chunk_count)]
    parts += [_fixed("<II", tokens, crc) for tokens, crc in zip(frame.chunk_tokens, frame.chunk_crcs)]
    parts.append(_fixed("<B", len(frame.streams) if stream_count is None else stream_count))
    lengths = stream_lengths or [len(stream) for stream in frame.streams]
    for length, stream in zip(lengths, frame.streams):
        parts += [_fixed("<Q", length), stream]
    parts += [_fixed("<Q", size), sha256]
    return with_crc(b"".join(parts))


def with_crc(content: bytes) -> bytes:
    """``content`` and its CRC-32: a format-1 archive is its content and one CRC over all of it."""
    return content + struct.pack("<I", zlib.crc32(content))


def fix_crcs(blob: bytes) -> bytes:
    """Make a damaged archive's CRC-32s right again, as far as its structure can still be
    followed: the header's, each frame record's, and the last four bytes as the CRC of all
    before them. This takes blind mutation past the CRCs, to the code that acts on the bytes."""
    if blob[:len(container.MAGIC)] != container.MAGIC or len(blob) < 13:
        return blob
    if blob[4] != 2:  # format 1 (or an unknown version): one CRC, at the end
        return with_crc(blob[:-4])
    out = bytearray(blob)
    pos = 9 + struct.unpack_from("<I", out, 5)[0]
    if pos + 4 <= len(out):
        out[pos:pos + 4] = struct.pack("<I", zlib.crc32(out[:pos]))
        pos += 4
        while pos < len(out) and out[pos] == 1:  # frame records, while they still parse
            length, start = _leb128_at(out, pos + 1)
            if length is None or start + length + 4 > len(out):
                break
            pos = start + length
            out[pos:pos + 4] = struct.pack("<I", zlib.crc32(out[start:pos]))
            pos += 4
    return with_crc(bytes(out[:-4]))


def _leb128_at(data: bytes, pos: int) -> tuple[int | None, int]:
    value = shift = 0
    while pos < len(data) and shift < 70:
        value |= (data[pos] & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not data[pos - 1] & 0x80:
            return value, pos
    return None, pos


def _fixed(layout: str, *values: int) -> bytes:
    widths = [8 * struct.calcsize("<" + code) for code in layout[1:]]
    return struct.pack(layout, *(value % (1 << width) for value, width in zip(values, widths)))


def split(blob: bytes) -> tuple[bytes, list[bytes], bytes]:
    """A valid format-2 archive's header JSON, frame bodies and end record."""
    archive = container.read(blob)
    (length,) = struct.unpack_from("<I", blob, len(container.MAGIC) + 1)
    start = len(container.MAGIC) + 5
    bodies = [frame_body(frame) for frame in archive.frames]
    return blob[start:start + length], bodies, trailer(archive.original_size, archive.original_sha256)
