"""The rank transform as a token coder: each token becomes its rank under the model's
prediction (``ranks``), the ranks below ``top_k`` are symbols and the rest escapes, and a byte
back-end codes the symbol stream and the escaped ids' stream."""

from collections.abc import Sequence

import numpy as np
import torch

from ..backends import Backend, get_backend
from ..errors import BadArchiveError
from ..ranks import ranks_of, tokens_at
from .base import FrameDecoder, FrameEncoder, TokenCoder


class RankCoder(TokenCoder):
    """Ranks, coded by the byte back-end of the same name."""

    def __init__(self, backend: str):
        self.name = backend
        self.backend = get_backend(backend)

    @property
    def raw_backend(self) -> Backend:
        return self.backend

    def encoder(self, chunks: list[np.ndarray], model, top_k: int) -> "RankEncoder":
        return RankEncoder(self, chunks, model, top_k)

    def streams(self, chunks: list[np.ndarray], ranks: list[np.ndarray], top_k: int, model) -> list[bytes]:
        """The two streams of chunks whose ranks are known (the bench codes one pass many ways)."""
        symbols, escapes = symbolize(chunks, ranks, top_k)
        return [self.backend.encode(symbols, top_k + 1), self.backend.encode(escapes, model.tokenizer.id_space)]

    def decoder(self, streams: list[bytes], chunk_tokens: list[int], model, top_k: int) -> "RankDecoder":
        return RankDecoder(*self.symbols(streams, chunk_tokens, model, top_k), top_k)

    def symbols(self, streams: list[bytes], chunk_tokens: list[int], model,
                top_k: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Both payloads decoded and split per chunk (rank symbols, escaped ids), counts checked."""
        symbols = self.backend.decode(streams[0], top_k + 1, sum(chunk_tokens))
        ranked = symbols[symbols != top_k]
        if ranked.size and int(ranked.max()) >= model.logits_size:
            raise BadArchiveError(f"archive holds rank {int(ranked.max())}, beyond the model's {model.logits_size} tokens")
        escape_at = np.flatnonzero(symbols == top_k)
        escapes = self.backend.decode(streams[1], model.tokenizer.id_space, len(escape_at))
        bounds = np.cumsum(chunk_tokens)[:-1]
        return np.split(symbols, bounds), np.split(escapes, np.searchsorted(escape_at, bounds))


class RankEncoder(FrameEncoder):
    def __init__(self, coder: RankCoder, chunks: list[np.ndarray], model, top_k: int):
        self.coder, self.chunks, self.model, self.top_k = coder, chunks, model, top_k
        self.ranks = [np.full(len(chunk), -1, dtype=np.int32) for chunk in chunks]

    def observe(self, rows: Sequence[int], start: int, logits: torch.Tensor, tokens: np.ndarray,
                lengths: np.ndarray) -> None:
        flat = logits.reshape(-1, logits.shape[-1])
        found = ranks_of(flat, torch.from_numpy(np.ascontiguousarray(tokens).reshape(-1))).view(len(rows), -1).numpy()
        for row, chunk in enumerate(rows):
            stop = min(start + tokens.shape[1], int(lengths[row]))
            self.ranks[chunk][start:stop] = found[row, :max(stop - start, 0)]

    def streams(self) -> list[bytes]:
        return self.coder.streams(self.chunks, self.ranks, self.top_k, self.model)


class RankDecoder(FrameDecoder):
    def __init__(self, symbols: list[np.ndarray], escapes: list[np.ndarray], top_k: int):
        self.symbols, self.top_k = symbols, top_k
        self.escapes = [iter(e.tolist()) for e in escapes]

    def next_tokens(self, rows: np.ndarray, position: int, logits: torch.Tensor) -> np.ndarray:
        wanted = np.array([self.symbols[chunk][position] for chunk in rows], dtype=np.int64)
        tokens = np.empty(len(rows), dtype=np.int64)
        ranked = wanted != self.top_k
        if ranked.any():
            picked = torch.from_numpy(np.flatnonzero(ranked))
            tokens[ranked] = tokens_at(logits[picked], torch.from_numpy(wanted[ranked])).numpy()
        for index in np.flatnonzero(~ranked):
            tokens[index] = next(self.escapes[rows[index]])
        return tokens


def symbolize(chunks: list[np.ndarray], ranks: list[np.ndarray], top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """One symbol per token (its rank, or ``top_k`` = escape) and the escaped ids, in order."""
    if not chunks:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    tokens, all_ranks = np.concatenate(chunks), np.concatenate(ranks)
    escaped = (all_ranks < 0) | (all_ranks >= top_k)
    return np.where(escaped, top_k, all_ranks), tokens[escaped]
