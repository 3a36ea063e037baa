"""Adaptive, context-mixing binary arithmetic coding of the symbol stream itself: ``rank-ac``.

Every symbol is turned into a few yes/no decisions; each decision is range-coded under a
probability that adapts as the stream goes by, predicted from the symbols before it. Nothing is
sent about the distribution: the decoder learns it in step. All arithmetic is on Python ints,
so the bits are the same on every machine.

Format of a ``rank-ac`` payload (frozen: archives depend on these exact bits):

* The symbol count as an unsigned LEB128 varint (minimal form), then the range coder's bytes.
* The range coder is LZMA's (32-bit ``low`` and ``range``, a byte out whenever ``range`` drops
  below 2**24, carries propagated into bytes already written) without LZMA's leading zero byte.
  A decision with probability ``p`` of a one (16-bit, clamped to [64, 65472]) takes the low
  ``(range * p) >> 16`` of the interval for a one, the rest for a zero.
* At the end the coder writes the point of the final interval with the most trailing zero bits,
  as four bytes, and then drops the zero bytes at the end of those four (only those). The decoder
  reads missing bytes as zeros, and accepts the payload only if it is exactly that canonical
  encoding: every byte used, the final point the canonical one, no more zeros implied than were
  dropped. So truncation, trailing bytes and most corruption are caught at the end.

Two ways of turning a symbol into decisions, by alphabet size (both write bits MSB first):

* Alphabets of at most 256 (raw frames' bytes): the bits of the symbol, down a binary tree, each
  predicted by mixing four adaptive counters: the tree node alone (order 0) and the node after
  the previous one, two and three symbols (orders 1 to 3).
* Larger alphabets (ranks, escaped token ids): ``v = symbol + 1`` splits into its bit length
  ``e + 1`` and the ``e`` bits below the leading one. ``e`` is sent in unary (``e > 0?``,
  ``e > 1?`` .., never past the alphabet's largest), each step mixing counters for the step
  alone, for the step after the last two symbols' ``e`` (capped at 5), and for the step after
  the sum of the last eight ``e`` (halved, capped at 15). Then the first two bits below the
  leading one are coded with counters for ``(e, bits so far)``, the rest with ``(e, position)``.

Counters hold P(one) in 1/65536, start at one half and move towards each bit by 1/(n + 1.5)
of the way for their n-th update, and by 1/256.5 from then on (quick to learn, then stable but
still tracking drift). The mixer is a single-layer logistic mix (lpaq's): stretch each counter's
prediction, a weighted sum, squash; one weight set per unary step or tree depth, and for bytes
per whether the order-2 context is new; weights learn from each coding error.
"""

import math
from operator import mul

import numpy as np

from ..errors import BadArchiveError
from .base import Backend

_TOP = 1 << 24  # the coder shifts a byte out whenever range falls below this
_MASK = (1 << 32) - 1
_PMIN, _PMAX = 64, 65536 - 64  # every decision costs >= -log2(_PMAX / 65536) bits
_UNIFORM_BITS = 16  # equally likely bits are coded this many at a time at most
_COUNT_LIMIT = 255  # updates after which a counter's rate stops falling
_RATE = [int(65536 / (n + 1.5)) for n in range(_COUNT_LIMIT + 1)]
# Symbols a payload of n coder bytes can hold: each costs at least one decision, so at least
# -log2(_PMAX / 65536) = 0.00141 bits, and n bytes carry at most 8 * n + 8 bits of them.
_SYMBOLS_PER_BYTE = 5_700

# Logistic mixing in lpaq's fixed point: stretch(p) = ln(p / (1 - p)) * 256 over 12-bit p.
_SQUASH = [min(max(int(4096 / (1 + math.exp(-d / 256))), 1), 4095) for d in range(-2047, 2048)]
_STRETCH = [0] * 4096
_MIX_SHIFT = 16  # weights are 16.16 fixed point
_MIX_RATE = 1  # weight step per unit of error (tuned on the corpus' rank streams)


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
        """The bytes so far plus the canonical final point, its trailing zero bytes dropped."""
        point = self.low + _canonical_offset(self.low, self.range)
        if point > _MASK:
            point &= _MASK
            self._carry()
        return bytes(self.out) + point.to_bytes(4, "big")[: 4 - _trailing_zero_bytes(point)]


class _Decoder:
    """The range coder's reading side; strict about where the payload ends."""

    __slots__ = ("data", "pos", "implied", "range", "code", "window")

    def __init__(self, data: memoryview):
        self.data, self.pos, self.implied = data, 0, 0
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
        elif self.implied < 4:
            byte = 0  # one of the final point's dropped zero bytes
            self.implied += 1
        else:
            raise BadArchiveError("rank-ac payload ends early")
        self.code = (self.code << 8) | byte
        self.window = ((self.window << 8) | byte) & _MASK
        self.range <<= 8

    def finish(self) -> None:
        """Accept the payload only if it is the canonical encoding of what was decoded."""
        # code = window - low (mod 2**32) holds throughout, which recovers the encoder's low.
        low = (self.window - self.code) & _MASK
        if self.code != _canonical_offset(low, self.range) or self.pos < len(self.data) \
                or self.implied != _trailing_zero_bytes(self.window):
            raise BadArchiveError("rank-ac payload is corrupt or has trailing bytes")


def _canonical_offset(low: int, range_: int) -> int:
    """How far above ``low`` the point of [low, low + range) with the most trailing zeros is."""
    for unit in (1 << 32, 1 << 24, 1 << 16, 1 << 8):
        offset = -low % unit
        if offset < range_:
            return offset
    return 0


def _trailing_zero_bytes(point: int) -> int:
    return 4 if point == 0 else (((point & -point).bit_length() - 1) >> 3)


class _Counters:
    """Adaptive bit probabilities: ``p[i]`` is P(one) in 1/65536, ``n[i]`` its updates so far."""

    __slots__ = ("p", "n")

    def __init__(self, size: int):
        self.p, self.n = [32768] * size, [0] * size

    def add(self) -> int:
        """A fresh counter (for contexts held in a dict); its index."""
        self.p.append(32768)
        self.n.append(0)
        return len(self.p) - 1

    def update(self, i: int, bit: int) -> None:
        p, n = self.p[i], self.n[i]
        if bit:
            p += ((65536 - p) * _RATE[n]) >> 16
            self.p[i] = p if p < _PMAX else _PMAX
        else:
            p -= (p * _RATE[n]) >> 16
            self.p[i] = p if p > _PMIN else _PMIN
        if n < _COUNT_LIMIT:
            self.n[i] = n + 1

    def code(self, coder, i: int, bit: int) -> int:
        """Code one decision under counter ``i`` alone; the bit."""
        bit = coder.bit(self.p[i], bit)
        self.update(i, bit)
        return bit


class _Mixer:
    """Mixes several counters' predictions of one decision into one probability."""

    __slots__ = ("weights", "inputs", "counters")

    def __init__(self, sets: int, inputs: int, counters: _Counters):
        self.weights = [[(1 << _MIX_SHIFT) // inputs] * inputs for _ in range(sets)]
        self.inputs = inputs
        self.counters = counters

    def code(self, coder, which: list[int], weight_set: int, bit: int) -> int:
        """Code one decision predicted by the counters ``which``; the bit."""
        p, n = self.counters.p, self.counters.n
        stretched = [_STRETCH[p[i] >> 4] for i in which]
        weights = self.weights[weight_set]
        dot = sum(map(mul, weights, stretched)) >> _MIX_SHIFT
        mixed = _SQUASH[(dot if -2047 <= dot <= 2047 else (2047 if dot > 0 else -2047)) + 2047] << 4
        bit = coder.bit(_PMIN if mixed < _PMIN else (_PMAX if mixed > _PMAX else mixed), bit)
        error = ((bit << 16) - mixed) * _MIX_RATE  # in 1/65536, as the weights
        weights[:] = [w + ((s * error) >> 14) for w, s in zip(weights, stretched)]
        # _Counters.update, inlined: this loop is most of the coder's time.
        for i in which:
            q, m = p[i], n[i]
            if bit:
                q += ((65536 - q) * _RATE[m]) >> 16
                p[i] = q if q < _PMAX else _PMAX
            else:
                q -= (q * _RATE[m]) >> 16
                p[i] = q if q > _PMIN else _PMIN
            if m < _COUNT_LIMIT:
                n[i] = m + 1
        return bit


class _RankModel:
    """Symbols of a large alphabet (ranks, token ids) as a bit length in unary plus the bits below."""

    def __init__(self, alphabet: int):
        self.top = top = alphabet.bit_length() - 1  # the largest bit length - 1 a symbol + 1 has
        width = top + 1
        # Counter blocks: unary steps alone, after the last two lengths (6 x 6), after the recent
        # sum (16), the two bits after the leading one by (e, bits so far), the rest by (e, position).
        self.pair = width
        self.recent = self.pair + 36 * width
        self.head = self.recent + 16 * width
        self.counters = _Counters(self.head + 4 * width)
        self.mixer = _Mixer(width, 3, self.counters)
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
    """Symbols of at most 8 bits (raw bytes) down a binary tree, orders 0 to 3 mixed."""

    def __init__(self, alphabet: int):
        self.bits = (alphabet - 1).bit_length()
        self.size = size = 1 << self.bits
        self.counters = _Counters(size + size * size)  # order 0 by node, order 1 by (previous, node)
        self.higher: dict[int, int] = {}  # orders 2 and 3: context key -> counter index
        self.mixer = _Mixer(2 * max(self.bits, 1), 4, self.counters)
        self.history = 0  # the last three symbols, one a byte, newest lowest

    def code(self, coder, symbol: int) -> int:
        """Code ``symbol`` (the encoder's; the decoder passes 0 and gets the decoded one back)."""
        size, higher, counts = self.size, self.higher, self.counters.n
        last = self.history & 0xFF
        order1 = size + last * size
        order2 = (self.history & 0xFFFF) << 9
        order3 = (self.history << 9) | (1 << 34)
        node = 1
        for depth in range(self.bits):
            i2 = higher.get(order2 | node)
            if i2 is None:
                i2 = higher[order2 | node] = self.counters.add()
            i3 = higher.get(order3 | node)
            if i3 is None:
                i3 = higher[order3 | node] = self.counters.add()
            bit = (symbol >> (self.bits - 1 - depth)) & 1
            weight_set = 2 * depth + (counts[i2] < 3)
            node = (node << 1) | self.mixer.code(coder, [node, order1 + node, i2, i3], weight_set, bit)
        decoded = node - size
        self.history = ((self.history << 8) | decoded) & 0xFFFFFF
        return decoded


def _model_for(alphabet: int):
    return _ByteModel(alphabet) if alphabet <= 256 else _RankModel(alphabet)


class RankACBackend(Backend):
    """Context-mixing adaptive arithmetic coder of the symbols themselves; no side information
    beyond the count."""

    name = "rank-ac"

    def encode(self, symbols: np.ndarray, alphabet: int) -> bytes:
        """Code ``symbols`` (ints in ``range(alphabet)``) into a count varint plus coder bytes."""
        array = np.asarray(symbols, dtype=np.int64).ravel()
        if array.size and (int(array.min()) < 0 or int(array.max()) >= alphabet):
            raise ValueError(f"symbols must lie in range({alphabet})")
        model, encoder = _model_for(alphabet), _Encoder()
        code = model.code
        for symbol in array.tolist():
            code(encoder, symbol)
        return _varint(array.size) + encoder.finish()

    def decode(self, payload: bytes, alphabet: int, expected: int) -> np.ndarray:
        """Inverse of :meth:`encode`; BadArchiveError on truncation, junk, symbols outside the
        alphabet, or a count other than ``expected``."""
        count, start = _read_varint(payload)
        if count != expected:
            raise BadArchiveError(f"rank-ac payload holds {count} symbols, not the {expected} expected")
        stream = memoryview(payload)[start:]
        # Every decision costs some bits, so a count this payload cannot hold is corrupt (and
        # must not make us allocate or loop for it). An alphabet of one needs no decisions.
        if alphabet > 1 and count > _SYMBOLS_PER_BYTE * (len(stream) + 1):
            raise BadArchiveError("rank-ac payload is too short for its symbol count")
        model, decoder = _model_for(alphabet), _Decoder(stream)
        code = model.code
        symbols = [code(decoder, 0) for _ in range(count)]
        decoder.finish()
        result = np.array(symbols, dtype=np.uint8 if alphabet <= 256 else np.int64)
        if result.size and int(result.max()) >= alphabet:
            raise BadArchiveError(f"rank-ac symbol {int(result.max())} is outside the alphabet of {alphabet}")
        return result


def _varint(value: int) -> bytes:
    """Unsigned LEB128 of one int: 7 bits a byte, low group first, high bit = more follows."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(data: bytes) -> tuple[int, int]:
    """Decode the leading minimal LEB128 varint; returns (value, bytes used)."""
    value = 0
    for index, byte in enumerate(data[:10]):
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            if byte == 0 and index > 0:
                raise BadArchiveError("rank-ac symbol count is not in minimal form")
            return value, index + 1
    raise BadArchiveError("rank-ac symbol count is truncated")
