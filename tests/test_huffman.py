"""Tests for the adaptive Huffman (Vitter) back-end."""

import heapq

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphazip.backends import huffman
from alphazip.backends.huffman import HuffmanBackend, _VitterTree
from alphazip.errors import BadArchiveError

BACKEND = HuffmanBackend()
ALPHABETS = [1, 2, 3, 256, 257, 49152, 262144]


def roundtrip(symbols, alphabet):
    """Encode then decode; returns (payload, decoded array)."""
    payload = BACKEND.encode(np.asarray(symbols, dtype=np.int64), alphabet)
    return payload, BACKEND.decode(payload, alphabet, len(symbols))


@st.composite
def streams(draw):
    """An alphabet (fixed sizes or any up to 300k) and a symbol list drawn from it."""
    alphabet = draw(st.one_of(st.sampled_from(ALPHABETS), st.integers(1, 300_000)))
    # Mix a few frequent symbols with the whole range so that both tree updates and
    # new-symbol escapes are exercised.
    hot = draw(st.lists(st.integers(0, alphabet - 1), min_size=1, max_size=5))
    symbol = st.one_of(st.sampled_from(hot), st.integers(0, alphabet - 1))
    return alphabet, draw(st.lists(symbol, max_size=400))


@given(streams())
@settings(max_examples=300, deadline=None)
def test_roundtrip(case):
    alphabet, symbols = case
    _, decoded = roundtrip(symbols, alphabet)
    assert len(decoded) == len(symbols) and decoded.dtype == (np.uint8 if alphabet <= 256 else np.int64)
    assert decoded.tolist() == symbols


@pytest.mark.parametrize("alphabet", ALPHABETS)
def test_roundtrip_every_symbol_of_small_alphabets(alphabet):
    symbols = list(range(min(alphabet, 600))) * 3
    assert roundtrip(symbols, alphabet)[1].tolist() == symbols


@pytest.mark.parametrize("alphabet", [5, 262144])
def test_roundtrip_across_tiny_decoder_chunks(monkeypatch, alphabet):
    # With 1-byte chunks nearly every code and escape straddles a refill of the bit buffer.
    monkeypatch.setattr(huffman, "_CHUNK_BYTES", 1)
    rng = np.random.default_rng(3)
    symbols = np.minimum(rng.geometric(0.2, 3000) - 1, 40) * (alphabet // 41)
    payload, decoded = roundtrip(symbols, alphabet)
    assert np.array_equal(decoded, symbols)
    with pytest.raises(BadArchiveError):
        BACKEND.decode(payload[:-1], alphabet, len(symbols))
    with pytest.raises(BadArchiveError):
        BACKEND.decode(payload + b"\x00", alphabet, len(symbols))


def test_empty_input():
    payload, decoded = roundtrip([], 257)
    assert payload == b"\x00"
    assert decoded.dtype == np.int64 and decoded.size == 0


def test_registered_name():
    from alphazip.backends.base import _REGISTRY

    assert _REGISTRY["huffman"] is HuffmanBackend


def test_encode_rejects_symbols_outside_alphabet():
    with pytest.raises(ValueError):
        BACKEND.encode(np.array([0, 4]), 4)


# Pins the bitstream format: these bytes must never change for the name "huffman".
GOLDEN = [
    ([1, 1, 0], 4, "0360"),
    ([0] * 5, 1, "05f0"),
    ([3, 1, 3, 3, 0, 1, 3, 2, 2, 3, 0, 5, 3, 3, 1, 1, 1, 4, 3, 0], 6, "14628005ed94dee478"),
    (list(b"hello world"), 257, "0b340cb1b1c6f820477fc72f8640"),
]


@pytest.mark.parametrize("symbols, alphabet, expected", GOLDEN)
def test_golden_bitstream(symbols, alphabet, expected):
    payload, decoded = roundtrip(symbols, alphabet)
    assert payload.hex() == expected
    assert decoded.tolist() == symbols


def order0_entropy_bits(symbols):
    """n * H0 of the empirical symbol distribution, in bits."""
    counts = np.bincount(symbols)
    p = counts[counts > 0] / len(symbols)
    return float(-(p * np.log2(p)).sum() * len(symbols))


def static_huffman_bits(symbols):
    """Size in bits of the stream under the optimal static Huffman code (no header)."""
    heap = [int(c) for c in np.bincount(symbols) if c]
    heapq.heapify(heap)
    total = 0
    while len(heap) > 1:
        merged = heapq.heappop(heap) + heapq.heappop(heap)
        total += merged
        heapq.heappush(heap, merged)
    return total


def test_skewed_stream_size_is_near_optimal():
    rng = np.random.default_rng(7)
    symbols = np.minimum(rng.geometric(0.3, 200_000) - 1, 256)
    payload, decoded = roundtrip(symbols, 257)
    assert np.array_equal(decoded, symbols)
    bits = 8 * len(payload)
    assert bits <= 1.1 * order0_entropy_bits(symbols) + 1024
    # Adaptive Huffman should track the ideal static Huffman code closely on such data.
    assert bits <= 1.01 * static_huffman_bits(symbols) + 1024


# --- strictness -------------------------------------------------------------------------------


def valid_payload():
    symbols = [3, 1, 3, 3, 0, 1, 3, 2, 2, 3, 0, 5, 3, 3, 1, 1, 1, 4, 3, 0]
    return BACKEND.encode(np.array(symbols), 6)


def test_truncated_payload():
    payload = valid_payload()
    for cut in range(len(payload)):
        with pytest.raises(BadArchiveError):
            BACKEND.decode(payload[:cut], 6, 20)


def test_trailing_byte():
    for junk in (b"\x00", b"\x01", b"\xff"):
        with pytest.raises(BadArchiveError):
            BACKEND.decode(valid_payload() + junk, 6, 20)


def test_nonzero_padding_bits():
    # [1, 1, 0] over 4 symbols is the 6 bits 011000, so the last 2 bits of 0x60 are padding.
    with pytest.raises(BadArchiveError):
        BACKEND.decode(b"\x03\x61", 4, 3)


def test_empty_input_with_trailing_byte():
    with pytest.raises(BadArchiveError):
        BACKEND.decode(b"\x00\x00", 4, 0)


def test_fixed_width_symbol_out_of_range():
    # One symbol over an alphabet of 5 (3-bit escapes): 111 = 7 is not a symbol.
    with pytest.raises(BadArchiveError, match="alphabet"):
        BACKEND.decode(b"\x01\xe0", 5, 1)


def test_new_symbol_sent_twice():
    # 01 (new symbol 1), then the NYT code 0 and 01 again.
    with pytest.raises(BadArchiveError):
        BACKEND.decode(b"\x02\x48", 4, 2)


@pytest.mark.parametrize("payload", [b"", b"\x80", b"\xff\xff", b"\x80\x00", b"\xff\x01"])
def test_bad_count(payload):
    with pytest.raises(BadArchiveError):
        BACKEND.decode(payload, 4, 1)


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_corrupt_payload_raises_only_bad_archive(data):
    alphabet = data.draw(st.sampled_from([2, 6, 257, 49152]))
    symbols = data.draw(st.lists(st.integers(0, min(alphabet, 20) - 1), min_size=1, max_size=60))
    payload = bytearray(BACKEND.encode(np.array(symbols), alphabet))
    index = data.draw(st.integers(0, len(payload) - 1))
    payload[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(payload)))
    try:
        decoded = BACKEND.decode(bytes(payload[:cut]), alphabet, len(symbols))
    except BadArchiveError:
        return
    assert len(decoded) == len(symbols) and decoded.dtype == (np.uint8 if alphabet <= 256 else np.int64)
    assert ((decoded >= 0) & (decoded < alphabet)).all()


# --- the tree itself --------------------------------------------------------------------------


def check_invariants(tree, counts):
    """Vitter's invariant and the bookkeeping that the update relies on."""
    key, par, down, size = tree.key, tree.par, tree.down, tree.size
    assert par[0] == -1 and key[size - 1] == 0  # root first, NYT (weight 0) last
    assert all(key[s - 1] >= key[s] for s in range(1, size))
    reached, stack = 0, [0]
    while stack:
        s = stack.pop()
        reached += 1
        if key[s] & 1:
            right = down[s]
            assert right > s and right % 2 == 1
            assert par[right] == par[right + 1] == s
            assert key[s] >> 1 == (key[right] >> 1) + (key[right + 1] >> 1)
            stack += [right, right + 1]
        elif s != size - 1:
            assert tree.slot[down[s]] == s
            assert key[s] >> 1 == counts[down[s]]
    assert reached == size
    leaders = {}
    for s in range(size):
        leaders.setdefault(key[s], s)
    assert all(tree.leader[k] == leaders.get(k, -1) for k in range(len(tree.leader)))


@given(st.integers(1, 40), st.lists(st.integers(0, 39), max_size=200), st.integers(0, 3))
@settings(max_examples=200, deadline=None)
def test_tree_invariants_hold_after_every_update(alphabet, raw, skew):
    symbols = [s % alphabet >> skew for s in raw]  # shifting skews towards small symbols
    tree = _VitterTree(alphabet, max(len(symbols), 1))
    counts = {}
    for sym in symbols:
        tree.update(sym)
        counts[sym] = counts.get(sym, 0) + 1
        check_invariants(tree, counts)
