"""A byte-wise range coder over Python integers: any total frequency up to 2^48, no carry loss.

The state is a 64-bit window: ``low`` and ``range``, renormalized a byte at a time whenever the
range falls below 2^56, with the carry handled as LZMA does (a cached byte and a run of pending
0xFF bytes that a carry turns to 0x00). The first byte such a coder writes is always 0 and is
left out; at the end only as many bytes are written as pin a value inside the final interval,
and trailing zero bytes are dropped: the decoder reads zeros past the end of its input. A chunk
of a few hundred tokens so pays about one byte to finish, not eight.

Every operation is an integer one, so the code is the same on every machine.
"""

from ..errors import BadArchiveError

_BITS = 64
_MASK = (1 << _BITS) - 1
_TOP = 1 << (_BITS - 8)  # renormalize below this range
MAX_TOTAL = 1 << 48  # r = range // total stays >= 2^8


class RangeEncoder:
    """Codes symbols given as (cumulative frequency, frequency, total) into bytes."""

    def __init__(self):
        self.low, self.range = 0, _MASK
        self._cache, self._pending = 0, 0  # the byte a carry may still reach, then 0xFF bytes
        self._out = bytearray()

    def encode(self, cum: int, freq: int, total: int) -> None:
        """Narrow the interval to [cum, cum + freq) of ``total``."""
        r = self.range // total
        self.low += r * cum
        self.range = r * freq
        while self.range < _TOP:
            self.range <<= 8
            self._shift()

    def _shift(self) -> None:
        low = self.low
        if low < (0xFF << (_BITS - 8)) or low > _MASK:  # the top byte can no longer change
            carry = low >> _BITS
            self._out.append((self._cache + carry) & 0xFF)
            self._out += bytes([(0xFF + carry) & 0xFF]) * self._pending
            self._pending = 0
            self._cache = (low >> (_BITS - 8)) & 0xFF
        else:
            self._pending += 1
        self.low = (low << 8) & _MASK

    def finish(self) -> bytes:
        """The code: the shortest byte string (zeros implied after it) inside the final interval."""
        for bits in range(_BITS, -1, -8):  # the value in [low, low + range) with most trailing zeros
            value = -(-self.low // (1 << bits)) << bits
            if value < self.low + self.range:
                break
        self.low = value
        for _ in range(_BITS // 8 + 1):
            self._shift()
        out = self._out
        assert out[0] == 0, "the interval lies in [0, 1): its first byte is always 0"
        return bytes(out[1:]).rstrip(b"\0")


class RangeDecoder:
    """Reads back what :class:`RangeEncoder` wrote, given the same frequencies in the same order."""

    def __init__(self, data: bytes):
        self._data, self._at = data, _BITS // 8
        self.code = int.from_bytes(data[:self._at].ljust(self._at, b"\0"), "big")
        self.range = _MASK
        self._unit = 1

    def target(self, total: int) -> int:
        """Where the code falls in [0, total): the symbol is the one whose range holds it."""
        self._unit = self.range // total
        return min(self.code // self._unit, total - 1)

    def consume(self, cum: int, freq: int) -> None:
        """Take the symbol at [cum, cum + freq) out of the code (after :meth:`target`)."""
        self.code -= self._unit * cum
        self.range = self._unit * freq
        if not 0 <= self.code < self.range:
            raise BadArchiveError("arithmetic-coded stream is corrupt")
        while self.range < _TOP:
            self.code = (self.code << 8) | (self._data[self._at] if self._at < len(self._data) else 0)
            self._at += 1
            self.range <<= 8

    def check_end(self) -> None:
        """Every byte of the input was needed: anything left is trailing junk."""
        if self._at < len(self._data):
            raise BadArchiveError(f"arithmetic-coded stream has {len(self._data) - self._at} bytes after its end")
