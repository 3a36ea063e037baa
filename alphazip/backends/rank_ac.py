"""Adaptive, context-mixing binary arithmetic coding of the symbol stream itself: ``rank-ac``.

Every symbol is turned into a few yes/no decisions; each decision is range-coded under a
probability that adapts as the stream goes by, predicted from the symbols before it. Nothing is
sent about the distribution: the decoder learns it in step. All arithmetic is on Python ints
(no floating point anywhere), so the bits are the same on every machine.

Format of a ``rank-ac`` payload (frozen: archives depend on these exact bits):

* The symbol count as an unsigned LEB128 varint (minimal form), then the range coder's bytes;
  none at all when there is nothing to decide (no symbols, or an alphabet of one).
* The range coder is LZMA's (32-bit ``low`` and ``range``, a byte out whenever ``range`` drops
  below 2**24, carries propagated into bytes already written) without LZMA's leading zero byte.
  A decision with probability ``p`` of a one (16-bit, clamped to [64, 65472]) takes the low
  ``(range * p) >> 16`` of the interval for a one, the rest for a zero. ``n`` equally likely
  bits (n <= 16 at a time) take the ``value``-th of ``2**n`` slices ``range >> n`` wide.
* At the end the coder writes the multiple of 2**24 in its final interval as four bytes (so the
  last three are zero). The decoder accepts a payload only if it ends exactly where its four
  bytes of window do and they are such a point: a truncated or extended payload fails that
  (24 bits of check), without an end marker or a length.

Two ways of turning a symbol into decisions, by alphabet size (both send bits MSB first):

* Alphabets of at most 256 (raw frames' bytes): the bits of the symbol down a binary tree, each
  predicted by mixing five adaptive counters: the tree node alone (order 0), the node after the
  previous symbol (order 1), after the previous two and three (orders 2 and 3, hashed into one
  table sized by the count, at most 2**22 counters), and a match model: the bit that followed
  the last occurrence of the previous four symbols, while it keeps being right, by how long.
* Larger alphabets (ranks, escaped token ids): ``v = symbol + 1`` splits into ``e``, its bit
  length less one, and the ``e`` bits below the leading one. ``e`` is sent in unary (``e > 0?``,
  ``e > 1?`` .., never past the alphabet's largest), each step mixing counters for the step
  alone, for the step after the last two symbols' ``e`` (each capped at 5), and for the step
  after the sum of the last eight ``e`` (halved, capped at 15). Then the first two bits below
  the leading one are coded with counters for ``(e, bits so far)``, the rest as equally likely.

Counters hold P(one) in 1/65536, start at one half and move towards each bit by 1/(n + 1.5)
of the way at their n-th update, and by 1/256.5 from then on (quick to learn, then stable but
still tracking drift). The mixer is lpaq1's single-layer logistic mix: stretch each counter's
prediction, a weighted sum, squash; one weight set per unary step (ranks) or per tree depth,
match length and whether the order-3 context is new (bytes); weights learn from each error.
"""

from array import array
from operator import mul

import numpy as np

from ..errors import BadArchiveError
from .base import Backend
from .serialize import count_bytes, read_count

_TOP = 1 << 24  # the coder shifts a byte out whenever range falls below this
_MASK = (1 << 32) - 1
_END_MASK = (1 << 24) - 1  # the final point's low bytes, zero: 24 bits that catch a bad end
_PMIN, _PMAX = 64, 65536 - 64  # every decision costs >= -log2(_PMAX / 65536) bits
_UNIFORM_BITS = 16  # equally likely bits are coded this many at a time at most
_COUNT_LIMIT = 255  # updates after which a counter's rate stops falling
_RATE = [131072 // (2 * n + 3) for n in range(_COUNT_LIMIT + 1)]  # 65536 / (n + 1.5)
_NEXT_COUNT = [min(n + 1, _COUNT_LIMIT) for n in range(_COUNT_LIMIT + 1)]
# Symbols a payload of n coder bytes can hold: each costs at least one decision, so at least
# -log2(_PMAX / 65536) = 0.00141 bits, and n >= 4 bytes carry at most 8 * (n - 4) + 8 bits.
_SYMBOLS_PER_BYTE = 5_700

# Logistic mixing in lpaq1's fixed point, integers only (no libm, so no platform's rounding in
# the bitstream): squash(d) = 4096 / (1 + e**(-d / 256)) interpolated from 33 knots, for d in
# [-2047, 2047]; stretch is its inverse over 12-bit probabilities.
_KNOTS = (1, 2, 3, 6, 10, 16, 27, 45, 73, 120, 194, 310, 488, 747, 1101, 1546, 2047, 2549, 2994, 3348, 3607,
          3785, 3901, 3975, 4022, 4050, 4068, 4079, 4085, 4089, 4092, 4093, 4094)
_SQUASH = [(_KNOTS[(d >> 7) + 16] * (128 - (d & 127)) + _KNOTS[(d >> 7) + 17] * (d & 127) + 64) >> 7
           for d in range(-2047, 2048)]
_STRETCH = [0] * 4096
_MIX_SHIFT = 16  # weights are 16.16 fixed point


def _stretch_table() -> None:
    # Inverse of squash: the smallest d whose squash reaches each probability.
    d = -2047
    for p in range(4096):
        while d < 2047 and _SQUASH[d + 2047] < p:
            d += 1
        _STRETCH[p] = d


_stretch_table()


class _Encoder:
    """The range coder's writing side."""

    __slots__ = ("low", "range", "out")

    def __init__(self):
        self.low, self.range, self.out = 0, _MASK, bytearray()

    def bit(self, p: int, bit: int) -> int:
        """Code ``bit``, a one with probability ``p`` / 65536; returns ``bit``."""
        bound = (self.range * p) >> 16
        if bit:
            self.range = bound
        else:
            self.low += bound
            self.range -= bound
            if self.low > _MASK:
                self.low &= _MASK
                self._carry()
        while self.range < _TOP:
            self.out.append(self.low >> 24)
            self.low = (self.low << 8) & _MASK
            self.range <<= 8
        return bit

    def uniform(self, value: int, bits: int) -> int:
        """Code ``value``, ``bits`` bits wide, as equally likely; returns ``value``."""
        while bits:
            width = min(bits, _UNIFORM_BITS)
            bits -= width
            self.range >>= width
            self.low += ((value >> bits) & ((1 << width) - 1)) * self.range
            if self.low > _MASK:
                self.low &= _MASK
                self._carry()
            while self.range < _TOP:
                self.out.append(self.low >> 24)
                self.low = (self.low << 8) & _MASK
                self.range <<= 8
        return value

    def _carry(self) -> None:
        # The interval never leaves [0, 1), so a carry always finds a byte below 255.
        out, i = self.out, len(self.out) - 1
        while out[i] == 255:
            out[i] = 0
            i -= 1
        out[i] += 1

    def finish(self) -> bytes:
        """The bytes so far plus the final point: the multiple of 2**24 in the interval."""
        point = self.low + (-self.low & _END_MASK)  # inside, as range >= 2**24
        if point > _MASK:
            point &= _MASK
            self._carry()
        return bytes(self.out) + point.to_bytes(4, "big")


class _Decoder:
    """The range coder's reading side; strict about where the payload ends."""

    __slots__ = ("data", "pos", "range", "code", "window")

    def __init__(self, data: memoryview):
        self.data, self.pos = data, 0
        self.range, self.code, self.window = 1, 0, 0
        for _ in range(4):
            self._shift()  # reads the first four bytes; range ends at 2**32 ..
        self.range = _MASK  # .. but starts, as the encoder's does, one below

    def bit(self, p: int, _ignored: int = 0) -> int:
        """The next bit, a one with probability ``p`` / 65536."""
        bound = (self.range * p) >> 16
        if self.code < bound:
            self.range = bound
            bit = 1
        else:
            self.code -= bound
            self.range -= bound
            bit = 0
        while self.range < _TOP:
            self._shift()
        return bit

    def uniform(self, _ignored: int, bits: int) -> int:
        """The next ``bits``-bit value, all equally likely."""
        value = 0
        while bits:
            width = min(bits, _UNIFORM_BITS)
            bits -= width
            self.range >>= width
            part = self.code // self.range
            if part >> width:
                raise BadArchiveError("rank-ac payload is corrupt")
            self.code -= part * self.range
            value = (value << width) | part
            while self.range < _TOP:
                self._shift()
        return value

    def _shift(self) -> None:
        if self.pos < len(self.data):
            byte = self.data[self.pos]
            self.pos += 1
        else:
            raise BadArchiveError("rank-ac payload ends early")
        self.code = (self.code << 8) | byte
        self.window = ((self.window << 8) | byte) & _MASK
        self.range <<= 8

    def finish(self) -> None:
        """Accept the payload only if it ends where and as the encoder ends one."""
        if self.pos < len(self.data):
            raise BadArchiveError("rank-ac payload has trailing bytes")
        # The last four bytes read are the final point, a multiple of 2**24 just above the
        # encoder's low; code (= point - low) is then below 2**24.
        if self.window & _END_MASK or self.code > _END_MASK:
            raise BadArchiveError("rank-ac payload is corrupt or truncated")


class _Counters:
    """Adaptive bit probabilities: ``p[i]`` is P(one) in 1/65536, ``n[i]`` its updates so far.

    An update moves p by less than the distance to 0 or 65536, so p stays in [1, 65535]; the
    coder clamps what it is given to [_PMIN, _PMAX].
    """

    __slots__ = ("p", "n")

    def __init__(self, size: int):
        # Compact arrays: a byte model's hashed tables hold millions of counters.
        self.p, self.n = array("H", [32768]) * size, array("B", [0]) * size

    def update(self, which: list[int], bit: int) -> None:
        """Move the counters ``which`` towards ``bit``."""
        p, n, rate, step = self.p, self.n, _RATE, _NEXT_COUNT
        if bit:
            for i in which:
                q, m = p[i], n[i]
                p[i] = q + (((65536 - q) * rate[m]) >> 16)
                n[i] = step[m]
        else:
            for i in which:
                q, m = p[i], n[i]
                p[i] = q - ((q * rate[m]) >> 16)
                n[i] = step[m]

    def code(self, coder, i: int, bit: int) -> int:
        """Code one decision under counter ``i`` alone; the bit."""
        p = self.p[i]
        bit = coder.bit(_PMIN if p < _PMIN else (_PMAX if p > _PMAX else p), bit)
        self.update((i,), bit)
        return bit


class _Mixer:
    """Mixes several counters' predictions of one decision into one probability."""

    __slots__ = ("weights", "counters", "rate")

    def __init__(self, sets: int, inputs: int, counters: _Counters, rate: int):
        self.weights = [[(1 << _MIX_SHIFT) // inputs] * inputs for _ in range(sets)]
        self.counters = counters
        self.rate = rate  # weights move by stretch * error >> rate (tuned on the corpus)

    def code(self, coder, which: list[int], weight_set: int, bit: int) -> int:
        """Code one decision predicted by the counters ``which``; the bit."""
        p = self.counters.p
        stretched = [_STRETCH[p[i] >> 4] for i in which]
        weights = self.weights[weight_set]
        dot = sum(map(mul, weights, stretched)) >> _MIX_SHIFT
        mixed = _SQUASH[(dot if -2047 <= dot <= 2047 else (2047 if dot > 0 else -2047)) + 2047] << 4
        bit = coder.bit(_PMIN if mixed < _PMIN else (_PMAX if mixed > _PMAX else mixed), bit)
        error, rate = (bit << 16) - mixed, self.rate  # error in 1/65536, as the weights
        weights[:] = [w + ((s * error) >> rate) for w, s in zip(weights, stretched)]
        self.counters.update(which, bit)
        return bit


class _RankModel:
    """Symbols of a large alphabet (ranks, token ids) as a bit length in unary plus the bits below."""

    def __init__(self, alphabet: int):
        self.top = top = alphabet.bit_length() - 1  # the largest bit length - 1 a symbol + 1 has
        width = top + 1
        # Counter blocks: unary steps alone, after the last two lengths (6 x 6), after the recent
        # sum (16), and the two bits after the leading one by (e, bits so far).
        self.pair = width
        self.recent = self.pair + 36 * width
        self.head = self.recent + 16 * width
        self.counters = _Counters(self.head + 4 * width)
        self.mixer = _Mixer(width, 3, self.counters, rate=14)
        self.last = [0, 0]  # e of the previous symbol and the one before, each capped at 5
        self.ring, self.at, self.sum = [0] * 8, 0, 0  # e of the last eight symbols, and their sum

    def code(self, coder, symbol: int) -> int:
        """Code ``symbol`` (the encoder's; the decoder passes 0 and gets the decoded one back)."""
        v = symbol + 1
        e = v.bit_length() - 1
        top, width = self.top, self.top + 1
        pair = self.pair + (self.last[0] * 6 + self.last[1]) * width
        recent = self.recent + min(self.sum >> 1, 15) * width
        mix = self.mixer.code
        k = 0
        while k < top and mix(coder, [k, pair + k, recent + k], k, int(e > k)):
            k += 1
        counters, head = self.counters, self.head + (k << 2)
        decoded = 1
        for position in range(min(k, 2)):
            bit = (v >> (k - 1 - position)) & 1
            decoded = (decoded << 1) | counters.code(coder, head + decoded, bit)
        if k > 2:
            decoded = (decoded << (k - 2)) | coder.uniform(v & ((1 << (k - 2)) - 1), k - 2)
        self.last = [min(k, 5), self.last[0]]
        self.sum += k - self.ring[self.at]
        self.ring[self.at] = k
        self.at = (self.at + 1) & 7
        return decoded - 1


class _ByteModel:
    """Symbols of at most 8 bits (raw bytes) down a binary tree: orders 0 to 3 and a match model
    mixed."""

    def __init__(self, alphabet: int, count: int):
        self.bits = (alphabet - 1).bit_length()
        self.size = size = 1 << self.bits
        # Orders 2 and 3 share one hashed table of 16-counter blocks, one block per (context,
        # high nibble so far); sized by the count (both sides know it), at most 2**22 counters.
        self.table_bits = min(max((16 * count).bit_length(), 12), 22)
        self.order1 = size
        self.hashed = size + size * size
        self.match = self.hashed + (1 << self.table_bits)  # by (match length capped at 15, predicted bit)
        self.counters = _Counters(self.match + 32)
        self.mixer = _Mixer(8 * max(self.bits, 1), 5, self.counters, rate=16)
        self.history = 0  # the last four symbols, one a byte, newest lowest
        # Match model: where the last four symbols were last followed, and how long it has held.
        self.seen = bytearray()
        self.last_at = array("i", [-1]) * (1 << min(max(count.bit_length(), 10), 22))
        self.at, self.length = -1, 0

    def code(self, coder, symbol: int) -> int:
        """Code ``symbol`` (the encoder's; the decoder passes 0 and gets the decoded one back)."""
        bits, history, code, counts = self.bits, self.history, self.mixer.code, self.counters.n
        order1 = self.order1 + (history & 0xFF) * self.size
        expected = (self.seen[self.at] | self.size) if self.length else 0  # with its leading one
        length = min(self.length, 15) << 1
        node = 1
        for depth in range(bits):
            if not depth & 3:  # a new nibble: find the higher orders' blocks
                order2 = self._block(2, history & 0xFFFF, node)
                order3 = self._block(3, history & 0xFFFFFF, node)
            local = (1 << (depth & 3)) | (node & ((1 << (depth & 3)) - 1))
            if expected >> (bits - depth) == node:  # the match still holds: its next bit
                guess = (expected >> (bits - 1 - depth)) & 1
                match, weight_set = self.match + length + guess, 8 * depth + 2 * min(self.length, 3)
            else:
                match, weight_set = self.match, 8 * depth
            weight_set += counts[order3 + local] == 0
            which = [node, order1 + node, order2 + local, order3 + local, match]
            node = (node << 1) | code(coder, which, weight_set, (symbol >> (bits - 1 - depth)) & 1)
        decoded = node - self.size
        self._remember(decoded, expected)
        return decoded

    def _block(self, order: int, context: int, node: int) -> int:
        """First counter of the block for this order's ``context`` and the bits so far."""
        key = (((context << 5) | node) << 2) | order
        return self.hashed + ((key * 0x9E3779B97F4A7C15 >> 40) & ((1 << self.table_bits) - 16))

    def _remember(self, decoded: int, expected: int) -> None:
        self.history = history = ((self.history << 8) | decoded) & 0xFFFFFFFF
        self.seen.append(decoded)
        if self.length and decoded | self.size == expected:
            self.length += 1
            self.at += 1
        else:
            self.length = 0
        slot = (history * 0x9E3779B1 >> 12) & (len(self.last_at) - 1)
        if not self.length and len(self.seen) >= 4 and self.last_at[slot] >= 0:
            self.at, self.length = self.last_at[slot], 1
        self.last_at[slot] = len(self.seen)


def _model_for(alphabet: int, count: int):
    return _ByteModel(alphabet, count) if alphabet <= 256 else _RankModel(alphabet)


class RankACBackend(Backend):
    """Context-mixing adaptive arithmetic coder of the symbols themselves; no side information
    beyond the count."""

    name = "rank-ac"

    def encode(self, symbols: np.ndarray, alphabet: int) -> bytes:
        """Code ``symbols`` (ints in ``range(alphabet)``) into a count varint plus coder bytes."""
        values = np.asarray(symbols, dtype=np.int64).ravel()
        if values.size and (int(values.min()) < 0 or int(values.max()) >= alphabet):
            raise ValueError(f"symbols must lie in range({alphabet})")
        if not values.size or alphabet == 1:
            return count_bytes(values.size)  # nothing to decide: no coder bytes at all
        model, encoder = _model_for(alphabet, values.size), _Encoder()
        code = model.code
        for symbol in values.tolist():
            code(encoder, symbol)
        return count_bytes(values.size) + encoder.finish()

    def decode(self, payload: bytes, alphabet: int, expected: int) -> np.ndarray:
        """Inverse of :meth:`encode`; BadArchiveError on truncation, junk, symbols outside the
        alphabet, or a count other than ``expected``."""
        count, start = read_count(payload, "rank-ac")
        if count != expected:
            raise BadArchiveError(f"rank-ac payload holds {count} symbols, not the {expected} expected")
        stream = memoryview(payload)[start:]
        dtype = np.uint8 if alphabet <= 256 else np.int64
        if not count or alphabet == 1:
            if stream:
                raise BadArchiveError("rank-ac payload has trailing bytes")
            return np.zeros(count, dtype=dtype)
        # Every decision costs some bits, so a count this payload cannot hold is corrupt (and
        # must not make us allocate or loop for it).
        if count > _SYMBOLS_PER_BYTE * len(stream):
            raise BadArchiveError("rank-ac payload is too short for its symbol count")
        model, decoder = _model_for(alphabet, count), _Decoder(stream)
        code = model.code
        symbols = [code(decoder, 0) for _ in range(count)]
        decoder.finish()
        result = np.array(symbols, dtype=dtype)
        if result.size and int(result.max()) >= alphabet:
            raise BadArchiveError(f"rank-ac symbol {int(result.max())} is outside the alphabet of {alphabet}")
        return result

