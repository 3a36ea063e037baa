"""The library API: reusable compressor and decompressor objects, and one-call wrappers.

``compress(data)`` is equivalent to ``Compressor().compress(data)``; the objects keep their
model loaded, so repeated calls pay the load once.
"""

import contextlib
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import transformers

from . import container
from .backends import get_backend
from .container import Archive, Header
from .errors import AlphazipError, BadArchiveError, ChecksumError, ModelMismatchError, ModelNotFoundError
from .model import BUILTIN_MODELS, DEFAULT_MODEL, LanguageModel
from .model.registry import find_by_fingerprint, model_dirs
from .schedule import Progress, Scores, decode_chunks, score_chunks, split_chunks

DECODE_BATCH = 64  # chunks stepped together when unpacking on an invariant engine (any value decodes)
DEFAULT_TOP_K = 65535  # above the vocabulary: escapes only for raw-byte ids (docs/results.md)
DEFAULT_CONTEXT = 1024
# By default an input shorter than 8 full chunks is cut into 8 shorter ones (of 128 tokens at
# least): unpacking steps chunks side by side, so 8 chunks of 65 tokens unpack 8 x sooner than
# one of 520 (a step costs about the same for 1 or 8 rows on a CPU).
MIN_CHUNKS, MIN_CONTEXT = 8, 128
DEFAULT_BATCH = 16  # 16 x 1,024 tokens: the engine's products have rows enough, its fp32 cache is 0.75 GB
# bf16 matrix products are 1.6 x faster than fp32 on CPUs with AVX-512 BF16, but 8 x slower on
# plain AVX2 (measured, docs/engine.md); fp32 is never slow and matches transformers' fp32 logits.
DEFAULT_DTYPE = "float32"
# Share of bytes that are invalid UTF-8 or control characters above which data is called binary.
BINARY_SHARE = 0.10
BINARY_WINDOW, BINARY_WINDOWS = 1 << 16, 16  # looks_binary reads at most 16 windows of 64 KiB


@dataclass(frozen=True)
class Settings:
    """Everything that changes the bitstream of a packed archive."""

    backend: str = "brotli"
    model: str = DEFAULT_MODEL
    top_k: int = DEFAULT_TOP_K  # ranks below this are symbols; others are escaped
    context: int | None = None  # tokens per chunk; None: chunk_length's default
    batch: int = DEFAULT_BATCH  # chunks stepped together
    dtype: str = DEFAULT_DTYPE
    mode: str = "auto"  # "auto": model unless the data looks binary, smaller of model/raw; or "model"/"raw"
    engine: str = "auto"  # inference path: "auto" = the model's preferred one, or a name from model.engines

    def __post_init__(self):
        get_backend(self.backend)  # fails early, naming the known back-ends
        if not 1 <= self.top_k <= 1 << 20:
            raise ValueError(f"top-k must be between 1 and {1 << 20}, not {self.top_k}")
        if (self.context is not None and self.context < 1) or self.batch < 1:
            raise ValueError("context and batch must be at least 1")
        if self.mode not in ("auto", "model", "raw"):
            raise ValueError(f"mode must be auto, model or raw, not {self.mode!r}")


class ModelCache:
    """Loaded models by (spec, dtype), so that a process loads each model once."""

    def __init__(self):
        self._models: dict[tuple[str, str], LanguageModel] = {}

    def get(self, spec: str, dtype: str, log=lambda message: None) -> LanguageModel:
        key = (spec, dtype)
        if key not in self._models:
            self._models[key] = LanguageModel.load(spec, dtype, log)
        return self._models[key]

    def add(self, model: LanguageModel) -> None:
        """Register an already-built model (tests build tiny ones) under its name."""
        self._models[(model.name, model.dtype)] = model


MODELS = ModelCache()


class Compressor:
    """Packs bytes into .az archives with fixed settings; keeps its model between calls."""

    def __init__(self, settings: Settings | None = None, models: ModelCache = MODELS, **overrides):
        self.settings = Settings(**overrides) if settings is None else settings
        self.models = models

    def compress(self, data: bytes, progress: Progress | None = None) -> bytes:
        """The archive of ``data``; ``progress`` is called with (tokens done, tokens in all)."""
        return container.write(self.pack(data, progress))

    def pack(self, data: bytes, progress: Progress | None = None, scores: Scores | None = None) -> Archive:
        """The archive ``compress`` writes, unserialized (``scores`` may come from an earlier pass)."""
        settings = self.settings
        if settings.mode == "raw" or (settings.mode == "auto" and looks_binary(data)):
            return self.pack_raw(data)
        model = self.models.get(settings.model, settings.dtype)
        packed = self.pack_with_model(data, model, progress, scores)
        if settings.mode == "auto":
            raw = self.pack_raw(data)
            if _payload_size(raw) <= _payload_size(packed):
                return raw
        return packed

    def pack_raw(self, data: bytes) -> Archive:
        """The raw-mode archive: the back-end applied to the bytes themselves."""
        payload = get_backend(self.settings.backend).encode(np.frombuffer(data, np.uint8), 256)
        return Archive(Header(mode="raw", backend=self.settings.backend), [], [], [payload],
                       *container.original_identity(data))

    def pack_with_model(self, data: bytes, model: LanguageModel, progress: Progress | None = None,
                        scores: Scores | None = None) -> Archive:
        """The model-mode archive of ``data`` (``scores`` may be reused from an earlier pass)."""
        s = self.settings
        engine = engine_for(model, s.engine)
        ids = model.tokenizer.encode(data)
        context = chunk_length(s.context, len(ids))
        chunks = split_chunks(ids, context)
        if scores is None:
            scores = score_chunks(model, chunks, s.batch, progress, engine)
        symbols, escapes = symbolize(chunks, scores.ranks, s.top_k)
        backend = get_backend(s.backend)
        header = Header(
            mode="model", backend=s.backend, model=model.name, model_fingerprint=model.fingerprint,
            dtype=model.dtype, engine=engine, probe=model.probe(engine), top_k=s.top_k, context=context,
            batch=s.batch, threads=torch.get_num_threads(), versions=library_versions())
        streams = [backend.encode(symbols, s.top_k + 1), backend.encode(escapes, model.tokenizer.id_space)]
        crcs = [zlib.crc32(model.tokenizer.decode(chunk)) for chunk in chunks]
        return Archive(header, [len(c) for c in chunks], crcs, streams, *container.original_identity(data))


class Decompressor:
    """Unpacks .az archives; loads (and keeps) whatever model each archive names."""

    def __init__(self, model: str | None = None, models: ModelCache = MODELS):
        self.model_override = model  # a path or name to use instead of the one recorded
        self.models = models

    def decompress(self, blob: bytes, progress: Progress | None = None) -> bytes:
        """The original bytes of archive ``blob``, verified against every recorded checksum.

        ``progress`` is called with (tokens done, tokens in all) as decoding goes on.
        """
        archive = container.read(blob)
        header = archive.header
        backend = _backend_of(header)
        if header.mode == "raw":
            data = _bytes_of(backend.decode(_only_stream(archive), 256))
        else:
            model = self.models.get(self.model_spec(header), header.dtype)
            data = self.decode_with_model(archive, model, progress)
        if container.original_identity(data) != (archive.original_size, archive.original_sha256):
            raise ChecksumError("decoded data does not match the archive's SHA-256")
        return data

    def model_spec(self, header: Header) -> str:
        """Which model to load for ``header``: ``--model`` if given, else the recorded name.

        A local model is looked up by the fingerprint the archive records (in ``--model`` when it
        is a folder of models, else in :func:`model_dirs`), so an archive still finds its model
        after the folder moved; the recorded path is the fallback.
        """
        override = self.model_override
        if override is not None:
            folder = Path(override).expanduser()
            if override in BUILTIN_MODELS or (folder / "config.json").is_file() or not folder.is_dir():
                return override  # a model: _check_model compares its fingerprint
            found = find_by_fingerprint(header.model_fingerprint, [folder])
            if found is None:
                raise ModelNotFoundError(f"no model in {override} has fingerprint {header.model_fingerprint[:12]}, "
                                         f"which the archive needs (it was packed with {header.model!r})")
            return str(found)
        if header.model in BUILTIN_MODELS:
            return header.model
        found = find_by_fingerprint(header.model_fingerprint)
        if found is not None:
            return str(found)
        if (Path(header.model).expanduser() / "config.json").is_file():
            return header.model
        places = ", ".join(map(str, model_dirs()))
        raise ModelNotFoundError(f"archive needs model {header.model!r} (fingerprint {header.model_fingerprint[:12]}), "
                                 f"which is neither at that path nor in {places}; pass --model FOLDER")

    def decode_with_model(self, archive: Archive, model: LanguageModel, progress: Progress | None = None) -> bytes:
        """Decode a model-mode archive with ``model``, checking every chunk's CRC-32."""
        header = archive.header
        _check_model(header, model)
        symbols, escapes = self.read_symbols(archive, model)
        threads = 0 if model.invariant(header.engine) else header.threads  # 0: leave as is
        with torch_threads(threads):
            chunks = decode_chunks(model, symbols, escapes, header.top_k, decoding_batch(model, header.engine, header.batch),
                                   progress, header.engine)
        pieces = []
        for index, (chunk, crc) in enumerate(zip(chunks, archive.chunk_crcs)):
            try:
                piece = model.tokenizer.decode(chunk)
            except BadArchiveError:  # a wrong rank picked a special token: same failure
                piece = None
            if piece is None or zlib.crc32(piece) != crc:
                raise ChecksumError(f"chunk {index} of {len(chunks)} fails its CRC-32{_setup_difference(header)}")
            pieces.append(piece)
        return b"".join(pieces)

    @staticmethod
    def read_symbols(archive: Archive, model: LanguageModel) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Decode both payloads of a model archive and split them per chunk, checking their counts."""
        header, backend = archive.header, _backend_of(archive.header)
        if len(archive.streams) != 2:
            raise BadArchiveError(f"model archive must hold 2 streams, not {len(archive.streams)}")
        symbols = backend.decode(archive.streams[0], header.top_k + 1)
        escapes = backend.decode(archive.streams[1], model.tokenizer.id_space)
        if len(symbols) != sum(archive.chunk_tokens):
            raise BadArchiveError(f"archive holds {len(symbols)} symbols but its chunk table {sum(archive.chunk_tokens)}")
        ranked = symbols[symbols != header.top_k]
        if ranked.size and int(ranked.max()) >= model.logits_size:
            raise BadArchiveError(f"archive holds rank {int(ranked.max())}, beyond the model's {model.logits_size} tokens")
        escape_at = np.flatnonzero(symbols == header.top_k)
        if len(escape_at) != len(escapes):
            raise BadArchiveError(f"archive holds {len(escapes)} escaped ids for {len(escape_at)} escapes")
        bounds = np.cumsum(archive.chunk_tokens)[:-1]
        per_chunk_symbols = np.split(symbols, bounds)
        per_chunk_escapes = np.split(escapes, np.searchsorted(escape_at, bounds))
        return per_chunk_symbols, per_chunk_escapes


def chunk_length(context: int | None, tokens: int) -> int:
    """Tokens per chunk: ``context`` if set, else ``DEFAULT_CONTEXT`` shortened for small inputs.

    A small input is cut into ``MIN_CHUNKS`` chunks of at least ``MIN_CONTEXT`` tokens, trading
    a little ratio (less context per token) for a much quicker unpack.
    """
    if context is not None:
        return context
    return min(DEFAULT_CONTEXT, max(MIN_CONTEXT, -(-tokens // MIN_CHUNKS)))


def symbolize(chunks: list[np.ndarray], ranks: list[np.ndarray], top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """One symbol per token (its rank, or ``top_k`` = escape) and the escaped ids, in order."""
    if not chunks:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    tokens, all_ranks = np.concatenate(chunks), np.concatenate(ranks)
    escaped = (all_ranks < 0) | (all_ranks >= top_k)
    return np.where(escaped, top_k, all_ranks), tokens[escaped]


def looks_binary(data: bytes) -> bool:
    """True when over ``BINARY_SHARE`` of the bytes are invalid UTF-8 or control characters.

    Large inputs are judged on evenly spaced windows, so the check stays quick on 100 MB files.
    """
    if not data:
        return False
    sample = b"".join(data[start:start + BINARY_WINDOW] for start in _window_starts(len(data)))
    text = sample.decode("utf-8", "surrogateescape")
    odd = sum(1 for char in text if ord(char) < 32 and char not in "\t\n\r\f\v" or 0xDC80 <= ord(char) <= 0xDCFF)
    return odd > BINARY_SHARE * len(text)


def _window_starts(size: int) -> range:
    if size <= BINARY_WINDOW * BINARY_WINDOWS:
        return range(0, size, BINARY_WINDOW)
    return range(0, size - BINARY_WINDOW + 1, (size - BINARY_WINDOW) // (BINARY_WINDOWS - 1))


@contextlib.contextmanager
def torch_threads(count: int):
    """Run with ``count`` torch threads (0 = leave as is), restoring the caller's setting."""
    previous = torch.get_num_threads()
    if count > 0:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def library_versions() -> dict:
    """Versions of the libraries whose kernels shape the logits, and the CPU's vector unit.

    torch picks other kernels (another summation order) on AVX2 than on AVX-512 CPUs.
    """
    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "cpu": torch.backends.cpu.get_cpu_capability()}


def _payload_size(archive: Archive) -> int:
    return sum(map(len, archive.streams)) + 8 * len(archive.chunk_tokens)


def _backend_of(header: Header):
    try:
        return get_backend(header.backend)
    except ValueError:
        raise BadArchiveError(f"archive needs back-end {header.backend!r}, which this build lacks") from None


def _only_stream(archive: Archive) -> bytes:
    if len(archive.streams) != 1 or archive.chunk_tokens:
        raise BadArchiveError("raw archive must hold exactly one stream and no chunks")
    return archive.streams[0]


def _bytes_of(symbols: np.ndarray) -> bytes:
    return symbols.astype(np.uint8).tobytes()


def _check_model(header: Header, model: LanguageModel) -> None:
    if header.engine not in model.engines:
        raise ModelMismatchError(f"archive needs inference engine {header.engine!r}; "
                                 f"this build runs {model.name!r} on {', '.join(model.engines)}")
    if header.model_fingerprint != model.fingerprint:
        raise ModelMismatchError(
            f"archive was packed with model {header.model!r} (fingerprint {header.model_fingerprint[:12]}), "
            f"not {model.name!r} ({model.fingerprint[:12]})")
    if header.probe != model.probe(header.engine):  # checked before anything is decoded or written
        raise ModelMismatchError(
            f"this machine's kernels give other logits than the packing machine's (probe fingerprint "
            f"{model.probe(header.engine)[:12]}, archive {header.probe[:12]}){_setup_difference(header)}")


def decoding_batch(model: LanguageModel, engine: str, packed_batch: int) -> int:
    """Chunks stepped together when decoding: any batch on an invariant engine, else the packing one."""
    return DECODE_BATCH if model.invariant(engine) else packed_batch


def engine_for(model: LanguageModel, choice: str) -> str:
    """The inference path ``choice`` names for ``model`` ("auto": the model's preferred one)."""
    if choice == "auto":
        return model.engines[0]
    if choice not in model.engines:
        raise AlphazipError(f"engine {choice!r} does not run {model.name!r}; it runs on {', '.join(model.engines)}")
    return choice


def _setup_difference(header: Header) -> str:
    here = library_versions()
    changed = [f"{name} {header.versions[name]} -> {here[name]}" for name in here  # older archives lack "cpu"
               if name in header.versions and header.versions[name] != here[name]]
    return f" (packed on another setup: {', '.join(changed)})" if changed else ""


def compress(data: bytes, backend: str = "brotli", **settings) -> bytes:
    """Equivalent to ``Compressor(backend=backend, **settings).compress(data)``."""
    return Compressor(backend=backend, **settings).compress(data)


def decompress(blob: bytes, model: str | None = None) -> bytes:
    """Equivalent to ``Decompressor(model).decompress(blob)``."""
    return Decompressor(model).decompress(blob)


def describe(blob: bytes) -> dict:
    """What an archive holds, without decoding it: settings, chunks, sizes and ratio."""
    archive = container.read(blob)
    header = archive.header
    size = archive.original_size
    facts = {"format": f"alphazip v{container.FORMAT_VERSION}", "mode": header.mode, "backend": header.backend}
    if header.mode == "model":
        facts |= {"model": header.model, "fingerprint": header.model_fingerprint, "dtype": header.dtype,
                  "engine": header.engine, "probe": header.probe[:16] or "-", "top_k": header.top_k, "context": header.context,
                  "batch": header.batch, "threads": header.threads,
                  "versions": ", ".join(f"{k} {v}" for k, v in sorted(header.versions.items())),
                  "chunks": len(archive.chunk_tokens), "tokens": sum(archive.chunk_tokens)}
    facts |= {"original bytes": size, "archive bytes": len(blob),
              "ratio": f"{len(blob) / size:.4f}" if size else "-",
              "bits per byte": f"{8 * len(blob) / size:.4f}" if size else "-",
              "sha256": archive.original_sha256.hex()}
    return facts
