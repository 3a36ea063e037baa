"""Several small archives unpacked at once: their chunks stepped side by side.

A small input is a few short chunks (a 4 KiB one: 8), and a decoding step costs about as much
for 8 rows as for 64 on a CPU, so unpacking many small archives one after another leaves most
of every step unused. Archives of one model frame that name the same model, dtype and engine,
where that engine decodes in any batch (an invariant one), are decoded together: their chunks
form one batch, each archive's own decoder reading its own rows. Each archive's bytes are then
checked exactly as a lone unpack checks them. Whatever fails, in any archive of a group, the
archives of that group are unpacked one at a time instead, so that each failure is reported
against its own archive and no good archive is held back by a bad one.
"""

import hashlib
import io
import os
from dataclasses import dataclass

import numpy as np
import torch

from . import container
from .api import Decompressor, check_frame_size, check_original
from .coding import FrameDecoder
from .container import Frame, Header
from .errors import AlphazipError
from .model import LanguageModel
from .schedule import decode_chunks, torch_threads


@dataclass
class _Single:
    """An archive of one model frame, read and checked as far as can be without decoding."""

    header: Header
    frame: Frame
    reader: container.ArchiveReader


def unpack_together(decompressor: Decompressor, blobs: list[bytes]) -> list[bytes | Exception]:
    """Each archive's original bytes, or the error that unpacking it alone raises."""
    results: list[bytes | Exception | None] = [None] * len(blobs)
    groups: dict[tuple, list[tuple[int, _Single, LanguageModel]]] = {}
    for index, blob in enumerate(blobs):
        single = _single_model_frame(decompressor, blob)
        model = _checked_model(decompressor, single) if single else None
        if model is not None:
            groups.setdefault((id(model), single.header.engine), []).append((index, single, model))
    for members in groups.values():
        try:
            decoded = _decode_group(decompressor, [(single, model) for _, single, model in members])
        except (AlphazipError, MemoryError):
            continue  # each of them alone, below: the failure is then its own archive's
        for (index, _, _), data in zip(members, decoded):
            results[index] = data
    for index, blob in enumerate(blobs):
        if results[index] is None:
            try:
                results[index] = decompressor.decompress(blob)
            except (AlphazipError, MemoryError) as exc:
                results[index] = exc
    return results


def _single_model_frame(decompressor: Decompressor, blob: bytes) -> _Single | None:
    """``blob`` read through its trailer, if it is one model frame that passes the checks made
    before the model is loaded; None for anything else (it is unpacked alone)."""
    try:
        reader = container.ArchiveReader(io.BytesIO(blob))
        frames = list(reader.frames())
        if len(frames) != 1 or frames[0].mode != "model":
            return None
        decompressor.check_model_frame(reader.header, frames[0])
        return _Single(reader.header, frames[0], reader)
    except (AlphazipError, MemoryError):
        return None


def _checked_model(decompressor: Decompressor, single: _Single) -> LanguageModel | None:
    """The archive's model, checked, if its engine decodes in any batch; else None."""
    try:
        model = decompressor.checked_model(single.header)
    except AlphazipError:
        return None
    return model if model.invariant(single.header.engine) else None


def _decode_group(decompressor: Decompressor, members: list[tuple[_Single, LanguageModel]]) -> list[bytes]:
    """The checked bytes of archives that share one model and engine, their chunks in one batch."""
    model, engine = members[0][1], members[0][0].header.engine
    decoders = [decompressor.frame_decoder(single.header, single.frame, model) for single, _ in members]
    counts = [len(single.frame.chunk_tokens) for single, _ in members]
    chunk_tokens = [tokens for single, _ in members for tokens in single.frame.chunk_tokens]
    with torch_threads(0):  # an invariant engine: as the process is set
        batch = decompressor.decoding_batch(members[0][0].header, model, max(chunk_tokens, default=0))
        chunks = decode_chunks(model, _SideBySide(decoders, counts), chunk_tokens, batch, None, engine)
    decoded, start = [], 0
    for (single, _), count in zip(members, counts):
        data = decompressor.frame_bytes(single.header, single.frame, model, chunks[start:start + count])
        start += count
        check_frame_size(data, single.frame, 0)
        check_original(single.reader, len(data), hashlib.sha256(data))
        decoded.append(data)
    return decoded


class _SideBySide(FrameDecoder):
    """Several frames' decoders as one: the chunks of all of them numbered in turn, each row's
    position and logits handed to the decoder whose chunk it is, under that frame's own number."""

    def __init__(self, decoders: list[FrameDecoder], counts: list[int]):
        self.decoders = decoders
        self.owner = np.repeat(np.arange(len(decoders)), counts)
        self.local = np.concatenate([np.arange(count) for count in counts]) if counts else np.zeros(0, np.int64)
        offsets = np.cumsum([0] + counts[:-1])
        self.lockstep = [range(offset + group.start, offset + group.stop)
                         for decoder, offset in zip(decoders, offsets.tolist()) for group in decoder.lockstep]

    def features(self, rows: np.ndarray, position: int, hidden: torch.Tensor) -> None:
        owners = self.owner[rows]
        for owner in np.unique(owners):
            mine = np.flatnonzero(owners == owner)
            self.decoders[owner].features(self.local[rows[mine]], position, hidden[torch.from_numpy(mine)])

    def next_tokens(self, rows: np.ndarray, position: int, logits: torch.Tensor) -> np.ndarray:
        tokens = np.empty(len(rows), dtype=np.int64)
        owners = self.owner[rows]
        for owner in np.unique(owners):
            mine = np.flatnonzero(owners == owner)
            tokens[mine] = self.decoders[owner].next_tokens(self.local[rows[mine]], position,
                                                            logits[torch.from_numpy(mine)])
        return tokens

    def finish(self) -> None:
        for decoder in self.decoders:
            decoder.finish()


class Lookahead:
    """A run's small archives unpacked a group at a time, as the run reaches each group's first.

    Only where there are several files, each an archive on disk of at most ``SMALL_ARCHIVE``
    bytes, and a local decompressor; :meth:`take` gives None for any other file, which the
    caller then unpacks alone, streaming, as it always did.
    """

    def __init__(self, decompressor, files: list[str]):
        self.decompressor = decompressor
        several = len(files) > 1 and type(decompressor) is Decompressor
        self.small = [file for file in files if several and _small_archive(file)]
        self.place = {file: index for index, file in enumerate(self.small)}
        self.results: dict[str, bytes | Exception] = {}

    def take(self, file: str) -> bytes | None:
        """``file``'s original bytes, unpacked with the next few; raises what unpacking it alone
        would; None where ``file`` is not unpacked this way."""
        if file not in self.results:
            if file not in self.place:
                return None
            self._unpack_from(self.place[file])
            if file not in self.results:  # it could not be read: alone, then
                return None
        result = self.results.pop(file)
        self.place.pop(file, None)
        if isinstance(result, Exception):
            raise result
        return result

    def _unpack_from(self, start: int) -> None:
        group, blobs = [], []
        for file in self.small[start:]:
            if len(group) == GROUP_FILES:
                break
            if file not in self.place or file in self.results:
                continue
            try:
                with open(file, "rb") as source:
                    blobs.append(source.read(SMALL_ARCHIVE + 1))
            except OSError:
                del self.place[file]  # unpacked alone, whose error says what is wrong
                continue
            group.append(file)
        self.results.update(zip(group, unpack_together(self.decompressor, blobs)))


GROUP_FILES = 8  # archives decoded together: 8 small inputs of 8 chunks fill the default batch of 64
SMALL_ARCHIVE = 1 << 20  # bytes; a larger archive's own chunks fill a batch: it unpacks alone, streaming


def _small_archive(file: str) -> bool:
    try:
        return os.path.isfile(file) and os.path.getsize(file) <= SMALL_ARCHIVE
    except OSError:
        return False
