"""Valid archives the hostile ones start from: every back-end, both modes, both format versions.

Seeds are packed afresh each run with the tiny test model, so they always match the reader
under test; what they hold is fixed (``TEXT``, ``BINARY``), so a saved failure replays anywhere.
"""

from dataclasses import dataclass
from pathlib import Path

from .. import container
from ..api import MODELS, Compressor, torch_threads
from ..backends import backend_names
from ..container import Archive
from . import forgery

# The committed tiny model (2 layers, 300 tokens): model frames decode in milliseconds.
TINY_MODEL = str(Path(__file__).resolve().parents[2] / "tests" / "data" / "tiny-model")
TEXT = ("Alice was beginning to get very tired of sitting by her sister on the bank, and of having nothing "
        "to do.\r\ndef main():\n    return 0\n\nGET /index.html HTTP/1.1\nHost: example.com\n").encode()
SHORT_TEXT = TEXT[:40]  # for the slower engines: lockstep through transformers takes 20 ms a token
BINARY = bytes((index * 37 + index // 7) % 256 for index in range(160))
ORIGINALS = (TEXT, SHORT_TEXT, BINARY, b"", TEXT + BINARY + TEXT)  # what each seed decodes to
# Inference paths besides the default exact one, each packed once: lockstep honours the header's
# batch and threads, which the exact engine ignores.
OTHER_ENGINES = ("transformers-static-step", "alphazip-llama-2")


@dataclass
class Seed:
    """A valid archive: its bytes, parsed form, and what each of its frames decodes to."""

    name: str  # e.g. "model-zstd", "raw-gzip", "v1-model-xz", "mixed-brotli"
    blob: bytes
    archive: Archive
    pieces: list[bytes]  # each frame's original bytes, in order

    @property
    def original(self) -> bytes:
        return b"".join(self.pieces)

    @property
    def version(self) -> int:
        return self.blob[len(container.MAGIC)]


class Seeds:
    """All seeds of one run, and the subsets the case makers draw from."""

    def __init__(self, seeds: list[Seed], model: str):
        self.all, self.model = seeds, model
        self.id_space = MODELS.get(model, "float32").tokenizer.id_space  # the escape stream's alphabet
        self.v2 = [seed for seed in seeds if seed.version == 2]
        self.single = [seed for seed in self.v2 if len(seed.pieces) == 1]  # what format 1 can hold
        self.by_name = {seed.name: seed for seed in seeds}


def build_seeds(model: str = TINY_MODEL) -> Seeds:
    """Pack the seeds with ``model``: model and raw archives per back-end, their format-1 twins,
    archives of mixed frames, an empty one, and model archives on the other engines."""
    with torch_threads(1):  # recorded in the headers: lockstep decoding then takes one core, not all
        seeds = _packed_seeds(model)
    for backend in backend_names():
        seeds.append(_mixed(seeds, backend))
    seeds += [_version_1(seed) for seed in list(seeds) if len(seed.pieces) == 1 and seed.name != "empty-zstd"]
    return Seeds(seeds, model)


def _packed_seeds(model: str) -> list[Seed]:
    seeds = []
    for backend in backend_names():
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
    return Seed(name, blob, archive, [data] if archive.frames else [])


def _mixed(seeds: list[Seed], backend: str) -> Seed:
    """A model frame, a raw frame and the model frame again, under the model archive's header."""
    model, raw = (next(s for s in seeds if s.name == f"{mode}-{backend}") for mode in ("model", "raw"))
    frames = [model.archive.frames[0], raw.archive.frames[0], model.archive.frames[0]]
    pieces = [TEXT, BINARY, TEXT]
    blob = forgery.write_archive(Archive(model.archive.header, frames, *container.original_identity(b"".join(pieces))))
    return Seed(f"mixed-{backend}", blob, container.read(blob), pieces)


def _version_1(seed: Seed) -> Seed:
    """The same single frame in format 1's fixed-width layout."""
    blob = forgery.write_version_1(forgery.header_fields(seed.archive.header), seed.archive.frames[0],
                                   seed.archive.original_size, seed.archive.original_sha256)
    return Seed(f"v1-{seed.name}", blob, container.read(blob), seed.pieces)
