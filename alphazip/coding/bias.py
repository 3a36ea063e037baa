"""An adaptive log-space bias per chunk: what this text says about its own words that the model
does not know (Nacrith's "bias head").

Each chunk keeps a bias b over the model's ids, 0 at first, added to the logits before they
become frequencies. After each token t it takes one gradient step on t's code length:

    b -= RATE * p          p: the biased row's integer frequencies over their total
    b[t] += RATE

so tokens the text keeps using climb, and tokens the model keeps overrating sink. Each element
is a few exactly rounded operations (a float32 sum, int -> double, a product, rounding to float32,
a difference) in a fixed order, or integer: the decoder rebuilds b bit for bit on any machine.
The compiled kernel and the torch path are tested against each other.

A chunk's bias lives only while the chunk is coded: slots are reused, so memory follows the
chunks side by side, not the frame's chunk count.
Settings that change the bitstream: RATE.
"""

from collections.abc import Sequence

import torch

from ..model import native
from .frequencies import CONSTANTS, coding_facts, frequencies

RATE = 0.25  # a power of two, exact in any float; chosen by scripts/measure_log_bias.py


class ChunkBiases:
    """The biases of a frame's chunks of ``lengths`` tokens, over ``width`` ids."""

    def __init__(self, lengths: Sequence[int], width: int):
        self.lengths, self.width = list(lengths), width
        self._slot: dict[int, int] = {}  # chunk -> row of _values
        self._free: list[int] = []
        self._values = torch.zeros((0, width), dtype=torch.float32)

    def biased(self, chunks: Sequence[int], logits: torch.Tensor,
               rows: torch.Tensor | None = None) -> tuple[torch.Tensor, list[int]]:
        """Rows ``rows`` (default: all) of ``logits`` [N, V], those of the chunks numbered ``chunks``
        (distinct), with their biases added [R, V]; and each such row's argmax (its first largest)."""
        slots = self._slots(chunks)  # first: it may grow _values
        rows = torch.arange(len(chunks)) if rows is None else rows
        if native.available():
            out, first = native.bias_add(logits.contiguous(), rows, self._values, slots)
        else:
            out = logits[rows] + self._values[slots]
            first = out.argmax(1)
        return out, first.tolist()

    def facts(self, chunks: Sequence[int], position: int, logits: torch.Tensor, rows: torch.Tensor,
              tokens: torch.Tensor) -> tuple[list[int], ...]:
        """Packing's step, the tokens known: ``biased`` rows, ``coding_facts`` of ``tokens`` [R]
        int64 (of id 0 for an escaped one), then ``learn``. Returns the lists cums, freqs, totals
        and argmaxes of the biased rows."""
        if native.available():
            slots = self._slots(chunks)
            found = native.bias_facts(logits.contiguous(), rows, self._values, slots, tokens, RATE, CONSTANTS)
            self._release(chunks, position)
            return tuple(t.tolist() for t in found)
        biased, tops = self.biased(chunks, logits, rows)
        cums, freqs, totals = coding_facts(biased, torch.where(tokens < self.width, tokens, 0))
        self.learn(chunks, position, biased, totals, tokens)
        return cums.tolist(), freqs.tolist(), totals.tolist(), tops

    def learn(self, chunks: Sequence[int], position: int, biased: torch.Tensor, totals: torch.Tensor,
              tokens: torch.Tensor) -> None:
        """Each chunk's step from its token at ``position`` (``tokens`` [R] int64) under its ``biased``
        row [R, V], whose frequencies total ``totals[r]``; an escaped token (>= V) teaches nothing."""
        slots = self._slots(chunks)
        if native.available():
            native.bias_learn(biased, totals, slots, tokens, RATE, self._values, CONSTANTS)
        else:
            inside = torch.nonzero(tokens < self.width)[:, 0]
            which = slots[inside]
            self._values[which] = learned(self._values[which], biased[inside], totals[inside], tokens[inside])
        self._release(chunks, position)

    def _release(self, chunks: Sequence[int], position: int) -> None:
        for chunk in chunks:
            if position + 1 >= self.lengths[chunk]:  # done: its slot serves another chunk
                self._free.append(self._slot.pop(chunk))

    def _slots(self, chunks: Sequence[int]) -> torch.Tensor:
        for chunk in chunks:
            if chunk not in self._slot:
                if not self._free:  # twice the rows: growing costs O(slots) copies in all
                    grown = max(1, len(self._values))
                    self._free.extend(range(len(self._values) + grown - 1, len(self._values) - 1, -1))
                    self._values = torch.cat([self._values, torch.zeros((grown, self.width))])
                slot = self._free.pop()
                self._values[slot] = 0.0
                self._slot[chunk] = slot
        return torch.tensor([self._slot[chunk] for chunk in chunks], dtype=torch.int64)


def learned(bias: torch.Tensor, biased: torch.Tensor, totals: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The torch path of the step: ``bias`` [R, V] after each row's token, as the kernel computes it."""
    scale = torch.tensor(RATE, dtype=torch.float64) / totals.to(torch.float64)
    step = (frequencies(biased).to(torch.float64) * scale[:, None]).to(torch.float32)
    bias = bias - step
    rows = torch.arange(len(tokens))
    bias[rows, tokens] = bias[rows, tokens] + torch.tensor(RATE, dtype=torch.float32)
    return bias
