"""Experts shared by a group of chunks decoded side by side.

A chunk's match and n-gram experts (``mixing``) see only that chunk's tokens, so markup that
repeats every few hundred tokens across a file is new to every chunk. But chunks are decoded in
lockstep: at position t, every chunk of a group is at t, and the group's tokens before t are
known to both sides. So a group's chunks share their experts' tables: a context seen at
position 200 of chunk 3 predicts position 500 of chunk 17.

The groups follow from the chunk lengths alone (``groups``), so a decoder forms the same ones
whatever its batch, and steps each group's chunks together (``FrameDecoder.lockstep``). Step t
commits once every chunk of the group longer than t has added its token t: the match pointers
advance, then contexts enter the tables in chunk order. Predictions at t read only what the
steps before t committed. The encoder knows every token beforehand and records each chunk's
predictions by running the very same group over them (``Recorded``), so it may code the chunks
in any order.

Settings that change the bitstream: everything in this module.
"""

from collections.abc import Sequence

import numpy as np

from . import recall
from .mixing import MATCH_LENGTHS, ORDERS, RECALL_EXPERT, MatchModel, NGramModel, agreement, match_bucket

# A group is stepped together whatever the decoding batch: its KV caches are allocated at once.
SPAN_POSITIONS = 1 << 16  # positions in a group at most: 64 chunks of 1,024 tokens, 8 of 8,192
SPAN_CHUNKS = 64  # chunks in a group at most: short chunks' per-step logits add up too


def groups(lengths: Sequence[int]) -> list[range]:
    """The chunks of each sharing group, in order: as many as SPAN_POSITIONS allows at the
    longest chunk's length, SPAN_CHUNKS at most."""
    size = min(SPAN_CHUNKS, max(1, SPAN_POSITIONS // max(max(lengths, default=1), 1)))
    return [range(start, min(start + size, len(lengths))) for start in range(0, len(lengths), size)]


class SharedHistory:
    """The tokens of a group's chunks so far and the expert tables over all of them; with
    ``recalling``, also the model's states before them (``recall``), as ``query`` shows them."""

    def __init__(self, lengths: Sequence[int], recalling: bool = False):
        self.lengths = list(lengths)
        self.recalling = recalling
        self.memory: recall.Memory | None = None  # allocated at the first query, freed at the last step
        self._queries: dict[int, tuple[np.ndarray, float]] = {}  # chunk -> its key and norm at ``step``
        self.recalled: dict[int, tuple] = {}  # chunk -> what the memory predicts at ``step``
        self.tokens: list[list[int]] = [[] for _ in self.lengths]
        self.step = 0  # positions committed
        self._waiting = self._live_at(0)  # chunks yet to add their token at ``step``
        self._follower = [{} for _ in MATCH_LENGTHS]  # context -> (chunk, index of the token after it)
        self._ngrams = [NGramModel(order) for order in ORDERS]  # one table per order over every chunk
        self.members = [Member(self, chunk) for chunk in range(len(self.lengths))]

    def _live_at(self, position: int) -> int:
        return sum(length > position for length in self.lengths)

    def add(self, chunk: int, token: int) -> None:
        """Chunk ``chunk``'s token at the current step; the last of the step commits it."""
        tokens = self.tokens[chunk]
        if len(tokens) != self.step or self.step >= self.lengths[chunk]:
            raise RuntimeError("chunks of a sharing group were stepped out of lockstep")
        tokens.append(token)
        self._waiting -= 1
        if self._waiting == 0:
            live = [chunk for chunk, length in enumerate(self.lengths) if length > self.step]
            for chunk in live:  # pointers first: they look up what earlier steps committed
                self.members[chunk].advance()
            for chunk in live:
                self._enter(chunk)
            self._remember(live)
            self.step += 1
            self._waiting = self._live_at(self.step)

    def query(self, chunks: Sequence[int], keys: np.ndarray, norms: np.ndarray) -> None:
        """The keys of the model's states before the current step's tokens of ``chunks``: what the
        memory predicts for them (the states of the steps before) is then in ``recalled``."""
        if not self.recalling:
            return
        if self.memory is None:
            self.memory = recall.Memory(sum(self.lengths))
        for chunk, key, norm, found in zip(chunks, keys, norms, self.memory.predict(keys, norms)):
            self._queries[chunk] = (key, norm)
            if found is not None:
                self.recalled[chunk] = found

    def _remember(self, live: list[int]) -> None:
        # Each state queried at this step, with the token that followed it, in chunk order.
        shown = [chunk for chunk in live if chunk in self._queries]
        if self.step + 1 == max(self.lengths):  # the group's last step: nothing will ask again
            self.memory = None
        elif shown:
            self.memory.add(np.stack([self._queries[chunk][0] for chunk in shown]),
                            np.array([self._queries[chunk][1] for chunk in shown]),
                            [self.tokens[chunk][-1] for chunk in shown])
        self._queries.clear()
        self.recalled.clear()

    def _enter(self, chunk: int) -> None:
        tokens = self.tokens[chunk]
        n = len(tokens)
        for table, length in zip(self._follower, MATCH_LENGTHS):
            if n >= length:
                table[tuple(tokens[n - length:])] = (chunk, n)
        for ngram in self._ngrams:
            ngram.update(tokens)


class Member:
    """One chunk's view of its group: its match pointers, and the history ``ChunkMixer`` asks."""

    def __init__(self, group: SharedHistory, chunk: int):
        self.group, self.chunk = group, chunk
        self._pointers = [[-1, 0, 0] for _ in MATCH_LENGTHS]  # [chunk, index, length], chunk -1: none

    def experts(self):
        """(expert, bucket, {token: count}, sum of counts) of each expert that predicts."""
        group, own = self.group, self.group.tokens[self.chunk]
        if len(own) != group.step:
            raise RuntimeError("chunks of a sharing group were stepped out of lockstep")
        for expert, (chunk, index, length) in enumerate(self._pointers):
            if chunk >= 0 and index < len(group.tokens[chunk]):  # a token not decoded yet predicts nothing
                yield expert, match_bucket(length), {group.tokens[chunk][index]: 1}, 1
        for expert, ngram in enumerate(group._ngrams, len(MATCH_LENGTHS)):
            found = ngram.followers(own)
            if found and found[0]:  # a context whose followers all halved to nothing predicts nothing
                yield expert, NGramModel.bucket(*found), *found
        if self.chunk in group.recalled:
            yield RECALL_EXPERT, *group.recalled[self.chunk]

    def append(self, token: int) -> None:
        self.group.add(self.chunk, token)

    def advance(self) -> None:
        """Follow or drop each match pointer after the chunk's newest token; look up a new one."""
        tokens, own = self.group.tokens, self.group.tokens[self.chunk]
        for pointer, follower, length in zip(self._pointers, self.group._follower, MATCH_LENGTHS):
            chunk, index, agreed = pointer
            if chunk >= 0 and index < len(tokens[chunk]) and tokens[chunk][index] == own[-1]:
                pointer[1], pointer[2] = index + 1, min(agreed + 1, MatchModel.LONGEST)
            else:
                pointer[0], pointer[1], pointer[2] = -1, 0, 0
            if pointer[0] < 0 and len(own) >= length:
                found = follower.get(tuple(own[len(own) - length:]))
                if found is not None:
                    pointer[0], pointer[1] = found
                    pointer[2] = agreement(tokens[found[0]], found[1], own)


class Recorded:
    """The encoder's view: every chunk's predictions, recorded by running its group over the
    known tokens, then replayed as the chunk is coded, in any order of chunks. A group is run
    when one of its chunks is first asked, and each chunk's record dropped once coded."""

    def __init__(self, chunks: Sequence[np.ndarray], recalling: bool = False):
        self._chunks = chunks
        self.groups = groups([len(chunk) for chunk in chunks])
        self._group_of = {chunk: group for group in self.groups for chunk in group}
        self._records: dict[int, list] = {}
        self._recalling = recalling
        # the keys of each chunk's states (int8) and their norms, as the model shows them
        self._keys: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def remember(self, chunk: int, start: int, states: np.ndarray) -> None:
        """The model's states [T, hidden] before the chunk's tokens start..start+T-1."""
        if not self._recalling:
            return
        length = len(self._chunks[chunk])
        states = states[:max(length - start, 0)]  # positions after the chunk's end are padding
        keys, norms = recall.keys_of(states)
        if chunk not in self._keys:
            self._keys[chunk] = (np.zeros((length, recall.KEY_DIMS), np.int8), np.zeros(length, np.float64))
        stored, stored_norms = self._keys[chunk]
        stored[start:start + len(keys)], stored_norms[start:start + len(keys)] = keys, norms

    def member(self, chunk: int) -> "Replay":
        return Replay(self, chunk)

    def take(self, chunk: int) -> list:
        if chunk not in self._records:
            self._run(self._group_of[chunk])
        return self._records.pop(chunk)

    def _run(self, members: range) -> None:
        tokens = [self._chunks[chunk].tolist() for chunk in members]
        # recall needs every member's states: none where the engine gives no states
        shown = self._recalling and all(chunk in self._keys for chunk in members)
        group = SharedHistory([len(t) for t in tokens], shown)
        records = [[] for _ in members]
        for position in range(max(group.lengths, default=0)):
            live = [i for i, length in enumerate(group.lengths) if length > position]
            if shown:
                group.query(live, np.stack([self._keys[members[i]][0][position] for i in live]).astype(np.float32),
                            np.array([self._keys[members[i]][1][position] for i in live]))
            for i in live:  # the counts are copied: later steps change them in place
                records[i].append([(e, b, dict(c), s) for e, b, c, s in group.members[i].experts()])
            for i in live:
                group.members[i].append(tokens[i][position])
        for i, chunk in enumerate(members):
            self._records[chunk] = records[i]
            self._keys.pop(chunk, None)


class Replay:
    """One chunk's recorded predictions, a position at a time."""

    def __init__(self, recorded: Recorded, chunk: int):
        self._recorded, self._chunk = recorded, chunk
        self._record: list | None = None
        self._position = 0

    def experts(self):
        if self._record is None:
            self._record = self._recorded.take(self._chunk)
        return self._record[self._position]

    def append(self, token: int) -> None:
        if self._record is None:
            self._record = self._recorded.take(self._chunk)
        self._record[self._position] = None  # coded: its record is not needed again
        self._position += 1
