"""Byte-level writers for archives the container's own writer would not make, every CRC valid.

They follow the layouts of ``alphazip.container`` (formats 3 and 2 in its docstring, format 1
as ``_read_version_1`` reads it) and take each count and length as an argument, so a case can
make any of them lie while the CRC-32s stay right: a CRC guards against noise, never against a
forger. Format 3's second CRC per frame is of the bytes the frame decodes to: a forger keeps the
true one, or computes it from bytes it knows.
"""

import json
import struct
import zlib
from dataclasses import MISSING, asdict, dataclass, fields

from .. import compact, container
from ..compact import varint as leb128  # of any non-negative int: the reader stops at 64 bits
from ..container import Archive, Frame, Header

_MODE_BYTES = {"raw": 0, "model": 1}  # a frame body's first byte


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


def write_archive(archive: Archive, version: int = container.FORMAT_VERSION, *, sha_trailer: bool | None = None
                  ) -> bytes:
    """``container.write``, as the brief of a forger says; where the writer refuses hostile
    values (it may check what it writes), the same bytes by hand. In format 3 ``sha_trailer``
    says whether the trailer holds the size and SHA-256 (None: as the writer decides, when
    there is more than one frame); a frame without ``crc`` gets the CRC-32 of nothing."""
    honest = sha_trailer is None or sha_trailer == (len(archive.frames) > 1)
    # Format 3's writer takes a raw frame's first stream and a model frame's two: more or fewer
    # are written by hand, so that the lie is in the bytes.
    canonical = all(frame.crc is not None and len(frame.streams) == (1 if frame.mode == "raw" else 2)
                    for frame in archive.frames)
    if honest and (version == 2 or canonical):
        try:
            return container.write(archive, version)
        except Exception:  # noqa: BLE001 - any refusal: the forger writes it anyway
            pass
    if version == 3:
        records = [compact_record(compact_body(frame), frame.crc or 0, tag=compact_tag(frame.mode))
                   for frame in archive.frames]
        end = compact_trailer(archive.original_size, archive.original_sha256,
                              len(archive.frames) > 1 if sha_trailer is None else sha_trailer)
        return write_version_3(compact.header_bytes(archive.header), records, end)
    records = [frame_record(frame_body(frame)) for frame in archive.frames]
    return write_version_2(header_fields(archive.header), records,
                           trailer(archive.original_size, archive.original_sha256))


# Format 3: the compact header, tagged frame records with two CRCs, a trailer without a CRC.

def compact_tag(mode: str) -> int:
    """A format-3 record's tag for a frame of ``mode`` (1 raw, 2 model)."""
    return {"raw": 1, "model": 2}[mode]


def compact_body(frame: Frame, *, size: int | None = None, tokens: int | None = None, length: int | None = None,
                 symbols_length: int | None = None, tail: bytes = b"") -> bytes:
    """A format-3 frame body; each keyword, when given, replaces the true value with a lie.
    A model frame's chunk table is written as its total and its first chunk's length (what the
    format holds); streams beyond the two a model frame has are run on into the escapes."""
    parts = [leb128(frame.size if size is None else size)]
    if frame.mode == "raw":
        return parts[0] + b"".join(frame.streams) + tail
    symbols = frame.streams[0] if frame.streams else b""
    parts += [leb128(sum(frame.chunk_tokens) if tokens is None else tokens),
              leb128((frame.chunk_tokens[0] if frame.chunk_tokens else 0) if length is None else length),
              leb128(len(symbols) if symbols_length is None else symbols_length), symbols, *frame.streams[1:]]
    return b"".join(parts) + tail


def compact_record(body: bytes, data_crc: int, *, tag: int = 2, length: int | None = None) -> bytes:
    """A format-3 frame record: tag, body length (true unless given), body, CRC-32 of the body,
    ``data_crc`` (the CRC-32 the frame's decoded bytes must have)."""
    return (bytes([tag]) + leb128(len(body) if length is None else length) + body
            + struct.pack("<II", zlib.crc32(body), data_crc & 0xFFFFFFFF))


def compact_trailer(size: int, sha256: bytes | None, with_sha: bool, tag: int = 0) -> bytes:
    """Format 3's end record: the tag, and the original's size and SHA-256 where ``with_sha``."""
    return bytes([tag]) + (leb128(size) + (sha256 or bytes(32)) if with_sha else b"")


def write_version_3(header: bytes, records: list[bytes], end: bytes, *, header_length: int | None = None,
                    version: int = 3, junk: bytes = b"") -> bytes:
    """A format-3 archive from its compact header and records: the header's CRC is computed."""
    head = container.MAGIC + bytes([version]) + leb128(len(header) if header_length is None else header_length)
    head += header
    return head + struct.pack("<I", zlib.crc32(head)) + b"".join(records) + end + junk


@dataclass
class Parts:
    """A valid format-2 or format-3 archive cut into what the hand-writers take."""

    version: int
    header: bytes  # the JSON (format 2) or the compact header (format 3)
    bodies: list[bytes]
    tags: list[int]  # each record's tag (format 3: its mode)
    data_crcs: list[int]  # format 3: each frame's CRC-32 of its decoded bytes
    end: bytes  # the end record (format 2: without the archive's CRC)

    def records(self) -> list[bytes]:
        if self.version == 2:
            return [frame_record(body) for body in self.bodies]
        return [compact_record(body, crc, tag=tag) for body, crc, tag in zip(self.bodies, self.data_crcs, self.tags)]

    def write(self, records: list[bytes] | None = None, end: bytes | None = None, **keywords) -> bytes:
        """The archive again, with ``records`` or ``end`` replaced where given."""
        writer = write_version_2 if self.version == 2 else write_version_3
        return writer(self.header, self.records() if records is None else records,
                      self.end if end is None else end, **keywords)


def split(blob: bytes) -> Parts:
    """A valid format-2 or format-3 archive's header, frame records and end record."""
    version, pos = blob[len(container.MAGIC)], len(container.MAGIC) + 1
    if version == 2:
        length, pos = struct.unpack_from("<I", blob, pos)[0], pos + 4
    else:
        length, pos = _leb128_at(blob, pos)
    header, pos = blob[pos:pos + length], pos + length + 4
    parts = Parts(version, header, [], [], [], b"")
    while blob[pos] != 0:
        length, start = _leb128_at(blob, pos + 1)
        parts.tags.append(blob[pos])
        parts.bodies.append(blob[start:start + length])
        pos = start + length + 4
        if version == 3:
            parts.data_crcs.append(struct.unpack_from("<I", blob, pos)[0])
            pos += 4
    parts.end = blob[pos:-4] if version == 2 else blob[pos:]
    return parts


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


def fix_crcs(blob: bytes, decoded: list[bytes] | None = None) -> bytes:
    """Make a damaged archive's CRC-32s right again, as far as its structure can still be
    followed: the header's, each frame record's, and (format 1 and 2) the last four bytes as
    the CRC of all before them. In format 3 a record's second CRC is of its decoded bytes:
    kept as it is, or made that of ``decoded[i]`` for record ``i`` where the caller knows what
    the frame should decode to. This takes blind mutation past the CRCs, to the code behind."""
    if blob[:len(container.MAGIC)] != container.MAGIC or len(blob) < 10:
        return blob
    if blob[4] == 3:
        return _fix_version_3(bytearray(blob), decoded or [])
    if blob[4] != 2 or len(blob) < 13:  # format 1 (or an unknown version): one CRC, at the end
        return with_crc(blob[:-4]) if len(blob) >= 13 else blob
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


def _fix_version_3(out: bytearray, decoded: list[bytes]) -> bytes:
    length, pos = _leb128_at(out, 5)
    if length is None or pos + length + 4 > len(out):
        return bytes(out)
    pos += length
    out[pos:pos + 4] = struct.pack("<I", zlib.crc32(out[:pos]))
    pos, index = pos + 4, 0
    while pos < len(out) and out[pos] in (1, 2):  # frame records, while they still parse
        length, start = _leb128_at(out, pos + 1)
        if length is None or start + length + 8 > len(out):
            break
        pos = start + length
        out[pos:pos + 4] = struct.pack("<I", zlib.crc32(out[start:pos]))
        if index < len(decoded):
            out[pos + 4:pos + 8] = struct.pack("<I", zlib.crc32(decoded[index]))
        pos, index = pos + 8, index + 1
    return bytes(out)


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
