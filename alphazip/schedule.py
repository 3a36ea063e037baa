"""The lockstep schedule that compression and decompression must share exactly.

Float results of a network depend on how work is batched, so both directions cut the token
stream into the same chunks, step the same groups of ``batch`` chunks one token at a time with
a KV cache, feed the same start token and the same padding after a chunk ends, and in the same
dtype. Everything here is a pure function of what the archive header records.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .model import LanguageModel
from .model.lm import TRANSFORMERS_ENGINE
from .ranks import ranks_of, tokens_at

Progress = Callable[[int, int], None]  # called with (tokens done so far, tokens in all)


def split_chunks(ids: np.ndarray, context: int) -> list[np.ndarray]:
    """Consecutive chunks of ``context`` tokens; the last one may be shorter."""
    return [ids[start:start + context] for start in range(0, len(ids), context)]


def groups(count: int, batch: int) -> Iterator[range]:
    """Chunk indices of each lockstep group, in order."""
    for start in range(0, count, batch):
        yield range(start, min(start + batch, count))


@dataclass
class Scores:
    """What the encoding pass learns about each chunk."""

    ranks: list[np.ndarray]  # rank of every token (int32); -1 for ids the logits do not cover
    bits: list[float]  # ideal code length, sum of -log2 p(token), per chunk


class _Counter:
    """Tokens done so far, reported to an optional progress callback."""

    def __init__(self, total: int, progress: Progress | None):
        self.done, self.total, self.progress = 0, total, progress

    def add(self, tokens: int) -> None:
        self.done += tokens
        if self.progress:
            self.progress(self.done, self.total)


@torch.inference_mode()
def score_chunks(model: LanguageModel, chunks: list[np.ndarray], batch: int, progress: Progress | None = None,
                 engine: str = TRANSFORMERS_ENGINE) -> Scores:
    """Rank every token of every chunk: in lockstep, or in whole segments where ``engine`` allows."""
    scores = Scores([], [])
    count = _Counter(sum(map(len, chunks)), progress)
    for group in groups(len(chunks), batch):
        ranks, bits = _score_group(model, [chunks[i] for i in group], engine, count)
        scores.ranks += ranks
        scores.bits += bits
    return scores


def _score_group(model: LanguageModel, members: list[np.ndarray], engine: str,
                 count: _Counter) -> tuple[list[np.ndarray], list[float]]:
    """Ranks and ideal bits of one group's chunks. A function of its own, so that the group's KV
    cache and logits are freed before the next group allocates its own (a second cache at once
    raised the peak RSS by hundreds of MB)."""
    tokens = _padded(members, fill=model.bos_id)
    inputs = np.concatenate([np.full((len(members), 1), model.bos_id, dtype=np.int64), tokens[:, :-1]], axis=1)
    ranks = np.full(tokens.shape, -1, dtype=np.int32)
    bits = np.zeros(len(members))
    lengths = np.array([len(m) for m in members])
    stepper = model.stepper(len(members), tokens.shape[1], engine)
    for start in range(0, tokens.shape[1], stepper.segment):
        stop = min(start + stepper.segment, tokens.shape[1])
        logits = stepper.advance(inputs[:, start:stop])
        flat = logits.reshape(-1, logits.shape[-1])
        target = torch.from_numpy(np.ascontiguousarray(tokens[:, start:stop]).reshape(-1))
        live = np.arange(start, stop)[None, :] < lengths[:, None]
        ranks[:, start:stop] = ranks_of(flat, target).view(len(members), -1).numpy()
        bits += (_ideal_bits(flat, target).reshape(len(members), -1) * live).sum(1)
        count.add(int(live.sum()))
    return [ranks[row, :length] for row, length in enumerate(lengths)], bits.tolist()


@torch.inference_mode()
def decode_chunks(
    model: LanguageModel,
    symbols: list[np.ndarray],
    escapes: list[np.ndarray],
    top_k: int,
    batch: int,
    progress: Progress | None = None,
    engine: str = TRANSFORMERS_ENGINE,
) -> list[np.ndarray]:
    """Token ids of every chunk from its rank symbols (``top_k`` = escape) and escaped ids."""
    decoded = []
    count = _Counter(sum(map(len, symbols)), progress)
    for group in groups(len(symbols), batch):
        decoded += _decode_group(model, [symbols[i] for i in group], [escapes[i] for i in group], top_k, engine, count)
    return decoded


def _decode_group(model: LanguageModel, symbols: list[np.ndarray], escapes: list[np.ndarray], top_k: int,
                  engine: str, count: _Counter) -> list[np.ndarray]:
    """Token ids of one group's chunks (a function of its own for the reason of ``_score_group``)."""
    wanted = _padded(symbols, fill=0)
    lengths = np.array([len(s) for s in symbols])
    escape_ids = [iter(e.tolist()) for e in escapes]
    tokens = np.full(wanted.shape, model.bos_id, dtype=np.int64)
    stepper = model.stepper(len(symbols), wanted.shape[1], engine)
    previous = np.full(len(symbols), model.bos_id, dtype=np.int64)
    for t in range(wanted.shape[1]):
        logits = stepper.step(previous)
        live = t < lengths
        ranked = live & (wanted[:, t] != top_k)
        if ranked.any():
            rows = torch.from_numpy(np.flatnonzero(ranked))
            found = tokens_at(logits[rows], torch.from_numpy(wanted[ranked, t]))
            tokens[ranked, t] = found.numpy()
        for row in np.flatnonzero(live & ~ranked):
            tokens[row, t] = next(escape_ids[row])
        previous = tokens[:, t]
        count.add(int(live.sum()))
    return [tokens[row, :length] for row, length in enumerate(lengths)]


def _padded(rows: list[np.ndarray], fill: int) -> np.ndarray:
    """Stack rows into a [len(rows), longest] array, padding short rows with ``fill``."""
    out = np.full((len(rows), max((len(r) for r in rows), default=0)), fill, dtype=np.int64)
    for index, row in enumerate(rows):
        out[index, : len(row)] = row
    return out


def _ideal_bits(logits: torch.Tensor, tokens: torch.Tensor) -> np.ndarray:
    """-log2 p(token) per row; ids outside the logits cost nothing here (they are escaped)."""
    width = logits.shape[1]
    inside = tokens < width
    # log p = logit - logsumexp: no [rows, vocabulary] array of log-probabilities is made.
    picked = logits.gather(1, torch.where(inside, tokens, 0)[:, None])[:, 0] - torch.logsumexp(logits, dim=1)
    return (-picked / np.log(2) * inside).double().numpy()
