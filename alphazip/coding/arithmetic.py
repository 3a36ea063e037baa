"""``ac``: every token range-coded under the model's distribution, adapted to the text by a
log-space bias and mixed with what the history of the chunk's group predicts (``sharing``),
its tokens and the model's states along them (``recall``); ``ac-3``: the same without recall,
``ac-2``: also with each chunk's own history only, ``ac-1``: also without the bias (archives of
before them); ``ac-plain``: under the model's distribution alone.

The logits (plus the chunk's bias, ``bias``) become integer frequencies (``frequencies``: exact,
so the decoder rebuilds the same table on any machine), followed by one escape symbol of
frequency 1 for ids beyond the logits (raw-byte tokens), each then coded uniformly among those
ids. With mixing (``mixing``: match and n-gram experts over the tokens so far), a few candidate
tokens get extra frequency, in integers the decoder recomputes from the same history. Every
chunk has its own range coder, bias and mixer weights, so unpacking still steps many chunks side
by side in any batch; with ``sharing``, the chunks of a group are stepped together.

A frame's first stream holds the chunks' codes, each but the last preceded by its length
(varints, then the codes in chunk order); the second stream is empty.
"""

import copy
from collections.abc import Sequence

import numpy as np
import torch

from ..backends import Backend, get_backend
from ..backends.text_cm import TaggedRaw
from .. import recall
from ..compact import ByteReader, varint
from ..errors import BadArchiveError
from ..mixing import FREQ_BITS, ChunkMixer
from ..sharing import Recorded, SharedHistory, groups
from .bias import ChunkBiases
from .base import FrameDecoder, FrameEncoder, TokenCoder
from .frequencies import FrequencyLookup, coding_facts
from .rangecoder import RangeDecoder, RangeEncoder

ESCAPE = 1  # the escape symbol's frequency, after the model's tokens
RAW_BACKEND = "brotli"  # raw frames of ac-1 and ac-plain


class ArithmeticCoder(TokenCoder):
    name = "ac"
    mixing = True
    bias = True
    tagged_raw = True  # raw frames: brotli, or text_cm's mixing coder where the model lost
    sharing = True  # a group's chunks share their experts' history
    recalling = True  # and the model's states along it (engines that give them)

    @property
    def raw_backend(self) -> Backend:
        return TaggedRaw() if self.tagged_raw else get_backend(RAW_BACKEND)

    def raw_payload(self, piece: bytes, to_beat: int | None = None) -> bytes:
        if self.tagged_raw:
            return TaggedRaw().encode(np.frombuffer(piece, np.uint8), 256, to_beat)
        return super().raw_payload(piece, to_beat)

    def with_learning_head(self) -> "ArithmeticCoder":
        """Without the bias: the model's head learns what the bias would (the text's own words),
        and both together code worse than either (docs/results.md, stop 34)."""
        if not self.bias:
            return self
        coder = copy.copy(self)
        coder.bias = False
        return coder

    def encoder(self, chunks: list[np.ndarray], model, top_k: int) -> "ArithmeticEncoder":
        return ArithmeticEncoder([len(chunk) for chunk in chunks], model.logits_size, model.tokenizer.id_space,
                                 self.mixing, self.bias, chunks if self.sharing else None, self.recalling)

    def decoder(self, streams: list[bytes], chunk_tokens: list[int], model, top_k: int) -> "ArithmeticDecoder":
        return ArithmeticDecoder(streams, chunk_tokens, model.logits_size, model.tokenizer.id_space, self.mixing,
                                 self.bias, self.sharing, self.recalling)


class UnrecallingArithmeticCoder(ArithmeticCoder):
    name = "ac-3"
    recalling = False


class UnsharedArithmeticCoder(ArithmeticCoder):
    name = "ac-2"
    sharing = recalling = False


class UnbiasedArithmeticCoder(ArithmeticCoder):
    name = "ac-1"
    bias = tagged_raw = sharing = recalling = False


class PlainArithmeticCoder(ArithmeticCoder):
    name = "ac-plain"
    mixing = bias = tagged_raw = sharing = recalling = False


class _Chunks:
    """What encoder and decoder share: the ids beyond the logits, a bias and a mixer per chunk
    (``histories``: where each chunk's mixer takes its experts from; None: the chunk's own)."""

    def __init__(self, lengths: list[int], width: int, id_space: int, mixing: bool, bias: bool,
                 histories: list | None = None):
        self.width, self.beyond = width, id_space - width  # ids the escape stands for
        histories = histories or [None] * len(lengths)
        self.mixers = [ChunkMixer(width, history) for history in histories] if mixing else None
        self.biases = ChunkBiases(lengths, width) if bias else None

    def candidates(self, chunk: int, top: int, total: int) -> list[tuple[int, int]]:
        """(token, extra frequency) of the chunk's mixer, by token id; the mixer's weights count in
        units where the model's table sums to 2^FREQ_BITS, ours sums to ``total``."""
        if self.mixers is None:
            return []
        extras = sorted((token, weight * total >> FREQ_BITS)
                        for token, weight in self.mixers[chunk].additions(top).items())
        return [(token, extra) for token, extra in extras if extra > 0]

    def learn(self, chunk: int, token: int, model_freq: int | None, total: int) -> None:
        """Tell the chunk's mixer the coded token and the model's frequency of it (None: escaped)."""
        if self.mixers is not None:
            # at least 1: the mixer divides by it (a token the model all but excluded still came)
            share = None if model_freq is None else max(1, (model_freq << FREQ_BITS) // total)
            self.mixers[chunk].learn(token, share)


class ArithmeticEncoder(FrameEncoder, _Chunks):
    """``chunks``: the frame's tokens, given when its groups share their history (recorded once
    every chunk was observed, with the model's states if ``recalling``).

    Observing a position computes its facts under the model (biased): the coded token's
    cumulative frequency, its frequency, the total and the model's first choice. They are all
    that mixing needs of the model, so the tokens are mixed and coded in :meth:`streams`, once
    the whole group's states are known."""

    def __init__(self, lengths: list[int], width: int, id_space: int, mixing: bool = True, bias: bool = True,
                 chunks: list[np.ndarray] | None = None, recalling: bool = False):
        histories = self._recorded = None
        if chunks is not None and mixing:
            self._recorded = Recorded(chunks, recalling)
            self.lockstep = self._recorded.groups
            histories = [self._recorded.member(chunk) for chunk in range(len(chunks))]
        _Chunks.__init__(self, lengths, width, id_space, mixing, bias, histories)
        self._facts: list[list[tuple[int, int, int, int, int]]] = [[] for _ in lengths]

    def features(self, rows: Sequence[int], start: int, hidden: torch.Tensor) -> None:
        if self._recorded is not None:
            states = hidden.float().numpy()
            for row, chunk in enumerate(rows):
                self._recorded.remember(chunk, start, states[row])

    def observe(self, rows: Sequence[int], start: int, logits: torch.Tensor, tokens: np.ndarray,
                lengths: np.ndarray) -> None:
        count = tokens.shape[1]
        flat_logits = logits.reshape(-1, logits.shape[-1])  # row r * count + t: chunk r's position start + t
        flat_tokens = np.ascontiguousarray(tokens, dtype=np.int64).reshape(-1)
        live = np.arange(start, start + count)[None, :] < lengths[:, None]  # [R, count]
        if self.biases is None:  # nothing carried between positions: all in one call, row-major
            self._code_positions(rows, np.flatnonzero(live), flat_logits, flat_tokens, count, None)
            return
        for step in range(count):  # a chunk's bias at a position depends on the tokens before it
            where = np.flatnonzero(live[:, step]) * count + step
            if not where.size:
                break
            self._code_positions(rows, where, flat_logits, flat_tokens, count, start + step)

    def _code_positions(self, rows: Sequence[int], where: np.ndarray, flat_logits: torch.Tensor,
                        flat_tokens: np.ndarray, count: int, position: int | None) -> None:
        """Code the tokens at flat indices ``where`` (each chunk's in order); ``position``: theirs,
        all at one position of their chunks, when the chunks' biases learn from them."""
        chunks = [rows[r] for r in (where // count).tolist()]
        ids, at = torch.from_numpy(flat_tokens[where]), torch.from_numpy(where)
        if position is not None:  # biased, coded and learnt from in one call
            cums, freqs, totals, tops = self.biases.facts(chunks, position, flat_logits, at, ids)
        else:
            flat = flat_logits[at]
            tops = flat.argmax(1).tolist() if self.mixers is not None else [0] * len(where)
            cums, freqs, totals = (t.tolist() for t in coding_facts(flat, torch.where(ids < self.width, ids, 0)))
        for index, (token, chunk) in enumerate(zip(ids.tolist(), chunks)):
            self._facts[chunk].append((token, cums[index], freqs[index], totals[index], tops[index]))

    def _code(self, coder: RangeEncoder, token: int, cum: int, freq: int, total: int,
              extras: list[tuple[int, int]]) -> None:
        """Token under the model's frequencies with ``extras`` added at their tokens, then the escape."""
        added = sum(extra for _, extra in extras)
        whole = total + added + ESCAPE
        if token < self.width:
            before = sum(extra for candidate, extra in extras if candidate < token)
            own = sum(extra for candidate, extra in extras if candidate == token)
            coder.encode(cum + before, freq + own, whole)
        else:
            coder.encode(total + added, ESCAPE, whole)
            coder.encode(token - self.width, 1, self.beyond)

    def streams(self) -> list[bytes]:
        codes = []
        for chunk, facts in enumerate(self._facts):
            coder = RangeEncoder()
            for token, cum, freq, total, top in facts:
                extras = self.candidates(chunk, top, total)
                self._code(coder, token, cum, freq, total, extras)
                self.learn(chunk, token, freq if token < self.width else None, total)
            facts.clear()
            codes.append(coder.finish())
        return [b"".join(varint(len(code)) for code in codes[:-1]) + b"".join(codes), b""]


class ArithmeticDecoder(FrameDecoder, _Chunks):
    def __init__(self, streams: list[bytes], lengths: list[int], width: int, id_space: int, mixing: bool = True,
                 bias: bool = True, sharing: bool = False, recalling: bool = False):
        if streams[1]:
            raise BadArchiveError("archive is corrupt (an arithmetic-coded frame with a second stream)")
        self.lockstep = groups(lengths) if sharing and mixing else []
        shared = [SharedHistory([lengths[chunk] for chunk in group], recalling) for group in self.lockstep]
        # chunk -> (its group's history, its index there), for the model's states
        self._in_group = {chunk: (history, index) for group, history in zip(self.lockstep, shared)
                          for index, chunk in enumerate(group)}
        self._recalling = recalling and bool(shared)
        histories = [member for history in shared for member in history.members] or None
        _Chunks.__init__(self, lengths, width, id_space, mixing, bias, histories)
        self.decoders = [RangeDecoder(code) for code in _split_codes(streams[0], len(lengths))]

    def features(self, rows: np.ndarray, position: int, hidden: torch.Tensor) -> None:
        if not self._recalling:
            return
        keys, norms = recall.keys_of(hidden.float().numpy())
        shown: dict[SharedHistory, tuple[list[int], list[int]]] = {}  # per group: indices there, rows
        for row, chunk in enumerate(rows.tolist()):
            history, index = self._in_group[chunk]
            indices, at = shown.setdefault(history, ([], []))
            indices.append(index)
            at.append(row)
        for history, (indices, at) in shown.items():
            history.query(indices, keys[at], norms[at])

    def next_tokens(self, rows: np.ndarray, position: int, logits: torch.Tensor) -> np.ndarray:
        chunks = rows.tolist()
        if self.biases is not None:
            logits, tops = self.biases.biased(chunks, logits)
        else:
            tops = logits.argmax(1).tolist() if self.mixers is not None else [0] * len(rows)
        lookup = FrequencyLookup(logits)
        totals = lookup.totals.tolist()
        extras = [self.candidates(chunk, tops[i], totals[i]) for i, chunk in enumerate(rows)]
        candidates = self._with_model_frequencies(lookup, extras)
        decoders = [self.decoders[chunk] for chunk in rows]
        wholes = [total + sum(extra for _, extra in row) + ESCAPE for total, row in zip(totals, extras)]
        targets = [decoder.target(whole) for decoder, whole in zip(decoders, wholes)]
        picks = [_among_candidates(target, row) for target, row in zip(targets, candidates)]
        others = [i for i, pick in enumerate(picks) if pick[0] is None]  # the target lies between candidates
        found = lookup.find(others, [targets[i] - picks[i][1] for i in others]) if others else ([], [], [])
        for i, token, cum, freq in zip(others, *found):
            picks[i] = (token, picks[i][1] + cum, freq, freq)
        tokens = np.empty(len(rows), dtype=np.int64)
        for i, (decoder, (token, cum, freq, model_freq)) in enumerate(zip(decoders, picks)):
            if token < self.width:
                decoder.consume(cum, freq)
                self.learn(int(rows[i]), token, model_freq, totals[i])
            else:  # the escape: an id beyond the logits follows
                decoder.consume(cum, ESCAPE)
                if self.beyond < 1:
                    raise BadArchiveError("arithmetic-coded stream is corrupt (an escape with no ids to escape to)")
                offset = decoder.target(self.beyond)
                decoder.consume(offset, 1)
                token = self.width + offset
                self.learn(int(rows[i]), token, None, totals[i])
            tokens[i] = token
        if self.biases is not None:
            self.biases.learn(chunks, position, lookup.logits, lookup.totals, torch.from_numpy(tokens))
        return tokens

    @staticmethod
    def _with_model_frequencies(lookup: FrequencyLookup, extras: list[list[tuple[int, int]]]) -> list[list[tuple]]:
        """Each row's candidates as (token, extra, the model's cum before it, its frequency), one look-up."""
        rows = [i for i, row in enumerate(extras) for _ in row]
        if not rows:
            return [[] for _ in extras]
        cums, freqs = lookup.at(rows, [token for row in extras for token, _ in row])
        flat = iter(zip(cums, freqs))
        return [[(token, extra, *next(flat)) for token, extra in row] for row in extras]

    def finish(self) -> None:
        for decoder in self.decoders:
            decoder.check_end()


def _among_candidates(target: int, candidates: list[tuple]) -> tuple:
    """(token, cum, freq, the model's freq) if ``target`` falls on a candidate's span; else (None,
    the candidates' extra frequency before it): the token is then found among the others by the
    model's frequencies alone, at ``target`` minus that. Spans follow token order: a token's cum
    is the model's cum plus the extras of candidates before it."""
    added = 0
    for token, extra, model_cum, model_freq in candidates:
        start = model_cum + added
        if target < start:
            break
        if target < start + model_freq + extra:
            return token, start, model_freq + extra, model_freq
        added += extra
    return None, added


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
