"""The .az archive format, read in gzip's order: magic, version, header, payloads, trailer.

Layout (integers little-endian)::

    magic      4 bytes  b"AZip"
    version    u8       FORMAT_VERSION
    header     u32 length + UTF-8 JSON: every setting the decoder needs (see ``Header``)
    chunks     u32 count, then per chunk: u32 token count, u32 CRC-32 of the chunk's bytes
    streams    u8 count, then per stream: u64 length + payload bytes
    trailer    u64 original size, 32-byte SHA-256 of the original, u32 CRC-32 of all above

Anything after the trailer is an error, as is any length that runs past the end.
"""

import hashlib
import json
import struct
import zlib
from dataclasses import asdict, dataclass, field

from .errors import BadArchiveError, UnsupportedFormatError

MAGIC = b"AZip"
FORMAT_VERSION = 1
MODES = ("model", "raw")  # ranks under a model, or the back-end on the raw bytes


@dataclass
class Header:
    """Settings an archive was packed with; decoding is a pure function of these."""

    mode: str  # "model" or "raw"
    backend: str
    model: str = ""  # name or path the archive was packed with (informative)
    model_fingerprint: str = ""  # weights + config + tokenizer; must match to decode
    dtype: str = ""
    engine: str = ""  # the inference path, e.g. "transformers-static-step" or "alphazip-llama-2"
    probe: str = ""  # invariant engines: fingerprint of the logits on a fixed input (the guard)
    top_k: int = 0
    context: int = 0
    batch: int = 0
    threads: int = 0
    versions: dict = field(default_factory=dict)  # libraries the float results depend on


@dataclass
class Archive:
    """An archive in memory: header, chunk table, coded streams, and the original's identity."""

    header: Header
    chunk_tokens: list[int]
    chunk_crcs: list[int]
    streams: list[bytes]
    original_size: int
    original_sha256: bytes


def write(archive: Archive) -> bytes:
    """Serialize ``archive`` to the bytes of a .az file."""
    # Only fields that differ from their defaults: a raw archive's header stays a few bytes.
    defaults = asdict(Header(mode=archive.header.mode, backend=archive.header.backend))
    fields = {k: v for k, v in asdict(archive.header).items() if k in ("mode", "backend") or v != defaults[k]}
    header = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    parts = [MAGIC, struct.pack("<BI", FORMAT_VERSION, len(header)), header,
             struct.pack("<I", len(archive.chunk_tokens))]
    parts += [struct.pack("<II", n, crc) for n, crc in zip(archive.chunk_tokens, archive.chunk_crcs)]
    parts.append(struct.pack("<B", len(archive.streams)))
    for stream in archive.streams:
        parts += [struct.pack("<Q", len(stream)), stream]
    parts += [struct.pack("<Q", archive.original_size), archive.original_sha256]
    body = b"".join(parts)
    return body + struct.pack("<I", zlib.crc32(body))


def read(blob: bytes) -> Archive:
    """Parse and validate a .az file; :class:`BadArchiveError` says what is wrong."""
    if len(blob) < len(MAGIC) or blob[: len(MAGIC)] != MAGIC:
        raise BadArchiveError(f"not an alphazip archive (magic {bytes(blob[:4])!r})")
    reader = _Reader(blob, len(MAGIC))
    (version,) = reader.unpack("<B")
    if version != FORMAT_VERSION:
        raise UnsupportedFormatError(f"archive format version {version} is not supported (this build reads {FORMAT_VERSION})")
    header = _parse_header(reader.take(reader.unpack("<I")[0]))
    (count,) = reader.unpack("<I")
    table = [reader.unpack("<II") for _ in range(count)]
    (stream_count,) = reader.unpack("<B")
    streams = [reader.take(reader.unpack("<Q")[0]) for _ in range(stream_count)]
    (size,) = reader.unpack("<Q")
    digest = reader.take(32)
    (crc,) = reader.unpack("<I")
    if reader.position != len(blob):
        raise BadArchiveError(f"{len(blob) - reader.position} bytes of trailing junk after the archive")
    if zlib.crc32(blob[: reader.position - 4]) != crc:
        raise BadArchiveError("archive is corrupt (CRC-32 mismatch)")
    return Archive(header, [n for n, _ in table], [c for _, c in table], streams, size, digest)


def original_identity(data: bytes) -> tuple[int, bytes]:
    """Size and SHA-256 of original data, as the trailer records them."""
    return len(data), hashlib.sha256(data).digest()


def _parse_header(raw: bytes) -> Header:
    try:
        fields = json.loads(raw.decode())
        header = Header(**fields)
    except (ValueError, TypeError) as exc:
        raise BadArchiveError(f"archive header is corrupt ({exc})") from None
    if header.mode not in MODES:
        raise UnsupportedFormatError(f"unknown archive mode {header.mode!r}")
    return header


class _Reader:
    """Bounds-checked cursor over the archive bytes: running past the end means truncation."""

    def __init__(self, blob: bytes, position: int):
        self.blob, self.position = memoryview(blob), position

    def take(self, size: int) -> bytes:
        end = self.position + size
        if end > len(self.blob):
            raise BadArchiveError("archive is truncated")
        piece = bytes(self.blob[self.position:end])
        self.position = end
        return piece

    def unpack(self, layout: str) -> tuple:
        return struct.unpack(layout, self.take(struct.calcsize(layout)))
