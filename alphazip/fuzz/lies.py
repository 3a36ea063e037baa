"""Lies a forger tells in the frames, tables and counts of an archive whose CRCs are all valid.

Each lie edits a :class:`Draft` (a copy of a seed's archive and the bytes each frame stands for,
written in the seed's format, 2 or 3) and returns a label and the outputs that stay right: the
new content where the lie keeps the archive consistent (frames repeated, reordered, dropped,
with a trailer to match), else () because an archive that contradicts itself must be refused,
whatever it decodes to. Format 3 holds less (no chunk table, no chunk CRCs, no trailer for one
frame), so a lie that format cannot hold is told where it can be: in the frame's CRC, or in a
trailer that should not be there. Byte-level lies of format 3 are in :mod:`.format3`.
"""

import copy
import hashlib
import random
import zlib
from dataclasses import dataclass

from .. import container
from ..container import Archive, Frame
from . import forgery
from .bombs import bomb, zeros
from .headers import hostile_fields, raw_header

HUGE = (10**7, 2**31, 2**32 - 1, 2**32, 2**63, 2**64 - 1, 2**64 + 5, 2**70 - 1)


@dataclass
class Draft:
    """A seed's archive, copied for a forger to edit, and the bytes each frame stands for."""

    archive: Archive
    pieces: list[bytes]
    version: int  # the format it is written in (2 or 3)
    sha_trailer: bool | None = None  # format 3: whether the trailer holds size and SHA (None: as the writer does)
    seed_frames: int = 0

    @classmethod
    def of(cls, seed) -> "Draft":
        return cls(copy.deepcopy(seed.archive), list(seed.pieces), seed.version, seed_frames=len(seed.pieces))

    def settle(self) -> tuple[bytes]:
        """Make the trailer match the pieces, as an honest writer would; the right output."""
        data = b"".join(self.pieces)
        self.archive.original_size, self.archive.original_sha256 = container.original_identity(data)
        self.sha_trailer = None
        return (data,)

    def keep_trailer(self) -> None:
        """Leave the trailer as the seed had it, whatever the frames now are (format 3 wrote the
        size and SHA-256 only for more than one frame)."""
        if self.version == 3 and self.sha_trailer is None:
            self.sha_trailer = self.seed_frames > 1

    def pick(self, rng: random.Random, mode: str | None = None) -> Frame | None:
        """A frame at random (of ``mode`` if given; None when there is none)."""
        frames = [f for f in self.archive.frames if mode is None or f.mode == mode]
        return rng.choice(frames) if frames else None

    def write(self) -> bytes:
        return forgery.write_archive(self.archive, self.version, sha_trailer=self.sha_trailer)

    @property
    def one_frame_v3(self) -> bool:
        """Format 3 records no trailer for one frame: lies about it must go into one that is there."""
        return self.version == 3 and len(self.archive.frames) == 1


def other_value(rng: random.Random, true: int, choices) -> int:
    """A value from ``choices`` that differs from ``true``."""
    return rng.choice([value for value in choices if value != true] or [true + 1])


def size_lie(rng, draft, seeds):
    frame = draft.pick(rng)
    frame.size = other_value(rng, frame.size, (0, 1, frame.size - 1, frame.size + 1, 1 << 30, (1 << 30) + 1, *HUGE))
    if rng.random() < 0.5:
        draft.archive.original_size = sum(f.size for f in draft.archive.frames)
    return f"frame size {frame.size}", ()


def total_lie(rng, draft, seeds):
    true = draft.archive.original_size
    draft.archive.original_size = other_value(rng, true, (0, 1, true - 1, true + 1, *HUGE))
    return f"original size {draft.archive.original_size}{_forced_trailer(draft)}", ()


def digest_lie(rng, draft, seeds):
    true = draft.archive.original_sha256
    forged = (bytes(32), b"\xff" * 32, hashlib.sha256(b"").digest(), hashlib.sha256(seeds.all[0].original).digest())
    draft.archive.original_sha256 = rng.choice([digest for digest in forged if digest != true])
    return f"original SHA-256{_forced_trailer(draft)}", ()


def _forced_trailer(draft) -> str:
    """A one-frame format-3 archive has no size or SHA to lie in: write a trailer that has them."""
    if not draft.one_frame_v3:
        return ""
    draft.sha_trailer = True
    return " in a one-frame trailer"


def tokens_lie(rng, draft, seeds):
    frame = draft.pick(rng, "model")
    if frame is None or not frame.chunk_tokens:
        return size_lie(rng, draft, seeds)
    at = rng.randrange(len(frame.chunk_tokens))
    true = frame.chunk_tokens[at]
    frame.chunk_tokens[at] = other_value(rng, true, (0, 1, true - 1, true + 1, 33, 512, 513, 1 << 16, *HUGE))
    return f"chunk {at} of {frame.chunk_tokens[at]} tokens", ()


def extra_chunks(rng, draft, seeds):
    """Chunks added to a table: empty ones with the CRC of nothing are consistent (if odd)."""
    frame = draft.pick(rng, "model") or draft.pick(rng)
    count, tokens = rng.choice((1, 10, 10_000)), rng.choice((0, 0, 1, 32))
    crc = 0 if tokens == 0 or rng.random() < 0.5 else rng.getrandbits(32)  # crc32(b"") is 0
    at = rng.randrange(len(frame.chunk_tokens) + 1)
    frame.chunk_tokens[at:at] = [tokens] * count
    frame.chunk_crcs[at:at] = [crc] * count
    consistent = tokens == 0 and crc == 0 and frame.mode == "model"
    return f"{count} extra chunks of {tokens} tokens", draft.settle() if consistent else ()


def merged_chunks(rng, draft, seeds):
    """One chunk where the writer made several, with the CRC of all their bytes: consistent, but
    the model sees other contexts, so decoding almost surely fails its CRC."""
    frame = draft.pick(rng, "model")
    if frame is None:
        return crc_lie(rng, draft, seeds)
    index = draft.archive.frames.index(frame)
    frame.chunk_tokens, frame.chunk_crcs = [sum(frame.chunk_tokens)], [zlib.crc32(draft.pieces[index])]
    return "chunks merged into one", draft.settle()


def crc_lie(rng, draft, seeds):
    if draft.version == 3:  # one CRC-32 per frame, of its decoded bytes
        frame = draft.pick(rng)
        frame.crc ^= 1 << rng.randrange(32)
        return f"{frame.mode} frame's CRC", ()
    frame = draft.pick(rng, "model")
    if frame is None or not frame.chunk_crcs:
        return digest_lie(rng, draft, seeds)
    at = rng.randrange(len(frame.chunk_crcs))
    frame.chunk_crcs[at] ^= 1 << rng.randrange(32)
    return f"chunk {at}'s CRC", ()


def streams_lie(rng, draft, seeds):
    frame = draft.pick(rng)
    streams = frame.streams
    lie = rng.choice(("none", "one fewer", "an empty one more", "a junk one more", "repeated", "swapped",
                      "from another back-end", "emptied"))
    if lie == "none":
        frame.streams = []
    elif lie == "one fewer" and draft.version == 3 and frame.mode == "raw":
        lie, frame.streams = "emptied", [b""]
    elif lie == "one fewer":
        frame.streams = streams[:-1]
    elif lie in ("an empty one more", "a junk one more", "repeated"):
        frame.streams = streams + [{"repeated": streams[-1], "an empty one more": b""}.get(lie, rng.randbytes(20))]
    elif lie == "swapped" and len(set(streams)) > 1:
        frame.streams = streams[::-1]
    elif lie == "from another back-end":
        donor = rng.choice([s for s in seeds.framed if s.archive.frames and s.archive.header.backend
                            != draft.archive.header.backend])
        frame.streams = list(donor.archive.frames[0].streams)
    else:
        lie = "emptied"
        frame.streams = [b""] * len(streams)
    return f"{frame.mode} frame's streams {lie}", ()


def mode_lie(rng, draft, seeds):
    frame = draft.pick(rng)
    frame.mode = "raw" if frame.mode == "model" else "model"
    return f"frame marked {frame.mode}", ()


def repeated_frames(rng, draft, seeds):
    index = rng.randrange(len(draft.archive.frames))
    count = rng.choice((1, 2, 5))  # more would only measure how fast valid frames decode
    draft.archive.frames[index + 1:index + 1] = [draft.archive.frames[index]] * count
    draft.pieces[index + 1:index + 1] = [draft.pieces[index]] * count
    if rng.random() < 0.3:
        draft.keep_trailer()
        return f"frame {index} repeated {count} times, trailer unchanged", ()
    return f"frame {index} repeated {count} times", draft.settle()


def dropped_frames(rng, draft, seeds):
    keep = rng.randrange(len(draft.archive.frames))
    draft.keep_trailer()
    draft.archive.frames, draft.pieces = draft.archive.frames[:keep], draft.pieces[:keep]
    if rng.random() < 0.3:
        if draft.version == 3 and not draft.sha_trailer and keep < 2:  # format 3's trailer of one frame
            return f"frames after {keep} dropped, trailer unchanged (none)", draft.settle()  # says nothing
        return f"frames after {keep} dropped, trailer unchanged", ()
    return f"frames after {keep} dropped", draft.settle()


def reordered_frames(rng, draft, seeds):
    order = list(range(len(draft.archive.frames)))
    rng.shuffle(order)
    draft.archive.frames = [draft.archive.frames[i] for i in order]
    draft.pieces = [draft.pieces[i] for i in order]
    return f"frames in order {order}", draft.settle()


def bomb_stream(rng, draft, seeds):
    """A stream replaced by a payload that expands to gigabytes (or, for Huffman, to millions of
    symbols), the frame's size left as it was or made to claim the bomb's size."""
    backend = draft.archive.header.backend
    frame = draft.pick(rng)
    at = rng.randrange(len(frame.streams))
    alphabet = 256 if frame.mode == "raw" else (65536 if at == 0 else seeds.id_space)
    frame.streams[at] = bomb(backend, alphabet)
    if rng.random() < 0.3:
        frame.size = rng.choice((1 << 20, 1 << 30, 2**40))
    return f"{backend} bomb in {frame.mode} stream {at}, frame size {frame.size}", ()


def frame_at_limits(rng, draft, seeds):
    """A model frame of chunks of 65,536 tokens (the most a header's context may ask for), its
    symbols a bomb of exactly that many zeros: 16,384 chunks (1 GiB, past MAX_FRAME_BYTES) or
    4,096 (256 MiB, at it), under the seed's context or one raised to fit. The CRCs lie (the
    forger cannot know them); a reader must refuse it without first allocating for a quarter
    of a billion symbols, or for all of them."""
    tokens, chunks = 1 << 16, rng.choice((1 << 14, container.MAX_FRAME_BYTES >> 16))
    backend = draft.archive.header.backend
    symbols = zeros(backend, tokens * chunks)
    streams = [symbols, zeros(backend, 0)]
    draft.archive.frames = [Frame("model", tokens * chunks, [tokens] * chunks, [0] * chunks, streams, 0)]
    if rng.random() < 0.5:
        draft.archive.header.context = tokens
    return f"frame of {chunks} chunks of {tokens} tokens, {backend}, context {draft.archive.header.context}", ()


def raw_at_limit(rng, draft, seeds):
    """A raw frame of MAX_FRAME_BYTES zeros (a small payload), its CRC-32 the seed's: the reader
    may expand it (within its memory limit) but must then refuse it."""
    backend = draft.archive.header.backend
    size = container.MAX_FRAME_BYTES + rng.choice((0, 0, 1))
    draft.archive.frames = [Frame("raw", size, [], [], [zeros(backend, size)], draft.archive.frames[0].crc)]
    return f"raw frame of {size} zeros, {backend}", ()


def honest_zeros(rng, draft, seeds):
    """The control for bombs: one raw frame of 1 MiB of zeros, as small a payload, consistent."""
    backend = draft.archive.header.backend
    draft.archive.frames = [Frame("raw", 1 << 20, [], [], [zeros(backend, 1 << 20)], zlib.crc32(bytes(1 << 20)))]
    draft.pieces = [bytes(1 << 20)]
    return f"{backend} payload of 1 MiB of zeros", draft.settle()


FRAME_LIES = {lie.__name__: lie for lie in (
    size_lie, total_lie, digest_lie, tokens_lie, extra_chunks, merged_chunks, crc_lie, streams_lie, mode_lie,
    repeated_frames, dropped_frames, reordered_frames)}


def byte_lie(rng: random.Random, seed) -> tuple[bytes, str, tuple]:
    """A format-2 archive whose counts, lengths, tags or varints lie at the byte level (where the
    dataclasses cannot say it); CRCs valid. Returns (archive, label, right outputs)."""
    parts = forgery.split(seed.blob)
    header, bodies, end = parts.header, parts.bodies, parts.end
    frames = seed.archive.frames
    at = rng.randrange(len(bodies)) if bodies else None
    records = [forgery.frame_record(body) for body in bodies]
    lie = rng.choice(sorted(_BYTE_LIES if at is not None else _ARCHIVE_LIES))
    if lie in _BYTE_LIES:
        records[at], right = _BYTE_LIES[lie](rng, frames[at], bodies[at])
        return forgery.write_version_2(header, records, end), f"frame {at}: {lie}", right((seed.original,))
    return _ARCHIVE_LIES[lie](rng, header, records, end), lie, ()


def _overlong(value: int, extra: int) -> bytes:
    """LEB128 of ``value`` padded with ``extra`` redundant groups (not minimal, same value)."""
    groups = bytearray(forgery.leb128(value))
    groups[-1] |= 0x80
    return bytes(groups) + b"\x80" * (extra - 1) + b"\x00"


def _record(body: bytes, length: bytes) -> bytes:
    return b"\x01" + length + body + zlib.crc32(body).to_bytes(4, "little")


_INCONSISTENT = lambda right: ()  # noqa: E731 - the lie leaves no output right
_CONSISTENT = lambda right: right  # noqa: E731
_BYTE_LIES = {
    "record length off": lambda rng, f, b: (forgery.frame_record(b, len(b) + rng.choice((-1, 1, 7))), _INCONSISTENT),
    "record length huge": lambda rng, f, b: (forgery.frame_record(b, rng.choice(HUGE)), _INCONSISTENT),
    "record length past 64 bits": lambda rng, f, b: (_record(b, b"\xff" * 10 + b"\x01"), _INCONSISTENT),
    "record length not minimal": lambda rng, f, b: (_record(b, _overlong(len(b), rng.choice((1, 3)))), _CONSISTENT),
    "chunk count lies": lambda rng, f, b: (forgery.frame_record(forgery.frame_body(
        f, chunk_count=other_value(rng, len(f.chunk_tokens), (0, len(f.chunk_tokens) + 1, 10**6, 2**62)))),
        _INCONSISTENT),
    "stream count lies": lambda rng, f, b: (forgery.frame_record(forgery.frame_body(
        f, stream_count=other_value(rng, len(f.streams), (0, 1, 3, 255, 2**40)))), _INCONSISTENT),
    "stream length lies": lambda rng, f, b: (forgery.frame_record(forgery.frame_body(
        f, stream_lengths=[other_value(rng, len(s), (0, len(s) - 1, len(s) + 1, 2**63)) for s in f.streams])),
        _INCONSISTENT),
    "100000 empty streams": lambda rng, f, b: (forgery.frame_record(forgery.frame_body(
        Frame(f.mode, f.size, f.chunk_tokens, f.chunk_crcs, f.streams + [b""] * 100_000))), _INCONSISTENT),
    "100000 empty chunks": lambda rng, f, b: (forgery.frame_record(forgery.frame_body(
        Frame(f.mode, f.size, f.chunk_tokens + [0] * 100_000, f.chunk_crcs + [0] * 100_000, f.streams))),
        _CONSISTENT if f.mode == "model" else _INCONSISTENT),
    "junk after the streams": lambda rng, f, b: (forgery.frame_record(forgery.frame_body(
        f, tail=rng.choice((b"\x00", rng.randbytes(9))))), _INCONSISTENT),
    "mode byte": lambda rng, f, b: (forgery.frame_record(forgery.frame_body(
        f, mode=rng.choice((2, 0x7F, 0x80, 0xFF)))), _INCONSISTENT),
    "record tag": lambda rng, f, b: (forgery.frame_record(b, tag=rng.choice((2, 0x80, 0xFF))), _INCONSISTENT),
    "size past 64 bits": lambda rng, f, b: (forgery.frame_record(b[:1] + b"\xff" * 10 + b"\x01" + b[
        1 + len(forgery.leb128(f.size)):]), _INCONSISTENT),
}
_ARCHIVE_LIES = {
    "header length off": lambda rng, h, r, e: forgery.write_version_2(h, r, e, header_length=len(h) + rng.choice(
        (-1, 1, -len(h)))),
    "header length huge": lambda rng, h, r, e: forgery.write_version_2(h, r, e, header_length=rng.choice(
        ((1 << 16) + 1, 1 << 24, 2**32 - 1))),
    "version byte": lambda rng, h, r, e: forgery.write_version_2(h, r, e, version=rng.choice((0, 3, 0x80, 0xFF))),
    "junk after the end": lambda rng, h, r, e: forgery.write_version_2(h, r, e, junk=rng.choice(
        (b"\x00", b"AZip\x02", rng.randbytes(100)))),
    "end tag": lambda rng, h, r, e: forgery.write_version_2(h, r, bytes([rng.choice((2, 0x80, 0xFF))]) + e[1:]),
    "trailer size huge": lambda rng, h, r, e: forgery.write_version_2(h, r, forgery.trailer(
        rng.choice(HUGE), e[-32:])),
    "trailer size past 64 bits": lambda rng, h, r, e: forgery.write_version_2(h, r, b"\x00" + b"\xff" * 10 + b"\x01"
                                                                               + e[-32:]),
    "no end record": lambda rng, h, r, e: forgery.write_version_2(h, r, b""),
    "frame after the end": lambda rng, h, r, e: forgery.write_version_2(h, r, e + (r[0] if r else b"\x01\x00")),
}


def version_1_lie(rng: random.Random, seed) -> tuple[bytes, str, tuple]:
    """A format-1 archive (fixed-width fields, one CRC over all) whose counts, sizes or table lie,
    or whose header is hostile; returns (archive, label, right outputs)."""
    frame, header = copy.deepcopy(seed.archive.frames[0]), forgery.header_fields(seed.archive.header)
    size, sha = seed.archive.original_size, seed.archive.original_sha256
    lie = rng.choice(("valid", "header", "header", "raw header", "chunk count", "stream count", "stream length",
                      "size", "tokens", "crc", "digest", "bomb"))
    keywords, right = {}, ()
    if lie == "valid":
        right = (seed.original,)
    elif lie in ("header", "raw header"):
        header, lie = hostile_fields(rng, header) if lie == "header" else raw_header(rng, header)
        right = (seed.original,)
    elif lie == "chunk count":
        keywords["chunk_count"] = other_value(rng, len(frame.chunk_tokens), (0, len(frame.chunk_tokens) + 1, 2**32 - 1))
    elif lie == "stream count":
        keywords["stream_count"] = other_value(rng, len(frame.streams), (0, 1, 2, 3, 255))
    elif lie == "stream length":
        keywords["stream_lengths"] = [other_value(rng, len(s), (0, len(s) + 1, 2**63, 2**64 - 1))
                                      for s in frame.streams]
    elif lie == "size":
        size = other_value(rng, size, (0, size - 1, size + 1, 10**15, 2**64 - 1))
    elif lie == "tokens" and frame.chunk_tokens:
        frame.chunk_tokens[0] = other_value(rng, frame.chunk_tokens[0], (0, 1, 10**7, 2**32 - 1))
    elif lie == "crc" and frame.chunk_crcs:
        frame.chunk_crcs[0] ^= 1
    elif lie == "bomb":
        frame.streams[0] = bomb(seed.archive.header.backend, 256 if frame.mode == "raw" else 65536)
    else:
        lie, sha = "digest", bytes(32)
    return forgery.write_version_1(header, frame, size, sha, **keywords), f"v1 {lie}", right
