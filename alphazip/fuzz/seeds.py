"""Valid archives the hostile ones start from: every token coder, both modes, formats 1, 2 and 3.

Seeds are packed afresh each run with the tiny test model, so they always match the reader
under test; what they hold is fixed (``TEXT``, ``BINARY``), so a saved failure replays anywhere.
The Compressor writes format 3; each seed's archive is then completed with what the other
formats record (chunk CRC-32s, the SHA-256, the full fingerprints and library versions), so
that it can be written again as a format-2 twin, and a one-frame one as a format-1 twin.
"""

import dataclasses
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import container
from ..api import Compressor
from ..backends import backend_names
from ..container import Archive
from ..lookup import MODELS
from ..report import library_versions
from ..schedule import torch_threads
from . import forgery

# The committed tiny model (2 layers, 300 tokens): model frames decode in milliseconds.
TINY_MODEL = str(Path(__file__).resolve().parents[2] / "tests" / "data" / "tiny-model")
TEXT = ("Alice was beginning to get very tired of sitting by her sister on the bank, and of having nothing "
        "to do.\r\ndef main():\n    return 0\n\nGET /index.html HTTP/1.1\nHost: example.com\n").encode()
SHORT_TEXT = TEXT[:40]  # for the slower engines: lockstep through transformers takes 20 ms a token
BINARY = bytes((index * 37 + index // 7) % 256 for index in range(160))
ORIGINALS = (TEXT, SHORT_TEXT, BINARY, b"", TEXT + BINARY + TEXT)  # what each seed decodes to
# Token coders that code with the model's probabilities (rank-ac: an arithmetic coder over the
# ranks). Their archives are seeds of the blind mutations (``Seeds.all``); the lies, which build
# payloads of their own (bombs, honest zeros), keep to the byte back-ends.
PROBABILITY_CODERS = ("ac", "ac-3", "ac-2", "ac-1", "ac-plain", "rank-ac")
# Inference paths besides the default exact one, each packed once: lockstep honours the header's
# batch and threads, which the exact engine ignores.
OTHER_ENGINES = ("transformers-static-step", "alphazip-llama-2")


@dataclass
class Seed:
    """A valid archive: its bytes, parsed form, and what each of its frames decodes to."""

    name: str  # e.g. "model-zstd", "raw-gzip", "mixed-brotli" (format 3), "v2-model-xz", "v1-model-xz"
    blob: bytes
    archive: Archive  # complete: chunk CRCs, each frame's CRC and the SHA-256 all set, whatever the format
    pieces: list[bytes]  # each frame's original bytes, in order

    @property
    def original(self) -> bytes:
        return b"".join(self.pieces)

    @property
    def version(self) -> int:
        return self.blob[len(container.MAGIC)]


class Seeds:
    """All seeds of one run, and the subsets the case makers draw from."""

    def __init__(self, seeds: list[Seed], model: str, coded: list[Seed] = ()):
        self.all, self.model = seeds + list(coded), model  # ``coded``: only in ``all`` (PROBABILITY_CODERS)
        self.id_space = MODELS.get(model, "float32").tokenizer.id_space  # the escape stream's alphabet
        self.v2 = [seed for seed in seeds if seed.version == 2]
        self.v3 = [seed for seed in seeds if seed.version == 3]
        self.framed = self.v2 + self.v3  # the formats of frame records
        self.single = [seed for seed in self.v2 if len(seed.pieces) == 1]  # what format 1 can hold
        self.by_name = {seed.name: seed for seed in seeds}


def fuzzed_backends() -> list[str]:
    """The byte back-ends the harness packs seeds with: those it can make bombs and honest zero
    payloads of in a moment. rank-ac (36,000 bytes/s) would take half a minute a payload; its
    damaged and lying payloads are tested in tests/test_rank_ac.py, as ac's are in
    tests/test_arithmetic.py, and archives of both are seeds of the blind mutations."""
    return [name for name in backend_names() if name != "rank-ac"]


def build_seeds(model: str = TINY_MODEL) -> Seeds:
    """Pack the seeds with ``model``: model and raw archives per back-end, archives of mixed
    frames, an empty one, model archives on the other engines (all format 3), their format-2
    twins, and the format-1 twins of those of one frame."""
    with torch_threads(1):  # recorded in the headers: lockstep decoding then takes one core, not all
        seeds = _packed_seeds(model)
    for backend in fuzzed_backends():
        seeds.append(_mixed(seeds, backend))
    seeds += [_version_2(seed, model) for seed in list(seeds)]
    seeds += [_version_1(seed) for seed in list(seeds)
              if seed.version == 2 and len(seed.pieces) == 1 and seed.name != "v2-empty-zstd"]
    with torch_threads(1):
        coded = [_packed(f"model-{coder}", TEXT, coder, mode="model", model=model, context=32, batch=2)
                 for coder in PROBABILITY_CODERS]
    return Seeds(seeds, model, coded)


def _packed_seeds(model: str) -> list[Seed]:
    seeds = []
    for backend in fuzzed_backends():
        seeds.append(_packed(f"model-{backend}", TEXT, backend, mode="model", model=model, context=32, batch=2))
        seeds.append(_packed(f"raw-{backend}", BINARY, backend, mode="raw"))
    seeds.append(_packed("empty-zstd", b"", "zstd", mode="raw"))
    for engine in OTHER_ENGINES:
        seeds.append(_packed(f"model-zstd-{engine}", SHORT_TEXT, "zstd", mode="model", model=model, context=8,
                             batch=2, engine=engine))
    return seeds


def _packed(name: str, data: bytes, backend: str, **settings) -> Seed:
    blob = Compressor(backend=backend, **settings).compress(data)
    archive = container.read(blob)
    pieces = [data] if archive.frames else []
    return Seed(name, blob, completed(archive, pieces, settings.get("model")), pieces)


def completed(archive: Archive, pieces: list[bytes], model: str | None) -> Archive:
    """``archive`` (read from format 3) with what formats 1 and 2 also record: each chunk's
    CRC-32 (the frame's bytes cut where the tokenizer cuts them), the SHA-256 of the original."""
    tokenizer = MODELS.get(model, "float32").tokenizer if model else None
    frames = []
    for frame, piece in zip(archive.frames, pieces, strict=True):
        crcs = []
        if frame.mode == "model":
            ids = tokenizer.encode(piece)
            chunks = np.split(np.asarray(ids), np.cumsum(frame.chunk_tokens)[:-1])
            crcs = [zlib.crc32(tokenizer.decode(chunk)) for chunk in chunks]
        frames.append(dataclasses.replace(frame, chunk_crcs=crcs, crc=zlib.crc32(piece)))
    return Archive(archive.header, frames, *container.original_identity(b"".join(pieces)))


def _mixed(seeds: list[Seed], backend: str) -> Seed:
    """A model frame, a raw frame and the model frame again, under the model archive's header."""
    model, raw = (next(s for s in seeds if s.name == f"{mode}-{backend}") for mode in ("model", "raw"))
    frames = [model.archive.frames[0], raw.archive.frames[0], model.archive.frames[0]]
    pieces = [TEXT, BINARY, TEXT]
    archive = Archive(model.archive.header, frames, *container.original_identity(b"".join(pieces)))
    return Seed(f"mixed-{backend}", container.write(archive, 3), archive, pieces)


def _version_2(seed: Seed, model: str) -> Seed:
    """The same frames in format 2, under the header a format-2 writer records (the full
    fingerprint and probe, the library versions)."""
    header = seed.archive.header
    if header.mode == "model":
        loaded = MODELS.get(model, header.dtype)
        header = dataclasses.replace(header, model=loaded.name, model_fingerprint=loaded.fingerprint,
                                     probe=loaded.probe(header.engine), versions=library_versions())
    archive = dataclasses.replace(seed.archive, header=header)
    blob = container.write(archive, 2)
    _check_twin(blob, archive)
    return Seed(f"v2-{seed.name}", blob, archive, seed.pieces)


def _version_1(seed: Seed) -> Seed:
    """The same single frame in format 1's fixed-width layout."""
    blob = forgery.write_version_1(forgery.header_fields(seed.archive.header), seed.archive.frames[0],
                                   seed.archive.original_size, seed.archive.original_sha256)
    _check_twin(blob, seed.archive)
    return Seed(f"v1-{seed.name.removeprefix('v2-')}", blob, seed.archive, seed.pieces)


def _check_twin(blob: bytes, archive: Archive) -> None:
    """A twin must read back as the archive it was written from (frame CRCs aside: format 3's)."""
    read = container.read(blob)
    strip = [dataclasses.replace(frame, crc=None) for frame in archive.frames]
    assert read.header == archive.header and read.frames == strip, "a seed's twin reads back otherwise"
