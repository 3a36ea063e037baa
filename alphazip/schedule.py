"""The lockstep schedule that compression and decompression must share exactly.

Float results of a network depend on how work is batched, so both directions cut the token
stream into the same chunks, step the same groups of ``batch`` chunks one token at a time with
a KV cache, feed the same start token and the same padding after a chunk ends, and in the same
dtype. Where the model learns as it codes (``model.learning``), each learning group's chunks
advance together by the same positions between its learning steps, packing and unpacking alike.
Everything here is a pure function of what the archive header records.
"""

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .coding import FrameDecoder, FrameEncoder
from . import sharing
from .model import LanguageModel, learning
from .model.lm import TRANSFORMERS_ENGINE
from .ranks import ranks_of

Progress = Callable[[int, int], None]  # called with (tokens done so far, tokens in all)

DEFAULT_BATCH = 16  # chunks packed together: 16 x 1,024 tokens give the engine's products rows enough
DECODE_BATCH = 64  # chunks stepped together when unpacking on an invariant engine (any value decodes)


def decoding_batch(model: LanguageModel, engine: str, packed_batch: int, wanted: int | None = None) -> int:
    """Chunks stepped together when decoding: any batch on an invariant engine (``wanted``, else
    ``DECODE_BATCH``), else the packing one."""
    if not model.invariant(engine):
        return packed_batch
    return wanted or DECODE_BATCH


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


def split_chunks(ids: np.ndarray, context: int) -> list[np.ndarray]:
    """Consecutive chunks of ``context`` tokens; the last one may be shorter."""
    return [ids[start:start + context] for start in range(0, len(ids), context)]


@dataclass
class Scores:
    """What the encoding pass learns about each chunk."""

    ranks: list[np.ndarray]  # rank of every token (int32); -1 for ids the logits do not cover
    bits: list[float]  # ideal code length, sum of -log2 p(token), per chunk


class Scorer(FrameEncoder):
    """Ranks and ideal code lengths of a frame's tokens: the bench codes them with every byte
    back-end and compares each coder with the model's ideal."""

    def __init__(self, chunks: list[np.ndarray]):
        self.scores = Scores([np.full(len(chunk), -1, dtype=np.int32) for chunk in chunks], [0.0] * len(chunks))

    def observe(self, rows: Sequence[int], start: int, logits: torch.Tensor, tokens: np.ndarray,
                lengths: np.ndarray) -> None:
        flat = logits.reshape(-1, logits.shape[-1])
        target = torch.from_numpy(np.ascontiguousarray(tokens).reshape(-1))
        ranks = ranks_of(flat, target).view(len(rows), -1).numpy()
        bits = _ideal_bits(flat, target).reshape(len(rows), -1)
        for row, chunk in enumerate(rows):
            live = max(min(tokens.shape[1], int(lengths[row]) - start), 0)
            self.scores.ranks[chunk][start:start + live] = ranks[row, :live]
            self.scores.bits[chunk] += float(bits[row, :live].sum())

    def streams(self) -> list[bytes]:
        raise TypeError("a Scorer measures; RankCoder.streams codes its ranks")


class _Counter:
    """Tokens done so far, reported to an optional progress callback."""

    def __init__(self, total: int, progress: Progress | None):
        self.done, self.total, self.progress = 0, total, progress

    def add(self, tokens: int) -> None:
        self.done += tokens
        if self.progress:
            self.progress(self.done, self.total)


def score_chunks(model: LanguageModel, chunks: list[np.ndarray], batch: int, progress: Progress | None = None,
                 engine: str = TRANSFORMERS_ENGINE) -> Scores:
    """Rank every token of every chunk and measure its ideal code length."""
    scorer = Scorer(chunks)
    encode_chunks(model, chunks, batch, [scorer], progress, engine)
    return scorer.scores


@torch.inference_mode()
def encode_chunks(model: LanguageModel, chunks: list[np.ndarray], batch: int, encoders: list[FrameEncoder],
                  progress: Progress | None = None, engine: str = TRANSFORMERS_ENGINE) -> None:
    """Show ``encoders`` the logits before every token of every chunk: in lockstep, or in whole
    segments where ``engine`` allows. One pass of the model serves them all."""
    count = _Counter(sum(map(len, chunks)), progress)
    if model.learns(engine):
        for group in learning_groups([len(chunk) for chunk in chunks]):
            _encode_learning(model, chunks, group, batch, encoders, engine, count)
        return
    lockstep = [group for encoder in encoders for group in encoder.lockstep]
    for span in lockstep_spans(len(chunks), batch, lockstep):  # the decoder's batches on engines that need them
        for run in batches(span, batch):
            _encode_group(model, chunks, list(run), encoders, engine, count)


def _encode_group(model: LanguageModel, chunks: list[np.ndarray], rows: list[int], encoders: list[FrameEncoder],
                  engine: str, count: _Counter) -> None:
    """One group's pass. A function of its own, so that the group's KV cache and logits are freed
    before the next group allocates its own (a second cache at once raised the peak RSS by
    hundreds of MB)."""
    run = _Run(model, chunks, rows, engine)
    for start in range(0, run.tokens.shape[1], run.stepper.segment):
        stop = min(start + run.stepper.segment, run.tokens.shape[1])
        run.advance(start, stop, encoders, count)


def _encode_learning(model: LanguageModel, chunks: list[np.ndarray], group: range, batch: int,
                     encoders: list[FrameEncoder], engine: str, count: _Counter) -> None:
    """One learning group's pass: its chunks in runs of ``batch``, all advanced by the same
    ``learning.EVERY`` positions before the model learns from them, as the decoder steps them."""
    learner = model.learner(engine)
    runs = [_Run(model, chunks, list(run), engine, learner) for run in batches(group, batch)]
    longest = max(run.tokens.shape[1] for run in runs)
    for start in range(0, longest, learning.EVERY):
        for run in runs:
            end = min(start + learning.EVERY, run.tokens.shape[1])
            for at in range(start, end, run.stepper.segment):
                run.advance(at, min(at + run.stepper.segment, end), encoders, count, learner)
        if start + learning.EVERY < longest:
            learner.learn()


class _Run:
    """Chunks advanced together when packing: their tokens, the model's inputs and a stepper."""

    def __init__(self, model: LanguageModel, chunks: list[np.ndarray], rows: list[int], engine: str, learner=None):
        members = [chunks[i] for i in rows]
        self.rows = rows
        self.tokens = _padded(members, fill=model.bos_id)
        self.inputs = np.concatenate([np.full((len(members), 1), model.bos_id, dtype=np.int64), self.tokens[:, :-1]],
                                     axis=1)
        self.lengths = np.array([len(m) for m in members])
        self.stepper = model.stepper(len(members), self.tokens.shape[1], engine, learner)

    def advance(self, start: int, stop: int, encoders: list[FrameEncoder], count: _Counter, learner=None) -> None:
        """Positions start..stop-1: their logits shown to ``encoders`` (and to ``learner``)."""
        if learner is None:
            logits = self.stepper.advance(self.inputs[:, start:stop])  # [B, T, V]
        else:
            trace = []
            logits = self.stepper.advance(self.inputs[:, start:stop], trace)
        hidden = getattr(self.stepper, "features", None)  # the engines that give it: the same when unpacking
        for encoder in encoders:
            if hidden is not None:
                encoder.features(self.rows, start, hidden)
            encoder.observe(self.rows, start, logits, self.tokens[:, start:stop], self.lengths)
        if learner:
            targets = torch.from_numpy(self.tokens[:, start:stop])
            learner.observe(trace, logits, targets, _scored(targets, start, self.lengths, logits.shape[-1]))
        count.add(int(np.clip(self.lengths - start, 0, stop - start).sum()))


def _scored(targets: torch.Tensor, start: int, lengths: np.ndarray, width: int) -> torch.Tensor:
    """Which of ``targets`` [B, T] (positions start..) learning takes: those inside their chunk
    and inside the logits (raw-byte ids beyond them are escaped, not predicted)."""
    positions = torch.arange(start, start + targets.shape[1])
    return (positions[None, :] < torch.from_numpy(lengths)[:, None]) & (targets < width)


def learning_groups(lengths: list[int]) -> list[range]:
    """The chunks that learn together, each group from the model as it was: the sharing groups,
    which a decoder forms from the chunk lengths alone."""
    return sharing.groups(lengths)


@torch.inference_mode()
def decode_chunks(model: LanguageModel, decoder: FrameDecoder, chunk_tokens: list[int], batch: int,
                  progress: Progress | None = None, engine: str = TRANSFORMERS_ENGINE) -> list[np.ndarray]:
    """Token ids of every chunk, read back from ``decoder`` one position of a span at a time."""
    decoded = []
    count = _Counter(sum(chunk_tokens), progress)
    learns = model.learns(engine)
    spans = learning_groups(chunk_tokens) if learns else lockstep_spans(len(chunk_tokens), batch, decoder.lockstep)
    for span in spans:
        decoded += _decode_span(model, decoder, span, chunk_tokens, batch, engine, count)
    decoder.finish()
    return decoded


def lockstep_spans(count: int, batch: int, lockstep: list[range]) -> list[range]:
    """Consecutive chunks stepped position by position together: up to ``batch`` of them, but
    a group of ``lockstep`` never split (a group larger than ``batch`` is a span of its own)."""
    units, chunk = [], 0
    for group in sorted(lockstep, key=lambda group: group.start):
        units += [range(single, single + 1) for single in range(chunk, group.start)] + [group]
        chunk = group.stop
    units += [range(single, single + 1) for single in range(chunk, count)]
    spans: list[range] = []
    for unit in units:
        if spans and len(spans[-1]) + len(unit) <= batch:
            spans[-1] = range(spans[-1].start, unit.stop)
        else:
            spans.append(unit)
    return spans


def batches(span: range, batch: int) -> list[range]:
    """A span's chunks in runs of at most ``batch``: each run one batch of the model."""
    return [range(start, min(start + batch, span.stop)) for start in range(span.start, span.stop, batch)]


def _decode_span(model: LanguageModel, decoder: FrameDecoder, span: range, chunk_tokens: list[int], batch: int,
                 engine: str, count: _Counter) -> list[np.ndarray]:
    """Token ids of one span's chunks, each of its ``batches`` stepped by a stepper of its own (a
    function of its own for the reason of ``_encode_group``)."""
    rows = np.array(span)
    lengths = np.array([chunk_tokens[chunk] for chunk in span])
    tokens = np.full((len(rows), int(lengths.max(initial=0))), model.bos_id, dtype=np.int64)
    parts = [slice(run.start - span.start, run.stop - span.start) for run in batches(span, batch)]
    ends = [int(lengths[part].max()) for part in parts]  # each part's longest chunk
    learner = model.learner(engine)
    steppers = [model.stepper(part.stop - part.start, end, engine, learner) for part, end in zip(parts, ends)]
    previous = np.full(len(rows), model.bos_id, dtype=np.int64)
    for t in range(tokens.shape[1]):
        stepping = [i for i, end in enumerate(ends) if t < end]
        traces = {i: [] if learner else None for i in stepping}
        logits = stepped = torch.cat([_step(steppers[i], previous[parts[i]], traces[i]) for i in stepping])  # [B, V]
        states = [getattr(steppers[i], "features", None) for i in stepping]  # engines that give it
        hidden = None if any(state is None for state in states) else torch.cat([state[:, 0] for state in states])
        at = np.concatenate([np.arange(parts[i].start, parts[i].stop) for i in stepping])
        keep = np.flatnonzero(t < lengths[at])
        if len(keep) < len(at):
            logits = logits[torch.from_numpy(keep)]
            hidden = None if hidden is None else hidden[torch.from_numpy(keep)]
        live = at[keep]
        if hidden is not None:
            decoder.features(rows[live], t, hidden)
        tokens[live, t] = decoder.next_tokens(rows[live], t, logits)
        previous = tokens[:, t]
        count.add(len(live))
        if learner:
            _learn_step(learner, traces, parts, tokens, lengths, t, stepped)
    return [tokens[row, :length] for row, length in enumerate(lengths)]


def _step(stepper, previous: np.ndarray, trace: list | None) -> torch.Tensor:
    """One position's logits [B, V] after ``previous`` [B]; what learning needs goes to ``trace``."""
    return stepper.step(previous) if trace is None else stepper.advance(previous[:, None], trace)[:, 0]


def _learn_step(learner, traces: dict, parts: list[slice], tokens: np.ndarray, lengths: np.ndarray, t: int,
                logits: torch.Tensor) -> None:
    """Show ``learner`` position t of the stepped parts (their logits [B, V] side by side, as
    stepped); learn at the end of each ``learning.EVERY`` positions, as packing did."""
    width, first = logits.shape[-1], 0
    for i, trace in traces.items():
        part = parts[i]
        count = part.stop - part.start
        targets = torch.from_numpy(tokens[part, t:t + 1])
        learner.observe(trace, logits[first:first + count, None], targets, _scored(targets, t, lengths[part], width))
        first += count
    if (t + 1) % learning.EVERY == 0 and t + 1 < tokens.shape[1]:
        learner.learn()


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
