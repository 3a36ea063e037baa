"""Recall: the tokens that followed states of the model like the present one, in a sharing group.

A 135M model with a 1,024-token window forgets what it read in other chunks, yet its state before
a token (the head's input) still says "this is like that": the tokens that followed the most
similar earlier states of the group predict the next one (a continuous cache, Grave et al. 2017;
kNN-LM over the text itself). ``sharing`` steps a group in lockstep, so at position t every
state of the group's chunks before t, and the token that followed it, is known to both sides.

Exact by construction. A key is a state quantized to int8 (one division, products and roundings,
each exactly rounded), projected by a fixed +-1 matrix and quantized to int8 again; keys are held
as float32, and every sum of their products is an integer below 2**24 (128 x 127**2 at most), so
a BLAS gets it exactly whatever its blocking or instruction set. Cosines are float64 operations
on exact integers (a product, a square root, a division, each exactly rounded); weights come from
an integer table. Settings that change the bitstream: everything in this module.
"""

import functools

import numpy as np
import torch

KEY_DIMS = 128  # a key's dimensions: nearly the cosines of the whole state, at a fraction of the cost
LEVELS = 1024  # cosine steps: level l covers [l / 1024, (l + 1) / 1024)
FLOOR = 819  # cosine 0.8: less similar states are not counted
NEAREST = 16  # states counted per query at most: the most similar (ties: the most recent)
SHORTLIST = 64  # a query's most similar states by rough cosines, where its exact NEAREST usually lie
CANDIDATES = 16  # tokens a prediction names at most, the heaviest: bounded cost for the mixer
BUCKET_LEVELS = 15  # the mixer's context classes: the best level counted, in steps of 15 from FLOOR
BUCKETS = 14
# What a chunk's decoding keeps per position: its state in the group's memory (key, unit key,
# root, token) and its share of a step's rough cosines (a row against up to 64 chunks' states).
BYTES_PER_POSITION = 2 * 4 * KEY_DIMS + 16 + 4 * 64
RATIO = 4130429683  # round(2**32 e^(-40 / 1024)): a state's weight falls by e^-40 from cosine 1 to 0


def _weights() -> np.ndarray:
    # 2**16 e^(-40 (1024 - l) / 1024) by integer steps from level 1024 down (40 more bits kept
    # while stepping, then rounded), the same on every machine.
    exact, table = 1 << 56, []
    for _ in range(LEVELS + 1 - FLOOR):
        table.append((exact + (1 << 39)) >> 40)
        exact = exact * RATIO >> 32
    return np.array([0] * FLOOR + table[::-1], np.int64)


WEIGHTS = _weights()  # by level, 0-LEVELS
assert WEIGHTS[FLOOR] > 0  # every state counted weighs: a prediction's weights never sum to 0


@functools.cache
def projection(width: int) -> np.ndarray:
    """The fixed [width, KEY_DIMS] matrix of +-1 (float32) keys are projected by: the top bits of
    splitmix64 over the entries' indices, so that it is the same on every machine (and its
    columns as good as independent: a plain multiplicative hash made them all but equal)."""
    z = (np.arange(width * KEY_DIMS, dtype=np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)  # arithmetic modulo 2**64
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return np.where(z >> np.uint64(63) == 1, 1.0, -1.0).astype(np.float32).reshape(width, KEY_DIMS)


def _int8_rows(values: np.ndarray) -> np.ndarray:
    """Each row scaled so its largest magnitude is 127 and rounded (half to even), in float64 (no
    float32 value's scale overflows there): float32 integers."""
    values = values.astype(np.float64)
    largest = np.abs(values).max(axis=1, keepdims=True)
    return np.rint(values * (127.0 / np.where(largest > 0, largest, 1.0))).astype(np.float32)


def keys_of(states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keys [N, KEY_DIMS] (float32 integers in [-127, 127]) and their squared norms [N] (float64)
    of the model's states [N, hidden] (float32)."""
    states = np.nan_to_num(np.ascontiguousarray(states, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if states.shape[1] * 127 >= 1 << 24:
        raise ValueError("states too wide for exact keys")  # no model we run comes near
    projected = _exact_product(_int8_rows(states), projection(states.shape[1]))
    keys = _int8_rows(projected)
    return keys, (keys.astype(np.float64) ** 2).sum(axis=1)


def _exact_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b for float32 integers whose every partial sum stays below 2**24: exact in any order.
    Through torch, whose threads the model's kernels use: a second pool (numpy's BLAS) spinning
    beside them made each step of the model three times slower."""
    return torch.from_numpy(a).matmul(torch.from_numpy(b)).numpy()


def _units(keys: np.ndarray, roots: np.ndarray) -> torch.Tensor:
    """Keys scaled to length about 1 (a zero key stays 0), float32: for rough cosines only."""
    return torch.from_numpy(keys / np.maximum(roots, 1)[:, None].astype(np.float32))


class Memory:
    """A group's states so far (keys and the roots of their squared norms) and the token that
    followed each."""

    def __init__(self, capacity: int):
        self.keys = np.zeros((capacity, KEY_DIMS), np.float32)
        self.roots = np.zeros(capacity, np.float64)
        self.units = torch.zeros((capacity, KEY_DIMS))  # keys / roots in float32: rough cosines
        self.tokens = np.zeros(capacity, np.int64)
        self.size = 0

    def add(self, keys: np.ndarray, norms: np.ndarray, tokens: list[int]) -> None:
        end = self.size + len(tokens)
        self.keys[self.size:end], self.roots[self.size:end], self.tokens[self.size:end] = keys, np.sqrt(norms), tokens
        self.units[self.size:end] = _units(keys, self.roots[self.size:end])
        self.size = end

    def predict(self, keys: np.ndarray, norms: np.ndarray) -> list[tuple[int, dict[int, int], int] | None]:
        """Per query (a key and its squared norm): (bucket, {token: weight}, sum of weights) over its
        NEAREST most similar states of cosine FLOOR / LEVELS or more (cosine: dots / (root x root)
        in float64, floored to a level); None where there are none."""
        found: list[tuple[int, dict[int, int], int] | None] = [None] * len(keys)
        rows, states, levels = self._nearest(np.ascontiguousarray(keys, np.float32), np.sqrt(norms))
        if not len(rows):
            return found
        # (row, token) pairs, their weights summed (integers, far below 2**53: exact in any order)
        pairs, where = np.unique(rows * (1 << 32) + self.tokens[states], return_inverse=True)
        weights = np.bincount(where, WEIGHTS[levels].astype(np.float64)).astype(np.int64)
        pair_rows, tokens = pairs >> 32, pairs & 0xFFFFFFFF
        order = np.lexsort((tokens, -weights, pair_rows))  # per row the heaviest first, ties: the lower id
        firsts = np.flatnonzero(np.diff(pair_rows[order], prepend=-1))
        totals = np.add.reduceat(weights[order], firsts)
        best = levels[_row_starts(rows)]  # each row's states come most similar first
        ends = np.append(firsts[1:], len(order))
        for index, (first, end) in enumerate(zip(firsts.tolist(), ends.tolist())):
            chosen = order[first:min(end, first + CANDIDATES)]
            found[int(pair_rows[order[first]])] = (min((int(best[index]) - FLOOR) // BUCKET_LEVELS, BUCKETS - 1),
                                                   dict(zip(tokens[chosen].tolist(), weights[chosen].tolist())),
                                                   int(totals[index]))
        return found

    def _nearest(self, keys: np.ndarray, roots: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(query row, state, level) of each query's NEAREST states at FLOOR or above, by row and
        within a row the most similar first."""
        none = np.zeros(0, np.int64)
        if self.size == 0:
            return none, none, none
        # Rough float32 cosines, off by less than 1e-4, pick the states worth the exact test: any
        # state among the exact NEAREST is within a level (plus that error) of the NEAREST-th rough one.
        rough = _units(keys, roots).matmul(self.units[:self.size].T)
        values, columns = rough.topk(min(SHORTLIST, self.size), dim=1)  # most similar first
        kth = values[:, min(NEAREST, self.size) - 1:min(NEAREST, self.size)]
        bound = torch.clamp(kth - 1 / LEVELS, min=FLOOR / LEVELS) - 1e-4
        rows, states = _at_or_above(rough, bound, values, columns)
        # each dot product a sum of integers below 2**24: exact in float32 in any order
        dots = (keys[rows] * self.keys[states]).sum(axis=1).astype(np.float64)
        scale = roots[rows] * self.roots[states]
        cosines = np.divide(dots, scale, out=np.zeros(len(rows)), where=scale > 0)
        levels = np.minimum(np.floor(cosines * LEVELS), LEVELS).astype(np.int64)
        keep = levels >= FLOOR
        rows, states, levels = rows[keep], states[keep], levels[keep]
        order = np.lexsort((-states, -levels, rows))  # per row the most similar first, ties: the most recent
        rows, states, levels = rows[order], states[order], levels[order]
        starts = _row_starts(rows)
        rank = np.arange(len(rows)) - starts.repeat(np.diff(np.append(starts, len(rows))))  # within its row
        keep = rank < NEAREST
        return rows[keep], states[keep], levels[keep]


def _at_or_above(rough: torch.Tensor, bound: torch.Tensor, values: torch.Tensor, columns: torch.Tensor
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(row, state) of every entry of ``rough`` [Q, N] at or above its row's ``bound`` [Q, 1], given
    each row's largest ``values`` and their ``columns``: a row whose last shortlisted value is
    below its bound has them all in its shortlist; the others (many states alike) are scanned."""
    inside = values >= bound
    if values.shape[1] < rough.shape[1]:
        spilled = torch.nonzero(inside[:, -1])[:, 0]
    else:  # every state is shortlisted
        spilled = torch.zeros(0, dtype=torch.int64)
    inside[spilled] = False
    rows, at = torch.nonzero(inside, as_tuple=True)
    states = columns[rows, at]
    if len(spilled):
        more_rows, more_states = torch.nonzero(rough[spilled] >= bound[spilled], as_tuple=True)
        rows, states = torch.cat([rows, spilled[more_rows]]), torch.cat([states, more_states])
    return rows.numpy(), states.numpy()


def _row_starts(rows: np.ndarray) -> np.ndarray:
    """Where each run of equal values of sorted ``rows`` begins."""
    return np.flatnonzero(np.diff(rows, prepend=-1))
