"""Format 3's compact header: a few bytes of ids and varints where format 2 wrote JSON.

Small inputs are where a language model wins most, and a 4 KiB file's model archive is a few
hundred bytes: format 2's JSON header (names, versions, defaults: about 330 bytes) ate the gain.
Here the usual archive's header is three bytes, since everything in it is an id:

    byte 0     bits 0-3 back-end id, bit 4 model mode, bit 5 settings follow (else the preset),
               bit 6 a built-in model (else a fingerprint prefix), bit 7 a probe follows
    model      built-in id (u8), or the first 8 bytes of the model's fingerprint
    settings   engine id (u8), dtype id (u8), top_k, context; batch and threads only for the
               lockstep engine, whose bits depend on them
    probe      first 8 bytes of the probe fingerprint, unless the registry pins it (a built-in
               model on the exact engine: the same on every machine) or the engine has none

The reader turns ids back into names and full fingerprints from the registry and fills in a
:class:`~alphazip.container.Header`, so that nothing after it knows which format it read.
Library versions, thread counts and batch sizes of the invariant engines are not recorded: they
do not decide the bits, and leaving them out makes an archive the same bytes on every machine.
"""

from .errors import BadArchiveError, UnsupportedFormatError
from .model.registry import BUILTIN_MODELS, PREFIX_HEX

# Ids archives record: append only, never reorder or reuse.
# "ac-1": "ac" before its bias; "ac-2": before its chunks shared their experts' history; "ac-3":
# before it recalled the model's states.
BACKEND_IDS = ("brotli", "gzip", "huffman", "xz", "zstd", "rank-ac", "ac-1", "ac-plain", "ac-2", "ac-3", "ac")
ENGINE_IDS = ("alphazip-exact-1", "alphazip-llama-2", "alphazip-gemma3-1", "transformers-static-step",
              "alphazip-exact-learn-1", "alphazip-exact-learn-2", "alphazip-exact-learn-3", "alphazip-exact-learn-4")
DTYPE_IDS = ("float32", "bfloat16")
LOCKSTEP_ENGINE = "transformers-static-step"
# The settings of `alphazip pack` by default, recorded as the absence of settings.
PRESET = {"engine": "alphazip-exact-1", "dtype": "float32", "top_k": 65535, "context": 0}

_MODEL, _SETTINGS, _BUILTIN, _PROBE = 0x10, 0x20, 0x40, 0x80
_PREFIX_BYTES = PREFIX_HEX // 2


def header_bytes(header) -> bytes:
    """The compact form of ``header`` (a container.Header)."""
    if header.backend not in BACKEND_IDS:
        raise ValueError(f"back-end {header.backend!r} has no id in format 3")
    flags = BACKEND_IDS.index(header.backend)
    if header.mode != "model":
        return bytes([flags])
    builtin = _builtin_named_by(header.model_fingerprint)
    settings = {name: getattr(header, name) for name in PRESET}
    out = bytearray()
    if builtin:
        out.append(builtin.id)
    else:
        out += bytes.fromhex(header.model_fingerprint[:PREFIX_HEX])
    if settings != PRESET:
        out += bytes([ENGINE_IDS.index(header.engine), DTYPE_IDS.index(header.dtype)])
        out += varint(header.top_k) + varint(header.context)
        if header.engine == LOCKSTEP_ENGINE:
            out += varint(header.batch) + varint(header.threads)
    probe = header.probe and not (builtin and dict(builtin.probes).get(header.engine) == header.probe)
    if probe:
        out += bytes.fromhex(header.probe[:PREFIX_HEX])
    flags |= _MODEL | (_SETTINGS if settings != PRESET else 0) | (_BUILTIN if builtin else 0) | (_PROBE if probe else 0)
    return bytes([flags]) + bytes(out)


def parse_header(data: bytes, header_type):
    """The header that ``data`` (from :func:`header_bytes`) stands for, as ``header_type``."""
    reader = ByteReader(data)
    flags = reader.byte()
    backend = _by_id(BACKEND_IDS, flags & 0x0F, "back-end")
    if not flags & _MODEL:
        if flags & (_SETTINGS | _BUILTIN | _PROBE) or reader.rest():
            raise BadArchiveError("archive header is corrupt (settings in a raw archive's header)")
        return header_type(mode="raw", backend=backend)
    name, fingerprint, pinned = _model(reader, flags & _BUILTIN)
    settings = dict(PRESET, batch=1, threads=0)
    if flags & _SETTINGS:
        settings |= {"engine": _by_id(ENGINE_IDS, reader.byte(), "engine"),
                     "dtype": _by_id(DTYPE_IDS, reader.byte(), "dtype"),
                     "top_k": reader.varint(), "context": reader.varint()}
        if settings["engine"] == LOCKSTEP_ENGINE:
            settings |= {"batch": reader.varint(), "threads": reader.varint()}
    probe = reader.take(_PREFIX_BYTES).hex() if flags & _PROBE else dict(pinned).get(settings["engine"], "")
    if reader.rest():
        raise BadArchiveError("archive header is corrupt (bytes after its last field)")
    return header_type(mode="model", backend=backend, model=name, model_fingerprint=fingerprint, probe=probe,
                       **settings)


def _model(reader: "ByteReader", builtin: bool) -> tuple[str, str, tuple]:
    """(name, fingerprint, pinned probes) of the model a header names."""
    if not builtin:
        return "", reader.take(_PREFIX_BYTES).hex(), ()
    number = reader.byte()
    model = next((m for m in BUILTIN_MODELS.values() if m.id == number), None)
    if model is None:
        raise UnsupportedFormatError(f"archive needs built-in model {number}, which this build does not know")
    return model.name, model.fingerprints[0], model.probes


def _builtin_named_by(fingerprint: str):
    return next((m for m in BUILTIN_MODELS.values() if m.fingerprints and m.fingerprints[0] == fingerprint), None)


def _by_id(names: tuple[str, ...], number: int, what: str) -> str:
    if number >= len(names):
        raise UnsupportedFormatError(f"archive needs {what} id {number}, which this build does not know")
    return names[number]


def varint(value: int) -> bytes:
    """Unsigned LEB128: seven bits per byte, low bits first, high bit set on all but the last."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


class ByteReader:
    """Reads fields from bytes in memory; running out means the archive is corrupt."""

    def __init__(self, data: bytes):
        self.data, self.at = memoryview(data), 0

    def take(self, size: int) -> bytes:
        if self.at + size > len(self.data):
            raise BadArchiveError("archive is corrupt (a field runs past its record)")
        self.at += size
        return bytes(self.data[self.at - size:self.at])

    def byte(self) -> int:
        return self.take(1)[0]

    def varint(self) -> int:
        value = 0
        for shift in range(0, 64, 7):
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise BadArchiveError("archive is corrupt (a length runs past 64 bits)")

    def rest(self) -> bytes:
        return self.take(len(self.data) - self.at)
