"""Hostile format-3 archives: compact headers no writer makes, and frame records that lie.

A compact header is a flags byte and fields the flags call for (see ``alphazip.compact``), so
it is forged here field by field: ids this build does not know, settings on a raw archive's
header, fields cut short or followed by junk, varints past every limit, and every combination
of the flag bits over the same fields. Frame records lie in their tags, lengths, token counts,
chunk lengths, symbol lengths and sizes, and the trailer in its size, its SHA-256, or by being
there for one frame and missing for several. Every CRC is valid; the CRC-32 of a frame's
decoded bytes is the true one, so a frame decodes to its piece or is refused.

Right outputs: a header that still names the seed's frames can only give the seed's original
(its frames' CRCs decide), so hostile headers expect it; an archive that contradicts itself
(junk after a field, a count past its record) expects nothing.
"""

import random
from dataclasses import dataclass, replace

from .. import compact, container
from . import forgery
from .lies import HUGE, other_value

_MODEL, _SETTINGS, _BUILTIN, _PROBE = 0x10, 0x20, 0x40, 0x80
_PREFIX = compact.PREFIX_HEX // 2
_LOCKSTEP = compact.ENGINE_IDS.index(compact.LOCKSTEP_ENGINE)
_PAST_64_BITS = b"\xff" * 10 + b"\x01"
# Varint values for top_k, context, batch and threads: both sides of each limit, and past them all.
_VARINTS = (0, 1, 2, 299, 300, 65535, 65536, 65537, container.MAX_TOP_K, container.MAX_TOP_K + 1,
            container.MAX_BATCH + 1, container.MAX_THREADS + 1, 2**32, 2**63, 2**64 - 1)
_THREADS = (0, 1, container.MAX_THREADS + 1, 2**32, 2**63, 2**64 - 1)
_SETTING_NAMES = ("top_k", "context", "batch", "threads")


@dataclass
class CompactHeader:
    """A compact header's fields as bytes and ints, each free to hold what no writer would."""

    flags: int
    model: bytes = b""  # a built-in id (one byte) or a fingerprint prefix (eight)
    ids: bytes = b""  # engine id, dtype id
    varints: tuple = ()  # top_k, context, and batch and threads for the lockstep engine
    probe: bytes = b""
    tail: bytes = b""  # junk no field calls for

    def bytes(self) -> bytes:
        fields = [forgery.leb128(v) if isinstance(v, int) else v for v in self.varints]
        return bytes([self.flags & 0xFF]) + self.model + self.ids + b"".join(fields) + self.probe + self.tail

    @classmethod
    def parse(cls, data: bytes) -> "CompactHeader":
        """The fields of a valid compact header (as ``compact.header_bytes`` writes it)."""
        flags, pos = data[0], 1
        header = cls(flags)
        if flags & _MODEL:
            width = 1 if flags & _BUILTIN else _PREFIX
            header.model, pos = data[pos:pos + width], pos + width
        if flags & _SETTINGS:
            header.ids, pos = data[pos:pos + 2], pos + 2
            varints = []
            for _ in range(4 if header.ids[0] == _LOCKSTEP else 2):
                value, pos = forgery._leb128_at(data, pos)
                varints.append(value)
            header.varints = tuple(varints)
        if flags & _PROBE:
            header.probe, pos = data[pos:pos + _PREFIX], pos + _PREFIX
        header.tail = data[pos:]
        return header


def hostile_header(rng: random.Random, seed) -> tuple[bytes, str, tuple, bool]:
    """A compact header edited to say what no writer would, in front of ``seed``'s frames;
    returns (archive, label, right outputs, whether to decode with the test model given)."""
    parts = forgery.split(seed.blob)
    true = CompactHeader.parse(parts.header)
    lie = rng.choice(sorted(_HEADER_LIES))
    raw, label = _HEADER_LIES[lie](rng, true)
    right = () if lie == "junk after the fields" else (seed.original,)
    # A built-in model is loaded only if the test model is not given: built-ins are not for fuzzing.
    override = rng.random() < 0.85 or bool(CompactHeader(raw[0] if raw else 0).flags & _BUILTIN)
    parts.header = raw
    return parts.write(), f"compact header {label}", right, override


def _unknown_backend(rng, true):
    flags = (true.flags & 0xF0) | rng.randrange(len(compact.BACKEND_IDS), 16)
    return replace(true, flags=flags).bytes(), f"back-end id {flags & 0x0F}"


def _unknown_ids(rng, true):
    engine, dtype = true.ids or bytes(2)
    which = rng.choice(("engine", "dtype"))
    if which == "engine":
        engine = rng.choice((len(compact.ENGINE_IDS), 0x7F, 0x80, 0xFF, *range(len(compact.ENGINE_IDS))))
    else:
        dtype = rng.choice((len(compact.DTYPE_IDS), 0x7F, 0xFF, 0, 1))
    varints = true.varints or (65535, 0)
    if engine == _LOCKSTEP and len(varints) == 2:  # the lockstep engine's two more fields
        varints += (rng.choice((0, 1, 2)), rng.choice((0, 1, 2)))
    elif engine != _LOCKSTEP:
        varints = varints[:2]
    header = replace(true, flags=true.flags | _MODEL | _SETTINGS, ids=bytes([engine, dtype]), varints=varints,
                     model=true.model or bytes(_PREFIX))
    return header.bytes(), f"{which} id {engine if which == 'engine' else dtype}"


def _builtin(rng, true):
    number = rng.choice((0, 1, 2, 3, 0x7F, 0xFF))
    flags = true.flags | _MODEL | _BUILTIN
    return replace(true, flags=flags, model=bytes([number])).bytes(), f"built-in model {number}"


def _raw_with_settings(rng, true):
    """A raw archive's flags with model-only bits set, and (or not) the fields they would call for."""
    bits = rng.choice((_SETTINGS, _BUILTIN, _PROBE, _SETTINGS | _PROBE, _SETTINGS | _BUILTIN | _PROBE))
    tail = rng.choice((b"", b"\x01", bytes(_PREFIX), b"\x00\x00\xff\xff\x03\x20"))
    return bytes([(true.flags & 0x0F) | bits]) + tail, f"raw flags {bits:#x} with {len(tail)} bytes after"


def _truncated(rng, true):
    data = true.bytes()
    at = rng.randrange(len(data))
    return data[:at], f"cut to {at} of {len(data)} bytes"


def _junk_after(rng, true):
    junk = rng.choice((b"\x00", b"\xff", rng.randbytes(rng.randrange(1, 10))))
    return replace(true, tail=true.tail + junk).bytes(), f"{len(junk)} junk bytes after the fields"


def _huge_setting(rng, true):
    """A setting's varint out of range, past 64 bits, or the true value not minimally encoded."""
    varints = list(true.varints or (65535, 0))
    ids = true.ids or bytes([0, 0])
    if rng.random() < 0.4 and len(varints) == 2:  # the lockstep engine: batch and threads too
        ids, varints = bytes([_LOCKSTEP, ids[1]]), varints + [1, 0]
    at = rng.randrange(len(varints))
    roll = rng.random()
    if roll < 0.15:
        varints[at], what = _PAST_64_BITS, "past 64 bits"
    else:
        # Threads within the limit are honest (the reader runs min(threads, cores)): on a loaded
        # machine they only measure contention, so threads get the values at and past the ends.
        choices = _THREADS if _SETTING_NAMES[at] == "threads" else _VARINTS + HUGE
        varints[at] = other_value(rng, varints[at], choices)
        what = str(varints[at])
    header = replace(true, flags=true.flags | _MODEL | _SETTINGS, ids=ids, varints=tuple(varints),
                     model=true.model or bytes(_PREFIX))
    return header.bytes(), f"{_SETTING_NAMES[at]} {what}"


def _overlong_setting(rng, true):
    if not true.varints:
        return _huge_setting(rng, true)
    varints = list(true.varints)
    at = rng.randrange(len(varints))
    groups = bytearray(forgery.leb128(varints[at]))
    groups[-1] |= 0x80
    varints[at] = bytes(groups) + b"\x80" * rng.choice((0, 2)) + b"\x00"
    return replace(true, varints=tuple(varints)).bytes(), f"{_SETTING_NAMES[at]} not minimally encoded"


def _flag_combination(rng, true):
    """The same fields under other flags (every combination of the four upper bits)."""
    bits = rng.randrange(16) << 4
    return bytes([(true.flags & 0x0F) | bits]) + true.bytes()[1:], f"flags {bits:#04x} over the fields"


def _fields_rebuilt(rng, true):
    """Each field the flags call for, present or not: the flags kept, one field dropped or doubled."""
    fields = ["model", "ids", "varints", "probe"]
    name = rng.choice(fields)
    value = getattr(true, name)
    doubled = value + value if not isinstance(value, tuple) else value + value
    header = replace(true, **{name: rng.choice((type(value)(), doubled))})
    return header.bytes(), f"{name} dropped or doubled"


_HEADER_LIES = {
    "back-end id": _unknown_backend, "engine or dtype id": _unknown_ids, "built-in model id": _builtin,
    "raw flags with settings": _raw_with_settings, "truncated": _truncated, "junk after the fields": _junk_after,
    "huge setting": _huge_setting, "overlong setting": _overlong_setting, "flag combination": _flag_combination,
    "field dropped or doubled": _fields_rebuilt,
}


def record_lie(rng: random.Random, seed) -> tuple[bytes, str, tuple]:
    """A format-3 archive whose records, lengths, counts or trailer lie at the byte level; CRCs
    valid. Returns (archive, label, right outputs)."""
    parts = forgery.split(seed.blob)
    frames = seed.archive.frames
    lies = _ARCHIVE_LIES | (_RECORD_LIES if frames else {})
    lie = rng.choice(sorted(lies))
    if lie in _RECORD_LIES:
        at = rng.randrange(len(frames))
        records = parts.records()
        records[at], consistent = _RECORD_LIES[lie](rng, frames[at], parts.bodies[at], parts.data_crcs[at])
        return parts.write(records), f"frame {at}: {lie}", (seed.original,) if consistent else ()
    blob, consistent = _ARCHIVE_LIES[lie](rng, parts, seed)
    return blob, lie, (seed.original,) if consistent else ()


def _model_only(lie):
    """A lie about a model frame's fields; on a raw frame, a lie about its size instead."""
    def told(rng, frame, body, crc):
        if frame.mode != "model":
            return _size_lie(rng, frame, body, crc)
        return lie(rng, frame, body, crc)
    return told


def _record(frame, crc, **keywords) -> bytes:
    return forgery.compact_record(forgery.compact_body(frame, **keywords), crc, tag=forgery.compact_tag(frame.mode))


def _size_lie(rng, frame, body, crc):
    size = other_value(rng, frame.size, (0, 1, frame.size - 1, frame.size + 1, container.MAX_FRAME_BYTES - 1,
                                         container.MAX_FRAME_BYTES, container.MAX_FRAME_BYTES + 1, *HUGE))
    return _record(frame, crc, size=size), False


def _tokens_past_size(rng, frame, body, crc):
    tokens = rng.choice((frame.size + 1, 2 * frame.size + 7, 2**32, 2**63))
    return _record(frame, crc, tokens=tokens), False


def _chunk_length(rng, frame, body, crc):
    """Chunks of another length: 0 (refused), past any context, or another valid cut (then the
    frame's CRC decides)."""
    true = frame.chunk_tokens[0] if frame.chunk_tokens else 0
    length = other_value(rng, true, (0, 0, 1, true - 1, true + 1, 2 * true, container.MAX_CONTEXT,
                                      container.MAX_CONTEXT + 1, *HUGE))
    # Another cut of the same tokens is a valid archive that decodes to other ranks: CRC-checked.
    return _record(frame, crc, length=length), 1 <= length


def _many_chunks(rng, frame, body, crc):
    """2**20 (MAX_CHUNKS) or 2**22 chunks of one token: the chunk list must stay unmade, or the
    symbols must run out before any decoding."""
    count = rng.choice((container.MAX_CHUNKS, container.MAX_CHUNKS + 1, 1 << 22))
    return _record(frame, crc, size=max(frame.size, count), tokens=count, length=1), False


def _symbols_length(rng, frame, body, crc):
    true = len(frame.streams[0])
    rest = len(frame.streams[1])
    length = other_value(rng, true, (0, true - 1, true + 1, true + rest, true + rest + 1, 2**31, 2**63))
    return _record(frame, crc, symbols_length=length), False


def _junk_in_body(rng, frame, body, crc):
    return _record(frame, crc, tail=rng.choice((b"\x00", rng.randbytes(9)))), False


def _tag(rng, frame, body, crc):
    tag = rng.choice((0, 3, 0x7F, 0x80, 0xFF, 3 - forgery.compact_tag(frame.mode)))
    return forgery.compact_record(body, crc, tag=tag), False


def _record_length(rng, frame, body, crc):
    length = rng.choice((len(body) - 1, len(body) + 1, len(body) + 8, *HUGE))
    return forgery.compact_record(body, crc, tag=forgery.compact_tag(frame.mode), length=length), False


def _record_length_encoding(rng, frame, body, crc):
    """The body's length past 64 bits (refused), or not minimally encoded (still true)."""
    record = forgery.compact_record(body, crc, tag=forgery.compact_tag(frame.mode))
    head = len(forgery.leb128(len(body)))
    if rng.random() < 0.5:
        return record[:1] + _PAST_64_BITS + record[1 + head:], False
    groups = bytearray(forgery.leb128(len(body)))
    groups[-1] |= 0x80
    return record[:1] + bytes(groups) + b"\x80" * rng.choice((0, 3)) + b"\x00" + record[1 + head:], True


def _size_encoding(rng, frame, body, crc):
    """The frame's size past 64 bits (refused), or not minimally encoded (still true)."""
    head = len(forgery.leb128(frame.size))
    if rng.random() < 0.5:
        return forgery.compact_record(_PAST_64_BITS + body[head:], crc, tag=forgery.compact_tag(frame.mode)), False
    groups = bytearray(forgery.leb128(frame.size))
    groups[-1] |= 0x80
    body = bytes(groups) + b"\x00" + body[head:]
    return forgery.compact_record(body, crc, tag=forgery.compact_tag(frame.mode)), True


def _data_crc(rng, frame, body, crc):
    return forgery.compact_record(body, crc ^ (1 << rng.randrange(32)), tag=forgery.compact_tag(frame.mode)), False


def _body_crc(rng, frame, body, crc):
    record = bytearray(forgery.compact_record(body, crc, tag=forgery.compact_tag(frame.mode)))
    record[-8 + rng.randrange(4)] ^= 1 << rng.randrange(8)
    return bytes(record), False


_RECORD_LIES = {
    "size": _size_lie, "tokens past the size": _model_only(_tokens_past_size),
    "chunk length": _model_only(_chunk_length), "many chunks of one token": _model_only(_many_chunks),
    "symbols length": _model_only(_symbols_length), "junk after the payloads": _junk_in_body, "tag": _tag,
    "record length": _record_length, "record length encoding": _record_length_encoding,
    "size encoding": _size_encoding, "data CRC": _data_crc, "body CRC": _body_crc,
}


def _trailer_sha(rng, parts, seed):
    """The size and SHA-256 where one frame needs none, or missing where several need them."""
    several = len(parts.bodies) > 1
    end = b"\x00" if several else forgery.compact_trailer(*_identity(seed), True)
    return parts.write(end=end), False


def _trailer_values(rng, parts, seed):
    """A trailer of several frames whose size or SHA-256 lies (one frame's has none: added)."""
    size, sha = _identity(seed)
    if rng.random() < 0.5:
        size = other_value(rng, size, (0, size - 1, size + 1, *HUGE))
    else:
        sha = bytes(32) if sha != bytes(32) else b"\xff" * 32
    return parts.write(end=forgery.compact_trailer(size, sha, True)), False


def _no_trailer(rng, parts, seed):
    return parts.write(end=b""), False


def _end_tag(rng, parts, seed):
    return parts.write(end=bytes([rng.choice((3, 0x80, 0xFF))]) + parts.end[1:]), False


def _junk_after_end(rng, parts, seed):
    return parts.write(junk=rng.choice((b"\x00", b"AZip\x03", rng.randbytes(40)))), False


def _frame_after_end(rng, parts, seed):
    records = parts.records()
    return parts.write(end=parts.end + (records[0] if records else b"\x01\x00")), False


def _header_length(rng, parts, seed):
    length = len(parts.header) + rng.choice((-1, 1, -len(parts.header), 1 << 16, (1 << 16) + 1, 2**63))
    return parts.write(header_length=max(length, 0)), False


def _header_length_encoding(rng, parts, seed):
    """The header length past 64 bits (refused) or not minimal (true): written by hand."""
    blob = parts.write()
    head = len(forgery.leb128(len(parts.header)))
    if rng.random() < 0.5:
        return blob[:5] + _PAST_64_BITS + blob[5 + head:], False
    forged = blob[:5] + bytes([len(parts.header) | 0x80, 0x00]) + parts.header
    return forgery.fix_crcs(forged + blob[5 + head + len(parts.header):]), True


def _version_byte(rng, parts, seed):
    return parts.write(version=rng.choice((0, 2, 4, 0x80, 0xFF))), False


def _identity(seed) -> tuple[int, bytes]:
    return container.original_identity(seed.original)


_ARCHIVE_LIES = {
    "trailer SHA where it should not be, or none": _trailer_sha, "trailer size or SHA lies": _trailer_values,
    "no end record": _no_trailer, "end tag": _end_tag, "junk after the end": _junk_after_end,
    "frame after the end": _frame_after_end, "header length": _header_length,
    "header length encoding": _header_length_encoding, "version byte": _version_byte,
}
