"""Raw frames of ``ac`` archives: brotli, or a context-mixing byte coder for text the model loses on.

Where the language model codes a text frame worse than its bytes (lists of URLs, identifiers,
tables of numbers), auto mode stores the frame raw; brotli then decides the size. This coder
predicts each bit of each byte by mixing adaptive counters for orders 0-4 and 6 of the bytes
before it, the current word, and a match model (``rank_ac``'s machinery: integer arithmetic only,
so the same bits everywhere). It beats brotli -11 on such text by a few per cent, at tens of
kilobytes a second (pure Python): so it is tried only on a text frame whose model coding it may
beat, and a payload says which of the two it holds.

Payload: one byte, 0 (brotli follows) or 1 (a count varint and this coder's range-coder bytes,
as ``rank-ac``'s, ending in the same 24-bit check).
"""

import numpy as np

from ..errors import BadArchiveError
from ..policy import looks_binary
from . import rank_ac
from .base import get_backend
from .serialize import count_bytes, read_count

BROTLI, CONTEXT_MIXING = 0, 1  # a payload's first byte
TRY_BELOW = 1.15  # try the mixing coder when brotli's payload is under this times the size to beat
ORDERS = (2, 3, 4, 6)  # hashed orders, besides orders 0 and 1
WORD = 15  # the word's table tag, beside the orders'


class TextModel(rank_ac._ByteModel):
    """Bytes down a binary tree, mixing orders 0-4 and 6, the current word and a match model."""

    def __init__(self, count: int):
        self.bits, self.size = 8, 256
        self.table_bits = min(max((32 * count).bit_length(), 12), 24)  # at most 2**24 counters
        self.order1 = 256
        self.hashed = 256 + 256 * 256
        self.match = self.hashed + (1 << self.table_bits)
        self.counters = rank_ac._Counters(self.match + 32)
        self.mixer = rank_ac._Mixer(8 * 8 * 2, 3 + len(ORDERS) + 1, self.counters, rate=15)
        # weights of 0.2 each to start (summing above 1): confident sooner than rank-ac's 1/inputs
        self.mixer.weights = [[13107] * len(weights) for weights in self.mixer.weights]
        self.history = 0  # the last four bytes, newest lowest (the match model keys on them)
        self.longer = 0  # the last eight bytes
        self.word = 0  # a hash of the letters and digits since the last other byte
        self.seen = bytearray()
        self.last_at = rank_ac.array("i", [-1]) * (1 << min(max(count.bit_length(), 10), 22))
        self.at, self.length = -1, 0

    def code(self, coder, symbol: int) -> int:
        """Code ``symbol`` (the encoder's; the decoder passes 0 and gets the decoded one back)."""
        longer, code, counts = self.longer, self.mixer.code, self.counters.n
        order1 = self.order1 + (longer & 0xFF) * 256
        expected = (self.seen[self.at] | 256) if self.length else 0  # with its leading one
        length = min(self.length, 15) << 1
        node = 1
        for depth in range(8):
            if not depth & 3:  # a new nibble: find the hashed contexts' blocks
                blocks = [self._block(order, longer & ((1 << 8 * order) - 1), node) for order in ORDERS]
                blocks.append(self._block(WORD, self.word, node))
            local = (1 << (depth & 3)) | (node & ((1 << (depth & 3)) - 1))
            if expected >> (8 - depth) == node:  # the match still holds: its next bit
                guess = (expected >> (7 - depth)) & 1
                match, weight_set = self.match + length + guess, 8 * depth + 2 * min(self.length, 3)
            else:
                match, weight_set = self.match, 8 * depth
            weight_set = 2 * weight_set + (counts[blocks[1] + local] == 0)  # order 3 new here?
            which = [node, order1 + node, *(block + local for block in blocks), match]
            node = (node << 1) | code(coder, which, weight_set, (symbol >> (7 - depth)) & 1)
        decoded = node - 256
        self._remember(decoded, expected)
        self.longer = ((longer << 8) | decoded) & 0xFFFFFFFFFFFFFFFF
        is_word = 48 <= decoded < 58 or 65 <= decoded < 91 or 97 <= decoded < 123
        self.word = (self.word * 773 + decoded) & 0xFFFFFFFFFF if is_word else decoded
        return decoded

    def _block(self, order: int, context: int, node: int) -> int:
        key = (((context << 5) | node) << 4) | order
        return self.hashed + ((key * 0x9E3779B97F4A7C15 >> 40) & ((1 << self.table_bits) - 16))


def encode_mixing(data: bytes) -> bytes:
    """The mixing coder's payload (without the tag): the count, then the coder's bytes."""
    if not data:
        return count_bytes(0)
    model, encoder = TextModel(len(data)), rank_ac._Encoder()
    for byte in data:
        model.code(encoder, byte)
    return count_bytes(len(data)) + encoder.finish()


def decode_mixing(payload: memoryview, expected: int) -> bytes:
    count, start = read_count(payload, "raw frame")
    if count != expected:
        raise BadArchiveError(f"raw frame holds {count} bytes, not the {expected} expected")
    stream = payload[start:]
    if not count:
        if stream:
            raise BadArchiveError("raw frame has trailing bytes")
        return b""
    if count > rank_ac._SYMBOLS_PER_BYTE * len(stream):  # every decision costs some bits
        raise BadArchiveError("raw frame is too short for its byte count")
    model, decoder = TextModel(count), rank_ac._Decoder(stream)
    out = bytes(model.code(decoder, 0) for _ in range(count))
    decoder.finish()
    return out


class TaggedRaw:
    """What ``ac`` archives' raw frames hold (a Backend without a name: not a rank back-end)."""

    name = "ac raw"

    def encode(self, symbols: np.ndarray, alphabet: int, to_beat: int | None = None) -> bytes:
        """Brotli's payload, or the mixing coder's where the bytes are text and it is smaller;
        tried only when brotli's is under TRY_BELOW x ``to_beat`` (None: never)."""
        data = np.asarray(symbols, dtype=np.uint8).tobytes()
        best = bytes([BROTLI]) + get_backend("brotli").encode(symbols, alphabet)
        if to_beat is not None and len(best) < TRY_BELOW * to_beat and not looks_binary(data):
            mixed = bytes([CONTEXT_MIXING]) + encode_mixing(data)
            best = min(best, mixed, key=len)
        return best

    def decode(self, payload: bytes, alphabet: int, count: int) -> np.ndarray:
        if not payload:
            raise BadArchiveError("raw frame is empty (no coder tag)")
        tag, rest = payload[0], memoryview(payload)[1:]
        if tag == BROTLI:
            return get_backend("brotli").decode(bytes(rest), alphabet, count)
        if tag == CONTEXT_MIXING:
            return np.frombuffer(decode_mixing(rest, count), dtype=np.uint8)
        raise BadArchiveError(f"raw frame has an unknown coder tag {tag}")
