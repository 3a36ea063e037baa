"""The library API: reusable compressor and decompressor objects, and one-call wrappers.

``compress(data)`` is equivalent to ``Compressor().compress(data)``; the objects keep their
model loaded, so repeated calls pay the load once.
"""

import hashlib
import io
import itertools
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import torch

from . import container, limits
from .coding import FrameDecoder, RankCoder, TokenCoder, get_coder
from .container import Archive, Frame, Header  # noqa: F401  (Archive: re-exported)
from .errors import BadArchiveError, ChecksumError
from .layout import FRAME_BYTES, MIN_FRAME_BYTES, check_chunk_lengths, chunk_length, input_frames, marking_last
from .lookup import MODELS, ModelCache, check_engine_known, check_model, engine_for, model_spec
from .model import DEFAULT_MODEL, LanguageModel
from .policy import looks_binary
from .report import library_versions, setup_difference
from .schedule import (DEFAULT_BATCH, Scores, decode_chunks, decoding_batch, encode_chunks, learning_groups,
                       split_chunks, torch_threads)

Progress = Callable[[int, int | None], None]  # (bytes done, bytes in all; None where not known)

DEFAULT_TOP_K = 65535  # above the vocabulary: escapes only for raw-byte ids (docs/results.md)
# bf16 matrix products are 1.6 x faster than fp32 on CPUs with AVX-512 BF16, but 8 x slower on
# plain AVX2 (measured, docs/engine.md); fp32 is never slow and matches transformers' fp32 logits.
DEFAULT_DTYPE = "float32"


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
    frame_bytes: int = FRAME_BYTES  # input bytes coded as one frame: memory is bounded by it
    engine: str = "auto"  # inference path: "auto" = the model's preferred one, or a name from model.engines

    def __post_init__(self):
        get_coder(self.backend)  # fails early, naming the known back-ends
        # The reader enforces the same limits on a stranger's archive (container.check_header).
        if not 1 <= self.top_k <= container.MAX_TOP_K:
            raise ValueError(f"top-k must be between 1 and {container.MAX_TOP_K}, not {self.top_k}")
        if self.context is not None and not 1 <= self.context <= container.MAX_CONTEXT:
            raise ValueError(f"context must be between 1 and {container.MAX_CONTEXT}, not {self.context}")
        if not 1 <= self.batch <= container.MAX_BATCH:
            raise ValueError(f"batch must be between 1 and {container.MAX_BATCH}, not {self.batch}")
        if not MIN_FRAME_BYTES <= self.frame_bytes <= container.MAX_FRAME_BYTES:
            raise ValueError(f"frame size must be between {MIN_FRAME_BYTES} and {container.MAX_FRAME_BYTES} bytes, "
                             f"not {self.frame_bytes}")
        if self.mode not in ("auto", "model", "raw"):
            raise ValueError(f"mode must be auto, model or raw, not {self.mode!r}")


class Compressor:
    """Packs bytes into .az archives with fixed settings; keeps its model between calls.

    The input is packed frame by frame (``Settings.frame_bytes`` each), so memory does not grow
    with its size. In auto mode the first frame decides whether the model is used at all (data
    that looks binary is packed raw); after that each frame stores the smaller of its model and
    raw codings, so a text file with a binary stretch inside loses nothing on it.
    """

    def __init__(self, settings: Settings | None = None, models: ModelCache = MODELS, **overrides):
        self.settings = Settings(**overrides) if settings is None else settings
        self.models = models

    def compress(self, data: bytes, progress: Progress | None = None) -> bytes:
        """The archive of ``data``; ``progress`` is called with (bytes done, bytes in all)."""
        out = io.BytesIO()
        self.compress_stream(io.BytesIO(data), out, progress, len(data))
        return out.getvalue()

    def compress_stream(self, source: BinaryIO, sink: BinaryIO, progress: Progress | None = None,
                        size: int | None = None, scores: list[Scores] | None = None) -> tuple[int, int]:
        """Pack ``source`` into ``sink`` one frame at a time; (input bytes, archive bytes).

        ``size``, if known, is the input's length, reported to ``progress`` as the total.
        ``scores`` (one per frame, see :meth:`frames_of`) may come from an earlier pass of the
        same model and chunking.
        """
        pieces = input_frames(source, self.settings.frame_bytes)
        first = next(pieces, b"")
        plan = self._plan(first)
        digest, done, writer, count = hashlib.sha256(), 0, None, 0
        for piece, last in marking_last(itertools.chain([first] if first else [], pieces)):
            frame_scores = scores[count] if scores is not None else None
            frame = self._frame(piece, plan, _offset(progress, done, len(piece), size), frame_scores)
            if writer is None:  # the header waits for the first frame (see _header)
                writer = container.ArchiveWriter(sink, self._header(plan, frame, alone=last))
            writer.add(frame)
            digest.update(piece)
            done, count = done + len(piece), count + 1
        if scores is not None and len(scores) != count:
            raise ValueError(f"{len(scores)} scores given for {count} frames")
        writer = writer or container.ArchiveWriter(sink, plan.header)
        return done, writer.finish(done, digest.digest())

    def pack(self, data: bytes, progress: Progress | None = None, scores: list[Scores] | None = None) -> Archive:
        """The archive ``compress`` writes, parsed (``scores`` as in :meth:`compress_stream`)."""
        out = io.BytesIO()
        self.compress_stream(io.BytesIO(data), out, progress, len(data), scores)
        return container.read(out.getvalue())

    def frames_of(self, data: bytes) -> list[bytes]:
        """The pieces of ``data`` that become frames, in order."""
        return list(input_frames(io.BytesIO(data), self.settings.frame_bytes))

    def chunks_of(self, piece: bytes, model: LanguageModel) -> list[np.ndarray]:
        """A frame's tokens cut into the chunks its archive codes."""
        ids = model.tokenizer.encode(piece)
        return split_chunks(ids, chunk_length(self.settings.context, len(ids)))

    def _plan(self, first: bytes) -> "_Plan":
        """The header, and the model to run (None: every frame raw), judged on the first frame."""
        s = self.settings
        if s.mode == "raw" or (s.mode == "auto" and (not first or looks_binary(first))):  # nothing to model
            return _Plan(Header(mode="raw", backend=s.backend), None, "")
        model = self.models.get(s.model, s.dtype)
        engine = engine_for(model, s.engine)
        header = Header(
            mode="model", backend=s.backend, model=model.name, model_fingerprint=model.fingerprint,
            dtype=model.dtype, engine=engine, probe=model.probe(engine), top_k=s.top_k, context=s.context or 0,
            batch=s.batch, threads=torch.get_num_threads(), versions=library_versions())
        return _Plan(header, model, engine)

    def _header(self, plan: "_Plan", first: Frame, alone: bool) -> Header:
        """The plan's header, or a bare raw one when the archive's only frame came out raw:
        naming a model that nothing needs would cost a small file hundreds of bytes."""
        if alone and first.mode == "raw":
            return Header(mode="raw", backend=self.settings.backend)
        return plan.header

    def _frame(self, piece: bytes, plan: "_Plan", progress: Progress | None, scores: Scores | None = None) -> Frame:
        auto = self.settings.mode == "auto"
        if plan.model is None or (auto and looks_binary(piece)):
            return self.raw_frame(piece)
        coded = self.model_frame(piece, plan.model, plan.engine, progress, scores)
        if auto:
            size = len(container.frame_bytes(coded))
            raw = self.raw_frame(piece, to_beat=size)
            if len(container.frame_bytes(raw)) <= size:
                return raw
        return coded

    def raw_frame(self, piece: bytes, to_beat: int | None = None) -> Frame:
        """A raw frame: the back-end applied to the bytes themselves (``to_beat``: the size of
        the model frame it competes with, if any)."""
        payload = get_coder(self.settings.backend).raw_payload(piece, to_beat)
        return Frame("raw", len(piece), [], [], [payload], zlib.crc32(piece))

    def model_frame(self, piece: bytes, model: LanguageModel, engine: str, progress: Progress | None = None,
                    scores: Scores | None = None) -> Frame:
        """A model frame: the piece's tokens coded under ``model`` by the token coder ``--backend``
        names (ranks and a byte back-end, or arithmetic coding)."""
        s = self.settings
        chunks = self.chunks_of(piece, model)
        coder = _coder_for(get_coder(s.backend), model, engine)
        if scores is not None and isinstance(coder, RankCoder):  # ranks from an earlier pass
            streams = coder.streams(chunks, scores.ranks, s.top_k, model)
        else:
            encoder = coder.encoder(chunks, model, s.top_k)
            encode_chunks(model, chunks, s.batch, [encoder], progress, engine)
            streams = encoder.streams()
        crcs = [zlib.crc32(model.tokenizer.decode(chunk)) for chunk in chunks]
        return Frame("model", len(piece), [len(c) for c in chunks], crcs, streams, zlib.crc32(piece))


@dataclass(frozen=True)
class _Plan:
    header: Header
    model: LanguageModel | None
    engine: str


class Decompressor:
    """Unpacks .az archives; loads (and keeps) whatever model each archive names."""

    def __init__(self, model: str | None = None, models: ModelCache = MODELS, batch: int | None = None,
                 memory_limit: int | None = None):
        self.model_override = model  # a path or name to use instead of the one recorded
        self.models = models
        # Chunks stepped together on invariant engines (None: DECODE_BATCH); fewer use less memory.
        # Lockstep archives always step in the batch they were packed with.
        if batch is not None and not 1 <= batch <= container.MAX_BATCH:
            raise ValueError(f"batch must be between 1 and {container.MAX_BATCH}")
        self.batch = batch
        # Bytes a frame's decoding may take beyond the model itself (None: most of this machine's memory).
        if memory_limit is not None and memory_limit < 1:
            raise ValueError("the memory limit must be positive")
        self.memory_limit = memory_limit or limits.default_memory_limit()

    def decompress(self, blob: bytes, progress: Progress | None = None) -> bytes:
        """The original bytes of archive ``blob``, verified against every recorded checksum.

        ``progress`` is called with (bytes done, None) as decoding goes on.
        """
        out = io.BytesIO()
        self.decompress_stream(io.BytesIO(blob), out, progress)
        return out.getvalue()

    def decompress_stream(self, source: BinaryIO, sink: BinaryIO, progress: Progress | None = None) -> int:
        """Unpack the archive in ``source`` into ``sink`` frame by frame; the bytes written.

        Each frame is checked (chunk CRC-32s, its size) before it is written; the SHA-256 of all
        of them once the trailer is read. The model is loaded, and its fingerprint and probe
        checked, at the first frame that needs it: raw frames never load it.
        """
        reader = container.ArchiveReader(source)
        header = reader.header
        _coder_of(header)  # an archive naming a coder this build lacks fails now, even without frames
        digest, done, loaded = hashlib.sha256(), 0, []

        def model() -> LanguageModel:  # loaded and checked once, at the first model frame
            if not loaded:
                loaded.append(self.checked_model(header))
            return loaded[0]

        for index, frame in enumerate(reader.frames()):
            data = self.frame_data(header, frame, index, model, _offset(progress, done, frame.size, None))
            digest.update(data)
            sink.write(data)
            done += len(data)
            if progress:
                progress(done, None)
        check_original(reader, done, digest)
        return done

    def frame_data(self, header: Header, frame: Frame, index: int, model: Callable[[], LanguageModel],
                   progress: Progress | None = None) -> bytes:
        """One frame's bytes, checked (CRC-32s, size) before anything is written: a raw frame
        through the back-end, a model frame through ``model()``, called only for model frames."""
        if frame.mode == "raw":
            limits.check_raw_frame(frame.size, self.memory_limit)
            data = _coder_of(header).raw_backend.decode(frame.streams[0], 256, frame.size).tobytes()
            if frame.crc is not None and zlib.crc32(data) != frame.crc:
                raise ChecksumError(f"frame {index} fails its CRC-32")
        else:
            self.check_model_frame(header, frame)
            data = self.decode_frame(header, frame, model(), progress, f" of frame {index}" if index else "")
        check_frame_size(data, frame, index)
        return data

    def checked_model(self, header: Header) -> LanguageModel:
        """The model ``header`` names (:meth:`model_spec`), loaded, its engine, fingerprint and
        probe checked against the archive's before anything is decoded."""
        check_engine_known(header)
        model = self.models.get(self.model_spec(header), header.dtype)
        check_model(header, model)
        return model

    def model_spec(self, header: Header) -> str:
        """Which model to load for ``header``: ``--model`` if given, else the one whose fingerprint
        the archive records (:func:`lookup.model_spec`; the name it records is never loaded)."""
        return model_spec(header, self.models, self.model_override)

    def decode_frame(self, header: Header, frame: Frame, model: LanguageModel, progress: Progress | None = None,
                     where: str = "") -> bytes:
        """Decode a model frame with ``model`` (already checked), checking every chunk's CRC-32
        (formats 1 and 2) or the frame's (format 3)."""
        decoder = self.frame_decoder(header, frame, model)
        threads = 0 if model.invariant(header.engine) else min(header.threads, os.cpu_count() or 1)  # 0: as is
        with torch_threads(threads):
            longest = max(frame.chunk_tokens, default=0)
            batch = self.decoding_batch(header, model, longest)
            # a learning model's groups, like a sharing coder's, are stepped together whatever the batch
            groups = learning_groups(frame.chunk_tokens) if model.learns(header.engine) else decoder.lockstep
            together = max(map(len, groups), default=1)
            limits.check_lockstep(model, header.engine, together, longest, self.memory_limit)
            chunks = decode_chunks(model, decoder, frame.chunk_tokens, batch, progress, header.engine)
        return self.frame_bytes(header, frame, model, chunks, where)

    def check_model_frame(self, header: Header, frame: Frame) -> None:
        """What a model frame's record must satisfy before the model is even loaded."""
        if header.mode != "model":
            raise BadArchiveError("archive is corrupt (a model frame in a raw archive)")
        check_chunk_lengths(header, frame)
        limits.check_model_frame(sum(frame.chunk_tokens), self.memory_limit)

    @staticmethod
    def frame_decoder(header: Header, frame: Frame, model: LanguageModel) -> FrameDecoder:
        """The token coder's decoder of a (checked) model frame."""
        coder = _coder_for(_coder_of(header), model, header.engine)
        return coder.decoder(frame.streams, frame.chunk_tokens, model, header.top_k)

    def decoding_batch(self, header: Header, model: LanguageModel, longest: int) -> int:
        """Chunks of up to ``longest`` tokens stepped together: as asked (or the default) on an
        invariant engine, else as packed; fewer where the memory limit says so."""
        batch = decoding_batch(model, header.engine, header.batch, self.batch)
        return limits.fitting_batch(model, header.engine, batch, longest, self.memory_limit)

    def frame_bytes(self, header: Header, frame: Frame, model: LanguageModel, chunks: list[np.ndarray],
                    where: str = "") -> bytes:
        """A model frame's decoded chunks as bytes, each chunk's CRC-32 (formats 1 and 2) or the
        frame's (format 3) checked."""
        pieces = []
        for index, chunk in enumerate(chunks):
            try:
                piece = model.tokenizer.decode(chunk)
            except BadArchiveError:  # a wrong rank picked a special token: same failure
                piece = None
            if piece is None or (frame.chunk_crcs and zlib.crc32(piece) != frame.chunk_crcs[index]):
                raise ChecksumError(f"chunk {index} of {len(chunks)}{where} fails its CRC-32{setup_difference(header)}")
            pieces.append(piece)
        data = b"".join(pieces)
        if frame.crc is not None and zlib.crc32(data) != frame.crc:
            raise ChecksumError(f"decoded bytes{where} fail their CRC-32{setup_difference(header)}")
        return data

    @staticmethod
    def read_symbols(header: Header, frame: Frame, model: LanguageModel) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """A rank-coded frame's payloads decoded and split per chunk (rank symbols, escaped ids)."""
        coder = _coder_of(header)
        if not isinstance(coder, RankCoder):
            raise ValueError(f"back-end {header.backend!r} codes no ranks")
        return coder.symbols(frame.streams, frame.chunk_tokens, model, header.top_k)


def check_frame_size(data: bytes, frame: Frame, index: int) -> None:
    if len(data) != frame.size:
        raise ChecksumError(f"frame {index} decodes to {len(data)} bytes, not the {frame.size} it records")


def check_original(reader: container.ArchiveReader, size: int, digest) -> None:
    """The whole input's checks, once every frame was read: its size, and its SHA-256 if recorded."""
    if size != reader.original_size:
        raise ChecksumError(f"decoded {size} bytes, not the {reader.original_size} the archive records")
    if reader.original_sha256 is not None and digest.digest() != reader.original_sha256:
        raise ChecksumError("decoded data does not match the archive's SHA-256")


def _offset(progress: Progress | None, done: int, size: int, total: int | None) -> Progress | None:
    """A frame's (tokens done, tokens in the frame) progress as bytes of the whole input."""
    if progress is None:
        return None
    return lambda tokens, tokens_in_frame: progress(done + size * tokens // max(tokens_in_frame, 1), total)


def _coder_of(header: Header) -> TokenCoder:
    try:
        return get_coder(header.backend)
    except ValueError:
        raise BadArchiveError(f"archive needs back-end {header.backend!r}, which this build lacks") from None


def _coder_for(coder: TokenCoder, model: LanguageModel, engine: str) -> TokenCoder:
    """``coder`` as it codes under ``engine``: some coders leave out what the engine's model does."""
    return coder.with_learning_head() if model.learns_head(engine) else coder


def compress(data: bytes, backend: str = "brotli", **settings) -> bytes:
    """Equivalent to ``Compressor(backend=backend, **settings).compress(data)``."""
    return Compressor(backend=backend, **settings).compress(data)


def decompress(blob: bytes, model: str | None = None) -> bytes:
    """Equivalent to ``Decompressor(model).decompress(blob)``."""
    return Decompressor(model).decompress(blob)
