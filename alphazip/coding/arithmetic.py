"""``ac``: every token range-coded under the model's own distribution.

The logits become integer frequencies (``frequencies``: exact, so the decoder rebuilds the same
table on any machine), followed by one escape symbol of frequency 1 for ids beyond the logits
(raw-byte tokens), each then coded uniformly among those ids. Every chunk has its own range
coder, so unpacking still steps many chunks side by side in any batch.

A frame's first stream holds the chunks' codes, each but the last preceded by its length
(varints, then the codes in chunk order); the second stream is empty.
"""

from collections.abc import Sequence

import numpy as np
import torch

from ..backends import Backend, get_backend
from ..compact import ByteReader, varint
from ..errors import BadArchiveError
from .base import FrameDecoder, FrameEncoder, TokenCoder
from .frequencies import FrequencyLookup, coding_facts
from .rangecoder import RangeDecoder, RangeEncoder

ESCAPE = 1  # the escape symbol's frequency, after the model's tokens
RAW_BACKEND = "brotli"  # frames packed without the model (binary data) use it


class ArithmeticCoder(TokenCoder):
    name = "ac"

    @property
    def raw_backend(self) -> Backend:
        return get_backend(RAW_BACKEND)

    def encoder(self, chunks: list[np.ndarray], model, top_k: int) -> "ArithmeticEncoder":
        return ArithmeticEncoder(len(chunks), model.logits_size, model.tokenizer.id_space)

    def decoder(self, streams: list[bytes], chunk_tokens: list[int], model, top_k: int) -> "ArithmeticDecoder":
        return ArithmeticDecoder(streams, len(chunk_tokens), model.logits_size, model.tokenizer.id_space)


class ArithmeticEncoder(FrameEncoder):
    def __init__(self, chunk_count: int, width: int, id_space: int):
        self.width, self.beyond = width, id_space - width  # ids the escape stands for
        self.coders = [RangeEncoder() for _ in range(chunk_count)]

    def observe(self, rows: Sequence[int], start: int, logits: torch.Tensor, tokens: np.ndarray,
                lengths: np.ndarray) -> None:
        live = np.arange(start, start + tokens.shape[1])[None, :] < lengths[:, None]  # [R, T]
        where = np.flatnonzero(live)  # row-major: each chunk's positions in order
        ids = torch.from_numpy(np.ascontiguousarray(tokens).reshape(-1)[where])
        inside = ids < self.width
        flat = logits.reshape(-1, logits.shape[-1])[torch.from_numpy(where)]
        cums, freqs, totals = (t.tolist() for t in coding_facts(flat, torch.where(inside, ids, 0)))
        owners = (where // tokens.shape[1]).tolist()
        for index, (token, row) in enumerate(zip(ids.tolist(), owners)):
            coder, total = self.coders[rows[row]], totals[index] + ESCAPE
            if token < self.width:
                coder.encode(cums[index], freqs[index], total)
            else:
                coder.encode(totals[index], ESCAPE, total)
                coder.encode(token - self.width, 1, self.beyond)

    def streams(self) -> list[bytes]:
        codes = [coder.finish() for coder in self.coders]
        return [b"".join(varint(len(code)) for code in codes[:-1]) + b"".join(codes), b""]


class ArithmeticDecoder(FrameDecoder):
    def __init__(self, streams: list[bytes], chunk_count: int, width: int, id_space: int):
        if streams[1]:
            raise BadArchiveError("archive is corrupt (an arithmetic-coded frame with a second stream)")
        self.width, self.beyond = width, id_space - width
        self.decoders = [RangeDecoder(code) for code in _split_codes(streams[0], chunk_count)]

    def next_tokens(self, rows: np.ndarray, position: int, logits: torch.Tensor) -> np.ndarray:
        lookup = FrequencyLookup(logits)
        totals = [total + ESCAPE for total in lookup.totals.tolist()]
        decoders = [self.decoders[chunk] for chunk in rows]
        found = lookup.find(list(range(len(rows))), [decoder.target(total) for decoder, total in zip(decoders, totals)])
        tokens = np.empty(len(rows), dtype=np.int64)
        for index, (decoder, token, cum, freq) in enumerate(zip(decoders, *found)):
            if token < self.width:
                decoder.consume(cum, freq)
            else:  # the escape: an id beyond the logits follows
                decoder.consume(totals[index] - ESCAPE, ESCAPE)
                if self.beyond < 1:
                    raise BadArchiveError("arithmetic-coded stream is corrupt (an escape with no ids to escape to)")
                offset = decoder.target(self.beyond)
                decoder.consume(offset, 1)
                token = self.width + offset
            tokens[index] = token
        return tokens

    def finish(self) -> None:
        for decoder in self.decoders:
            decoder.check_end()


def _split_codes(stream: bytes, count: int) -> list[bytes]:
    """The ``count`` chunks' codes: lengths of all but the last, then the codes."""
    if count == 0:
        if stream:
            raise BadArchiveError("archive is corrupt (an arithmetic-coded stream without chunks)")
        return []
    reader = ByteReader(stream)
    lengths = [reader.varint() for _ in range(count - 1)]
    codes = [reader.take(length) for length in lengths]
    return codes + [reader.rest()]
