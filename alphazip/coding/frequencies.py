"""The model's next-token distribution as integer frequencies, the same bits on every machine.

An arithmetic coder needs the very same table on both sides. The exact engine's logits are the
same float32 bits everywhere; from them every step here is exactly rounded or integer:

    e_i  = 2^((logit_i - max) * log2 e)       subtraction, product, and ``exactmath.exp2_``
    f_i  = floor(e_i * 2^SCALE_BITS) + 1      a power-of-two scaling, floor and +1 are exact

so every token has a frequency of at least 1 (any token can be coded) and the most likely one
has 2^SCALE_BITS + 1. The total is the frequencies' integer sum, exact in any order. With 30
bits the +1 floor takes under 0.005 % of the mass from a 49,152-token vocabulary, and totals
stay below 2^49 even for a flat 262,144-token distribution (the range coder needs r = range //
total to keep at least 2^7 of its 2^56 minimum range).
"""

import torch

from ..model import exactmath as xm
from ..model import native

SCALE_BITS = 30
ROWS_AT_ONCE = 64  # rows quantized at a time: their temporaries stay in cache


def frequencies(logits: torch.Tensor) -> torch.Tensor:
    """Integer frequencies [R, V] (int64, each >= 1) of float32 ``logits`` [R, V]."""
    if len(logits) > ROWS_AT_ONCE:
        return torch.cat([frequencies(logits[i:i + ROWS_AT_ONCE]) for i in range(0, len(logits), ROWS_AT_ONCE)])
    shifted = (logits - logits.amax(1, keepdim=True)).mul_(xm.LOG2E)
    scaled = xm.exp2_(shifted).mul_(float(1 << SCALE_BITS)).floor_()
    return scaled.to(torch.int64).add_(1)


def coding_facts(logits: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each row of ``logits`` [R, V] and its token (< V): (frequencies of the tokens before
    it, its frequency, the row's total), each [R] int64: all a range coder needs to code it."""
    if native.available():
        return native.frequency_facts(logits.contiguous(), tokens.contiguous(), CONSTANTS)
    cums, freqs, totals = [], [], []
    for start in range(0, len(logits), ROWS_AT_ONCE):
        running, total = _running_torch(logits[start:start + ROWS_AT_ONCE])
        wanted = tokens[start:start + ROWS_AT_ONCE, None]
        upto = running.gather(1, wanted)[:, 0]
        before = torch.where(wanted[:, 0] > 0, running.gather(1, (wanted - 1).clamp_(min=0))[:, 0], 0)
        cums.append(before)
        freqs.append(upto - before)
        totals.append(total)
    if not cums:
        empty = torch.zeros(0, dtype=torch.int64)
        return empty, empty, empty
    return torch.cat(cums), torch.cat(freqs), torch.cat(totals)


class FrequencyLookup:
    """One decoding step's distributions: each row's total, then the token at a point of a row,
    or the frequencies at an id. Queries name their row, so one call serves any mix of rows."""

    def __init__(self, logits: torch.Tensor):
        self.logits = logits.contiguous()  # [R, V]
        if native.available():  # sums per block of ids; queries scan one block
            self.totals, self._tops, self._blocks = native.frequency_blocks(self.logits, CONSTANTS)
            self._running = None
        else:
            self._running, self.totals = _running_torch(self.logits)

    def find(self, rows: list[int], targets: list[int]) -> tuple[list[int], list[int], list[int]]:
        """For each query, the token of row ``rows[q]`` whose span [cum, cum + freq) holds
        ``targets[q]``, its cum and its freq; a target at or past the row's total gives token V
        (the escape), cum = the total and freq 0."""
        picked, wanted = torch.tensor(rows, dtype=torch.int64), torch.tensor(targets, dtype=torch.int64)
        if self._running is None:
            found = native.frequency_find(self.logits, self._tops, self._blocks, picked, wanted, CONSTANTS)
            return tuple(t.tolist() for t in found)
        width, running, totals = self.logits.shape[1], self._running[picked], self.totals[picked]
        tokens = torch.searchsorted(running, wanted[:, None], right=True)[:, 0]
        upto = torch.where(tokens < width, running.gather(1, tokens.clamp(max=width - 1)[:, None])[:, 0], totals)
        before = torch.where(tokens > 0, running.gather(1, (tokens - 1).clamp(min=0)[:, None])[:, 0], 0)
        return tokens.tolist(), before.tolist(), (upto - before).tolist()

    def at(self, rows: list[int], ids: list[int]) -> tuple[list[int], list[int]]:
        """For each query, row ``rows[q]``'s frequencies before ``ids[q]`` (< V) and its own."""
        picked, wanted = torch.tensor(rows, dtype=torch.int64), torch.tensor(ids, dtype=torch.int64)
        if self._running is None:
            found = native.frequency_at(self.logits, self._tops, self._blocks, picked, wanted, CONSTANTS)
            return tuple(t.tolist() for t in found)
        running = self._running[picked]
        upto = running.gather(1, wanted[:, None])[:, 0]
        before = torch.where(wanted > 0, running.gather(1, (wanted - 1).clamp(min=0)[:, None])[:, 0], 0)
        return before.tolist(), (upto - before).tolist()


def _running_torch(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    running = frequencies(logits).cumsum_(1)
    return running, running[:, -1].clone()


# The compiled kernel's float32 constants, the very values the torch path uses.
CONSTANTS = torch.tensor([xm.LOG2E, float(1 << SCALE_BITS), *xm.exp2_coefficients(torch.float32)],
                          dtype=torch.float32)
