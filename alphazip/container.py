"""The .az archive format: a header, then frames written as they are packed, then a trailer.

Layout of format 3, written since 2026-12-02 (integers little-endian)::

    magic      4 bytes  b"AZip"
    version    u8       3
    header     length + the compact header (``compact``: ids and varints, three bytes for an
               archive of the default settings), then u32 CRC-32 of all above
    frames     per frame: u8 tag (1 raw, 2 model), body length, body, u32 CRC-32 of the body,
               u32 CRC-32 of the bytes the frame decodes to
      body     bytes it decodes to; a model frame then its token count, its chunk length (every
               chunk has it but the last, which holds the rest), the symbol stream's length, the
               symbol stream, and the escaped ids' stream as the rest; a raw frame its payload
    trailer    u8 0; when there is more than one frame: original size, 32-byte SHA-256 of the
               original (one frame's CRC-32 already covers the whole input)

So a one-frame model archive costs 33 bytes or so of container around its two payloads.

Layout of format 2 (still read, and written where asked)::

    magic      4 bytes  b"AZip"
    version    u8       FORMAT_VERSION
    header     u32 length + UTF-8 JSON: every setting the decoder needs (see ``Header``),
               then u32 CRC-32 of all above (it is acted on before the trailer is reached)
    frames     per frame: u8 1, body length, body, u32 CRC-32 of the body
      body     u8 mode (0 raw, 1 model), bytes it decodes to,
               chunk count, then per chunk: token count, u32 CRC-32 of the chunk's bytes
               stream count, then per stream: length + payload bytes
    trailer    u8 0, original size, 32-byte SHA-256 of the original, u32 CRC-32 of all above

Counts, lengths and sizes in format 2 are unsigned LEB128 varints (as in protobuf or zstd's
skippable frames): a small raw archive costs under a hundred bytes of framing, most of it the
SHA-256 and the CRCs.

Each frame is a piece of the input (about ``FRAME_BYTES``) coded on its own, so packing and
unpacking hold one frame at a time, whatever the input's size (like xz's blocks). Anything after
the trailer is an error, as is any length that runs past the end. Format 1 (one frame, no frame
records) is still read.
"""

import hashlib
import io
import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import BinaryIO

from . import compact
from .compact import varint
from .errors import BadArchiveError, UnsupportedFormatError

MAGIC = b"AZip"
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
WRITABLE_VERSIONS = (2, 3)
MODES = ("model", "raw")  # ranks under a model, or the back-end on the raw bytes
DTYPES = ("float32", "bfloat16")
# The writer's own limits, which the reader enforces before acting on a header or a frame: what
# a stranger's archive may ask of this machine (api.Settings refuses to write anything beyond).
MAX_TOP_K = 1 << 20
MAX_CONTEXT = 1 << 16  # tokens per chunk: longer than any built-in model's positions
MAX_BATCH = 1 << 12
MAX_THREADS = 1 << 10
MAX_FRAME_BYTES = 1 << 28  # what one frame decodes to: 256 times the default frame
MAX_CHUNKS = 1 << 20  # per frame: a 1 GiB frame at the default context has about 300,000
MAX_HEADER_BYTES, MAX_TEXT, MAX_VERSIONS = 1 << 16, 1 << 12, 16
HEADER_TYPES = {"mode": str, "backend": str, "model": str, "model_fingerprint": str, "dtype": str, "engine": str,
                "probe": str, "top_k": int, "context": int, "batch": int, "threads": int, "versions": dict}
HEADER_RANGES = {"top_k": (0, MAX_TOP_K), "context": (0, MAX_CONTEXT), "batch": (0, MAX_BATCH),
                 "threads": (0, MAX_THREADS)}
_FRAME, _END = 1, 0  # record tags after the header (format 2)
_TAGS = {1: "raw", 2: "model"}  # format 3's frame tags, which carry the frame's mode
_READ_PIECE = 1 << 24


@dataclass
class Header:
    """Settings an archive was packed with; decoding is a pure function of these."""

    mode: str  # "raw": every frame is raw; "model": frames may use the model named here
    backend: str
    model: str = ""  # name or path the archive was packed with (informative)
    model_fingerprint: str = ""  # weights + config + tokenizer; must match to decode
    dtype: str = ""
    engine: str = ""  # the inference path, e.g. "transformers-static-step" or "alphazip-llama-2"
    probe: str = ""  # invariant engines: fingerprint of the logits on a fixed input (the guard)
    top_k: int = 0
    context: int = 0  # tokens per chunk asked for; 0: the default (shorter chunks for small frames)
    batch: int = 0
    threads: int = 0
    versions: dict = field(default_factory=dict)  # libraries the float results depend on


@dataclass
class Frame:
    """One piece of the input, coded on its own: its chunk table and coded streams."""

    mode: str  # "model" or "raw"
    size: int  # bytes it decodes to
    chunk_tokens: list[int]
    chunk_crcs: list[int]  # of each chunk's bytes (format 1 and 2; empty in format 3)
    streams: list[bytes]
    crc: int | None = None  # of the bytes it decodes to (format 3)


@dataclass
class Archive:
    """An archive in memory: header, frames, and the original's identity."""

    header: Header
    frames: list[Frame]
    original_size: int
    original_sha256: bytes | None  # None where format 3 records none (an archive of one frame)

    @property
    def mode(self) -> str:
        """What the frames hold: "model", "raw", or "mixed" when some frames are raw."""
        modes = {frame.mode for frame in self.frames} or {self.header.mode}
        return modes.pop() if len(modes) == 1 else "mixed"


class ArchiveWriter:
    """Writes an archive to ``sink`` frame by frame: header now, each frame as it comes, trailer last."""

    def __init__(self, sink: BinaryIO, header: Header, version: int = FORMAT_VERSION):
        if version not in WRITABLE_VERSIONS:
            raise ValueError(f"cannot write format {version}; this build writes {WRITABLE_VERSIONS}")
        self.sink, self.version, self.crc, self.written, self.frames = sink, version, 0, 0, 0
        if version == 2:
            self._put(MAGIC + bytes([version]) + _header_bytes(header))
        else:
            compact_header = compact.header_bytes(header)
            self._put(MAGIC + bytes([version]) + varint(len(compact_header)) + compact_header)
        self._put(struct.pack("<I", self.crc))

    def add(self, frame: Frame) -> None:
        body = frame_bytes(frame, self.version)
        tag = _FRAME if self.version == 2 else next(t for t, mode in _TAGS.items() if mode == frame.mode)
        self._put(bytes([tag]) + varint(len(body)))
        self._put(body)
        self._put(struct.pack("<I", zlib.crc32(body)))
        if self.version == 3:
            self._put(struct.pack("<I", frame.crc))
        self.frames += 1

    def finish(self, original_size: int, original_sha256: bytes) -> int:
        """Write the trailer; the archive's size in bytes."""
        if self.version == 3:
            self._put(bytes([_END]) + (varint(original_size) + original_sha256 if self.frames > 1 else b""))
            return self.written
        self._put(struct.pack("<B", _END) + varint(original_size) + original_sha256)
        self.sink.write(struct.pack("<I", self.crc))
        return self.written + 4

    def _put(self, data: bytes) -> None:
        self.crc = zlib.crc32(data, self.crc)
        self.written += len(data)
        self.sink.write(data)


class ArchiveReader:
    """Reads an archive from ``source``: the header at once, frames one at a time.

    :meth:`frames` checks each frame's CRC-32 as it is read, and the trailer (size, digest,
    CRC-32 over everything, nothing after it) once the last frame was taken.
    """

    def __init__(self, source: BinaryIO):
        self._in = _Reader(source)
        magic = self._in.source.read(len(MAGIC))
        if magic != MAGIC:
            raise BadArchiveError(f"not an alphazip archive (magic {magic[:4]!r})")
        self._in.crc = zlib.crc32(magic)
        (self.version,) = self._in.unpack("<B")
        if self.version not in READABLE_VERSIONS:
            raise UnsupportedFormatError(f"archive format version {self.version} is not supported "
                                         f"(this build reads {', '.join(map(str, READABLE_VERSIONS))})")
        if self.version == 1:  # one frame in a fixed layout: read it whole
            self._legacy = _read_version_1(self._in.take_rest())
            self.header = self._legacy.header
        else:
            length = self._in.unpack("<I")[0] if self.version == 2 else self._in.varint()
            raw = self._in.take(_header_length(length))
            expected = self._in.crc
            if self._in.unpack("<I")[0] != expected:
                raise BadArchiveError("archive header is corrupt (CRC-32 mismatch)")
            self.header = _parse_header(raw) if self.version == 2 else _parse_compact_header(raw)
        self.original_size: int | None = None  # known once every frame was read
        self.original_sha256: bytes | None = None

    def frames(self) -> Iterator[Frame]:
        if self.version == 1:
            yield from self._legacy.frames
            self.original_size, self.original_sha256 = self._legacy.original_size, self._legacy.original_sha256
            return
        if self.version == 3:
            yield from self._compact_frames()
            return
        while True:
            (tag,) = self._in.unpack("<B")
            if tag == _END:
                break
            if tag != _FRAME:
                raise BadArchiveError(f"archive is corrupt (record tag {tag})")
            body = self._in.take(self._in.varint())
            if self._in.unpack("<I")[0] != zlib.crc32(body):
                raise BadArchiveError("archive is corrupt (a frame fails its CRC-32)")
            yield _parse_frame(body)
        self.original_size = self._in.varint()
        self.original_sha256 = self._in.take(32)
        expected = self._in.crc
        if self._in.unpack("<I")[0] != expected:
            raise BadArchiveError("archive is corrupt (CRC-32 mismatch)")
        self._no_junk()

    def _compact_frames(self) -> Iterator[Frame]:
        count, size = 0, 0
        while (tag := self._in.unpack("<B")[0]) != _END:
            if tag not in _TAGS:
                raise BadArchiveError(f"archive is corrupt (record tag {tag})")
            body = self._in.take(self._in.varint())
            body_crc, data_crc = self._in.unpack("<II")
            if body_crc != zlib.crc32(body):
                raise BadArchiveError("archive is corrupt (a frame fails its CRC-32)")
            frame = _parse_compact_frame(_TAGS[tag], body, data_crc)
            count, size = count + 1, size + frame.size
            yield frame
        if count > 1:
            self.original_size, self.original_sha256 = self._in.varint(), self._in.take(32)
        else:
            self.original_size, self.original_sha256 = size, None
        self._no_junk()

    def _no_junk(self) -> None:
        junk = self._in.count_rest()
        if junk:
            raise BadArchiveError(f"{junk} bytes of trailing junk after the archive")


def write(archive: Archive, version: int = FORMAT_VERSION) -> bytes:
    """Serialize ``archive`` to the bytes of a .az file (of format ``version``)."""
    out = io.BytesIO()
    writer = ArchiveWriter(out, archive.header, version)
    for frame in archive.frames:
        writer.add(frame)
    writer.finish(archive.original_size, archive.original_sha256)
    return out.getvalue()


def read(blob: bytes) -> Archive:
    """Parse and validate a whole .az file; :class:`BadArchiveError` says what is wrong."""
    reader = ArchiveReader(io.BytesIO(blob))
    frames = list(reader.frames())
    return Archive(reader.header, frames, reader.original_size, reader.original_sha256)


def original_identity(data: bytes) -> tuple[int, bytes]:
    """Size and SHA-256 of original data, as the trailer records them."""
    return len(data), hashlib.sha256(data).digest()


def _header_bytes(header: Header) -> bytes:
    # Only fields that differ from their defaults: a raw archive's header stays a few bytes.
    defaults = asdict(Header(mode=header.mode, backend=header.backend))
    fields = {k: v for k, v in asdict(header).items() if k in ("mode", "backend") or v != defaults[k]}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    return struct.pack("<I", len(text)) + text


def frame_bytes(frame: Frame, version: int = FORMAT_VERSION) -> bytes:
    """A frame's body as the archive stores it (its length is what the frame costs)."""
    if version == 3:
        return _compact_frame_bytes(frame)
    parts = [struct.pack("<B", MODES.index(frame.mode) ^ 1), varint(frame.size), varint(len(frame.chunk_tokens))]
    for tokens, crc in zip(frame.chunk_tokens, frame.chunk_crcs, strict=True):
        parts += [varint(tokens), struct.pack("<I", crc)]
    parts.append(varint(len(frame.streams)))
    for stream in frame.streams:
        parts += [varint(len(stream)), stream]
    return b"".join(parts)


def _compact_frame_bytes(frame: Frame) -> bytes:
    if frame.mode == "raw":
        return varint(frame.size) + frame.streams[0]
    total, length = sum(frame.chunk_tokens), frame.chunk_tokens[0] if frame.chunk_tokens else 0
    if frame.chunk_tokens != regular_chunks(total, length):
        raise ValueError("format 3 stores chunks of one length (the last may be shorter)")
    symbols, escapes = frame.streams
    return b"".join([varint(frame.size), varint(total), varint(length), varint(len(symbols)), symbols, escapes])


def regular_chunks(total: int, length: int) -> list[int]:
    """Token counts of ``total`` tokens cut into chunks of ``length``: the last holds the rest."""
    if total == 0:
        return []
    if length < 1 or -(-total // length) > MAX_CHUNKS:
        raise BadArchiveError(f"archive is corrupt ({total} tokens in chunks of {length})")
    return [length] * (total // length) + ([total % length] if total % length else [])


def _parse_compact_frame(mode: str, body: bytes, data_crc: int) -> Frame:
    reader = compact.ByteReader(body)
    size = reader.varint()
    if mode == "raw":
        frame = Frame("raw", size, [], [], [reader.rest()], data_crc)
    else:
        total, length = reader.varint(), reader.varint()
        if total > size:  # before the chunk list is made: every token is at least one byte
            raise BadArchiveError(f"archive is corrupt ({total} tokens in a frame of {size} bytes)")
        symbols = reader.take(reader.varint())
        frame = Frame("model", size, regular_chunks(total, length), [], [symbols, reader.rest()], data_crc)
    check_frame(frame)
    return frame


def _parse_frame(body: bytes) -> Frame:
    reader = _Reader(io.BytesIO(body))
    (mode,) = reader.unpack("<B")
    if mode > 1:
        raise BadArchiveError(f"archive is corrupt (frame mode {mode})")
    size = reader.varint()
    table = [(reader.varint(), reader.unpack("<I")[0]) for _ in range(reader.varint())]
    streams = [reader.take(reader.varint()) for _ in range(reader.varint())]
    if reader.take_rest():
        raise BadArchiveError("archive is corrupt (bytes after a frame's last stream)")
    frame = Frame(MODES[mode ^ 1], size, [n for n, _ in table], [c for _, c in table], streams)
    check_frame(frame)
    return frame


def check_frame(frame: Frame) -> None:
    """Refuse a frame whose sizes contradict each other: every token stands for at least one
    byte, a raw frame is one stream, a model frame two (symbols and escaped ids)."""
    if frame.size > MAX_FRAME_BYTES or len(frame.chunk_tokens) > MAX_CHUNKS:
        raise BadArchiveError(f"archive is corrupt (a frame of {frame.size} bytes in {len(frame.chunk_tokens)} chunks; "
                              f"the most is {MAX_FRAME_BYTES} bytes, {MAX_CHUNKS} chunks)")
    if frame.mode == "raw":
        if frame.chunk_tokens or len(frame.streams) != 1:
            raise BadArchiveError("archive is corrupt (a raw frame must hold one stream and no chunks)")
        return
    if len(frame.streams) != 2:
        raise BadArchiveError(f"archive is corrupt (a model frame holds {len(frame.streams)} streams, not 2)")
    if not all(0 < tokens <= MAX_CONTEXT for tokens in frame.chunk_tokens):
        raise BadArchiveError("archive is corrupt (a chunk's token count is out of range)")
    if sum(frame.chunk_tokens) > frame.size:
        raise BadArchiveError(f"archive is corrupt ({sum(frame.chunk_tokens)} tokens in a frame of {frame.size} bytes)")


def _read_version_1(rest: bytes) -> Archive:
    """Format 1: header, chunk table, streams, trailer, CRC over all of it including magic and version."""
    reader = _Reader(io.BytesIO(rest))
    reader.crc = zlib.crc32(MAGIC + b"\x01")
    header = _parse_header(reader.take(_header_length(reader.unpack("<I")[0])))
    table = [reader.unpack("<II") for _ in range(reader.unpack("<I")[0])]
    streams = [reader.take(reader.unpack("<Q")[0]) for _ in range(reader.unpack("<B")[0])]
    (size,) = reader.unpack("<Q")
    digest = reader.take(32)
    expected = reader.crc
    (crc,) = reader.unpack("<I")
    junk = reader.count_rest()
    if junk:
        raise BadArchiveError(f"{junk} bytes of trailing junk after the archive")
    if crc != expected:
        raise BadArchiveError("archive is corrupt (CRC-32 mismatch)")
    frame = Frame(header.mode, size, [n for n, _ in table], [c for _, c in table], streams)
    check_frame(frame)
    return Archive(header, [frame], size, digest)


def _header_length(length: int) -> int:
    if length > MAX_HEADER_BYTES:
        raise BadArchiveError(f"archive header is corrupt ({length} bytes long; the most is {MAX_HEADER_BYTES})")
    return length


def _parse_compact_header(raw: bytes) -> Header:
    header = compact.parse_header(raw, Header)
    check_header(header)
    return header


def _parse_header(raw: bytes) -> Header:
    try:
        fields = json.loads(raw.decode())
        header = Header(**fields)
    except (ValueError, TypeError, RecursionError) as exc:
        raise BadArchiveError(f"archive header is corrupt ({exc})") from None
    check_header(header)
    return header


def check_header(header: Header) -> None:
    """Refuse any value the writer could not have written, before anything acts on it."""
    if header.mode not in MODES:
        raise UnsupportedFormatError(f"unknown archive mode {header.mode!r}")
    for name, kind in HEADER_TYPES.items():
        value = getattr(header, name)
        if type(value) is not kind:  # not isinstance: True is an int, and must not pass for one
            raise BadArchiveError(f"archive header is corrupt ({name} is {type(value).__name__}, not {kind.__name__})")
    for name, (low, high) in HEADER_RANGES.items():
        value = getattr(header, name)
        if not low <= value <= high:
            raise BadArchiveError(f"archive header is corrupt ({name} {value} is outside {low}..{high})")
    texts = [header.backend, header.model, header.dtype, header.engine, *header.versions, *header.versions.values()]
    if any(type(text) is not str or len(text) > MAX_TEXT for text in texts) or len(header.versions) > MAX_VERSIONS:
        raise BadArchiveError("archive header is corrupt (a name is too long or not text)")
    if header.mode == "model":
        _check_model_header(header)


def _check_model_header(header: Header) -> None:
    if not _is_digest(header.model_fingerprint) or not (header.probe == "" or _is_digest(header.probe)):
        raise BadArchiveError("archive header is corrupt (the model's fingerprint or probe is not a sha256)")
    if header.top_k < 1 or header.batch < 1:
        raise BadArchiveError("archive header is corrupt (top_k and batch must be at least 1)")
    if header.dtype not in DTYPES:
        raise UnsupportedFormatError(f"archive asks for dtype {header.dtype!r}; this build knows {', '.join(DTYPES)}")


def _is_digest(text: str) -> bool:
    """A sha256 in hex, or (in format 3) its first 16 digits."""
    return len(text) in (64, compact.PREFIX_HEX) and all(char in "0123456789abcdef" for char in text)


class _Reader:
    """Bounds-checked reads from a stream, with a running CRC-32: a short read means truncation."""

    def __init__(self, source: BinaryIO):
        self.source, self.crc = source, 0

    def take(self, size: int) -> bytes:
        # In pieces: a corrupt length must not make one read allocate its exabytes up front.
        pieces, wanted = [], size
        while wanted:
            piece = self.source.read(min(wanted, _READ_PIECE))
            if not piece:
                raise BadArchiveError("archive is truncated")
            pieces.append(piece)
            wanted -= len(piece)
        data = b"".join(pieces)
        self.crc = zlib.crc32(data, self.crc)
        return data

    def take_rest(self) -> bytes:
        return self.source.read()

    def count_rest(self) -> int:
        """Bytes left, counted in pieces (trailing junk on a pipe need not fit in memory)."""
        count = 0
        while piece := self.source.read(_READ_PIECE):
            count += len(piece)
        return count

    def unpack(self, layout: str) -> tuple:
        return struct.unpack(layout, self.take(struct.calcsize(layout)))

    def varint(self) -> int:
        value = 0
        for shift in range(0, 64, 7):
            (byte,) = self.take(1)
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise BadArchiveError("archive is corrupt (a length runs past 64 bits)")
