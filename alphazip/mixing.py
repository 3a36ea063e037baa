"""Mixing the model's distribution with cheap models of the chunk's own history.

A 135M model forgets or under-trusts what it saw earlier in the chunk: long repeats, markup,
identifiers, URLs. An LZP match model and token n-gram counts (orders 1-4) over the chunk's
history each predict a few candidate next tokens, and their predictions are added to the
model's integer frequencies, mixing linear in probability (Nacrith's route)::

    mixed = freqs + sum_i V_i * q_i        q_i: expert i's sparse distribution, sum 1
                                           V_i: its weight, in units where the model weighs 2**24

Each expert's weight is read from a table keyed by its context class (match length; how often
the n-gram context was seen and whether it was always followed by the same token) and by whether
the candidate is the model's own first choice (the argmax of its frequencies), and learned as the
chunk is coded: a gradient step on the coded token's code length, in the log domain, for the
cell and for an offset shared by all of the expert's cells.

Everything is integer arithmetic on the chunk's history, so the decoder rebuilds every weight
bit for bit. Cost per token is bounded (dict look-ups of fixed-length contexts, a match pointer
advanced in place, followers per context capped): it rises while the experts fill in over the
first thousand tokens, then no longer grows with the history's length.
Settings that change the bitstream: everything in this module.
"""

import math

import numpy as np

FREQ_BITS = 24  # the contract: the frequencies handed to mix() are >= 1 and sum to 2**FREQ_BITS
MAX_TOTAL = 1 << 31  # the coder's limit on a mixed table's total

# Weights V = 2**(FREQ_BITS + LOG2_MIN + index / STEPS), index in [0, len(_WEIGHTS)).
STEPS = 16  # table steps per doubling of a weight
LOG2_MIN = -12  # the lightest weight: 1/4096 of the model's
LOG2_MAX = 4  # the heaviest: 16 x the model's; 7 experts at most keep the total below 2**31
FRAC = 16  # fractional bits of a learned table index
RATE = 8 << FRAC  # learning rate of a weight's own cell: index steps for a gradient of 1
SHARED_RATE = 32 << FRAC  # of an offset shared by all of an expert's cells: what a chunk
                          # teaches about the expert as a whole (say, html against prose) is
                          # learnt from every position it predicts, not cell by cell


def _weight_table() -> list[int]:
    # 2**(e/STEPS) by integer roots, so every machine builds the same table (STEPS = 2**4).
    table = []
    for i in range((LOG2_MAX - LOG2_MIN) * STEPS + 1):
        value = 1 << ((FREQ_BITS + LOG2_MIN) * STEPS + i)
        for _ in range(4):
            value = math.isqrt(value)
        table.append(value)
    return table


_WEIGHTS = _weight_table()
_TOP = (len(_WEIGHTS) - 1) << FRAC


class MatchModel:
    """LZP: predicts the token that followed the last occurrence of the current context.

    A context of ``min_len`` tokens finds the latest earlier position with the same tokens; the
    pointer then advances as long as its predictions come true, so a long repeat costs one
    look-up per token however long the history.
    """

    VERIFY = 32  # a new match's length is verified up to here (bounded cost), then grows by hits
    LONGEST = 1 << 16

    def __init__(self, min_len: int):
        self.min_len = min_len
        self._last: dict[tuple, int] = {}  # context -> index of the token that followed it
        self.pointer = -1  # index in the history of the predicted token, -1 when none
        self.length = 0  # tokens before the pointer that agree with the history's end

    def update(self, history: list[int]) -> None:
        """Advance over ``history[-1]``, just appended."""
        n = len(history)
        if self.pointer >= 0 and history[self.pointer] == history[-1]:
            self.pointer += 1
            self.length = min(self.length + 1, self.LONGEST)
        else:
            self.pointer, self.length = -1, 0
        if n < self.min_len:
            return
        context = tuple(history[n - self.min_len:])
        if self.pointer < 0:
            found = self._last.get(context)
            if found is not None:
                self.pointer, self.length = found, agreement(history, found, history)
        self._last[context] = n

    def bucket(self) -> int:
        return match_bucket(self.length)


def agreement(theirs: list[int], index: int, own: list[int]) -> int:
    """Tokens before ``theirs[index]`` that equal the end of ``own``, up to MatchModel.VERIFY."""
    length = 0
    while length < MatchModel.VERIFY and index - length > 0 and length < len(own) and \
            theirs[index - length - 1] == own[-length - 1]:
        length += 1
    return length


def match_bucket(length: int) -> int:
    """Context class of a match's prediction: its length, 0-15, then 16-31, ..., 256+."""
    return length if length < 16 else min(length.bit_length() + 11, MATCH_BUCKETS - 1)


class NGramModel:
    """Counts of the tokens that followed each context of ``order`` tokens in the history."""

    FOLLOWERS = 16  # at most this many followers per context: bounded cost for " the"

    def __init__(self, order: int):
        self.order = order
        self._table: dict[tuple, dict[int, int]] = {}
        self._seen: dict[tuple, int] = {}  # the sum of each context's counts

    def followers(self, history: list[int]) -> tuple[dict[int, int], int] | None:
        """Counts of each token seen after the history's last ``order`` tokens and their sum."""
        if len(history) < self.order:
            return None
        context = tuple(history[len(history) - self.order:])
        counts = self._table.get(context)
        return None if counts is None else (counts, self._seen[context])

    def update(self, history: list[int]) -> None:
        """Count ``history[-1]`` after the ``order`` tokens before it."""
        n = len(history)
        if n <= self.order:
            return
        context = tuple(history[n - 1 - self.order:n - 1])
        counts = self._table.setdefault(context, {})
        token = history[-1]
        counts[token] = counts.get(token, 0) + 1
        if len(counts) > self.FOLLOWERS:  # halve, and forget what falls to zero
            counts = {key: count >> 1 for key, count in counts.items() if count > 1}
            self._table[context] = counts
            self._seen[context] = sum(counts.values())
        else:
            self._seen[context] = self._seen.get(context, 0) + 1

    @staticmethod
    def bucket(counts: dict[int, int], seen: int) -> int:
        """Context class: how often the context was seen (1, 2, 3, 4-7, 8+), one follower or more."""
        level = seen - 1 if seen < 4 else 3 if seen < 8 else 4
        return 2 * level + (len(counts) == 1)


MATCH_LENGTHS = (12, 4)  # context lengths of the match models, longest first
ORDERS = (1, 2, 3, 4)  # n-gram orders
MATCH_BUCKETS = 21
NGRAM_BUCKETS = 10
RECALL_EXPERT = len(MATCH_LENGTHS) + len(ORDERS)  # the last: what followed similar states (``recall``)
# Each expert adds at most its heaviest weight, 2**(FREQ_BITS + LOG2_MAX), to a table.
assert (RECALL_EXPERT + 1 << FREQ_BITS + LOG2_MAX) + (1 << FREQ_BITS) <= MAX_TOTAL

# Initial table indices (in steps, see STEPS) of each expert's weight by context class and by
# whether the candidate is the model's own top token, [bucket][not top, top], before the chunk
# teaches anything: 96 is 1/64 of the model's weight, 160 a quarter, 256 sixteen times. Fitted by
# scripts/measure_mixing.py --fit to the default model's dumps of alice29.txt, asyoulik.txt and
# html at 1,024-token chunks; cells no dump reached keep 96.
PRIOR_MATCH = [
    # context 12
    [[96, 96], [96, 96], [96, 96], [96, 96], [96, 96], [96, 96], [96, 96], [96, 96], [96, 96], [96, 96], [96, 96], [96, 96], [100, 172], [112, 104], [94, 109], [102, 99], [187, 175], [179, 99], [171, 207], [135, 155], [96, 96]],
    # context 4
    [[96, 96], [96, 96], [96, 96], [96, 96], [75, 102], [126, 104], [107, 101], [89, 95], [124, 97], [135, 98], [122, 99], [121, 104], [104, 99], [113, 102], [95, 108], [103, 97], [100, 99], [97, 209], [171, 97], [135, 155], [96, 96]],
]
PRIOR_NGRAM = [
    # order 1
    [[96, 96], [81, 122], [86, 83], [134, 163], [97, 91], [140, 165], [98, 99], [156, 164], [92, 90], [125, 203]],
    # order 2
    [[96, 96], [95, 145], [98, 106], [134, 169], [97, 101], [133, 182], [98, 133], [137, 200], [70, 168], [100, 166]],
    # order 3
    [[96, 96], [106, 127], [112, 94], [151, 102], [95, 103], [109, 100], [114, 116], [104, 103], [99, 94], [98, 217]],
    # order 4
    [[96, 96], [88, 150], [121, 92], [100, 183], [101, 97], [100, 99], [101, 98], [104, 101], [99, 94], [96, 96]],
]

# Recall's weight by the best cosine counted (recall.BUCKETS steps from 0.8), the same for the
# model's top token and the others: 1/32 of the model's at 0.8 rising to 1/6 at 1, a first guess
# (not fitted yet) that each chunk's coding corrects as it learns.
PRIOR_RECALL = [[110 + 3 * bucket] * 2 for bucket in range(14)]


class OwnHistory:
    """The experts of one chunk over its own tokens so far: what ``ChunkMixer`` mixes by default."""

    def __init__(self):
        self._history: list[int] = []
        self._matches = [MatchModel(n) for n in MATCH_LENGTHS]
        self._ngrams = [NGramModel(k) for k in ORDERS]

    def experts(self):
        """(expert, bucket, {token: count}, sum of counts) of each expert that predicts."""
        for expert, match in enumerate(self._matches):
            if match.pointer >= 0:
                yield expert, match.bucket(), {self._history[match.pointer]: 1}, 1
        for expert, ngram in enumerate(self._ngrams, len(self._matches)):
            found = ngram.followers(self._history)
            if found:
                yield expert, NGramModel.bucket(*found), *found

    def append(self, token: int) -> None:
        self._history.append(token)
        for model in (*self._matches, *self._ngrams):
            model.update(self._history)


class ChunkMixer:
    """Match and n-gram experts over a chunk's history, mixed into the model's frequencies.

    ``history`` gives the experts' predictions and takes each coded token: the chunk's own
    (``OwnHistory``, the default) or its view of a group's (``sharing.Member``). The weights are
    the chunk's own either way. Call order per position: ``mix`` (or ``predictions``), then
    ``update`` with the coded token.
    """

    def __init__(self, width: int, history=None):
        self.width = width  # token ids the model's frequencies cover
        self.history = history if history is not None else OwnHistory()
        # _theta[expert][bucket][top]: a weight's table index, with FRAC fractional bits
        self._theta = [[[p << FRAC for p in cell] for cell in row]
                       for row in PRIOR_MATCH + PRIOR_NGRAM + [PRIOR_RECALL]]
        self._shared = [0] * len(self._theta)  # per expert, added to each of its cells
        self._plan: list[tuple[int, list[int], int, dict[int, int], int]] | None = None
        self._freqs: np.ndarray | None = None

    def _planned(self, top: int | None):
        # Per table cell used: the cell, its integer addition to each token, and their sum.
        # The model's top token and the rest have cells of their own: a candidate the model
        # already ranks first needs a different boost from one it does not.
        if self._plan is None:
            self._plan = []
            for expert, bucket, counts, seen in self.history.experts():
                cell = self._theta[expert][bucket]
                rest = [(t, c) for t, c in counts.items() if t < self.width and t != top]
                if rest:
                    weight = self._weight(cell[0], expert)
                    adds = {t: weight * c // seen for t, c in rest}
                    self._plan.append((expert, cell, 0, adds, sum(adds.values())))
                if top is not None and top < self.width and top in counts:
                    add = self._weight(cell[1], expert) * counts[top] // seen
                    self._plan.append((expert, cell, 1, {top: add}, add))
        return self._plan

    def _weight(self, index: int, expert: int) -> int:
        return _WEIGHTS[min(max(index + self._shared[expert], 0), _TOP) >> FRAC]

    def additions(self, top: int | None = None) -> dict[int, int]:
        """The experts' integer additions for the next token, by token id (< width).

        ``top``: the id the model's frequencies rank first (None: not known, taken as none of
        the candidates). The first call at a position fixes it until ``update``.
        """
        total: dict[int, int] = {}
        for *_, adds, _ in self._planned(top):
            for token, add in adds.items():
                total[token] = total.get(token, 0) + add
        return total

    def predictions(self, top: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``additions`` as arrays: unique ids and their weights."""
        total = self.additions(top)
        return np.fromiter(total.keys(), np.int64, len(total)), \
            np.fromiter(total.values(), np.int64, len(total))

    def mix(self, freqs: np.ndarray) -> np.ndarray:
        """The model's frequencies (>= 1, sum 2**FREQ_BITS) with the experts' additions.

        ``freqs`` is kept, not copied, until ``update``: do not change it before then.
        """
        ids, weights = self.predictions(int(np.argmax(freqs)))
        mixed = freqs.copy()
        mixed[ids] += weights
        self._freqs = freqs
        return mixed

    def update(self, token: int) -> None:
        """Learn from the token coded at this position and append it to the history."""
        known = self._freqs is not None and token < self.width
        self.learn(token, int(self._freqs[token]) if known else None)
        self._freqs = None

    def learn(self, token: int, model_freq: int | None) -> None:
        """``update`` given the model's frequency of ``token`` (None: unknown, or escaped)."""
        plan = self._planned(None)
        if model_freq is not None and plan:
            self._step(plan, token, model_freq)
        self.history.append(token)
        self._plan = None

    def _step(self, plan, token: int, model_freq: int) -> None:
        # d(log p_mixed(token)) / d(log V_c) = V_c q_c(token) / mixed[token] - V_c / total:
        # what cell c added to the coded token's share minus its share of the whole table.
        chosen = model_freq + sum(adds.get(token, 0) for *_, adds, _ in plan)
        total = (1 << FREQ_BITS) + sum(added for *_, added in plan)
        for expert, cell, is_top, adds, added in plan:
            gradient = (adds.get(token, 0) << 16) // chosen - (added << 16) // total
            cell[is_top] = min(max(cell[is_top] + (RATE * gradient >> 16), 0), _TOP)
            shared = self._shared[expert] + (SHARED_RATE * gradient >> 16)
            self._shared[expert] = min(max(shared, -_TOP), _TOP)


def mix_rows(mixers: list[ChunkMixer], freqs: np.ndarray) -> np.ndarray:
    """``mix`` for a batch: row ``b`` of ``freqs`` [B, width] through ``mixers[b]``, one scatter."""
    batch, width = freqs.shape
    ids, weights = [], []
    tops = np.argmax(freqs, axis=1).tolist()
    for row, mixer in enumerate(mixers):
        row_ids, row_weights = mixer.predictions(tops[row])
        ids.append(row_ids + row * width)
        weights.append(row_weights)
        mixer._freqs = freqs[row]
    mixed = freqs.copy()
    mixed.reshape(-1)[np.concatenate(ids)] += np.concatenate(weights)
    return mixed
