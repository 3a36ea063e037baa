"""Tests for the rank-ac back-end (context-mixing adaptive binary range coder)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphazip.backends.serialize import count_bytes
from alphazip.backends import rank_ac
from alphazip.backends.rank_ac import RankACBackend
from alphazip.errors import BadArchiveError

BACKEND = RankACBackend()
ALPHABETS = [1, 2, 3, 256, 257, 49_408, 65_536, 262_400]


def roundtrip(symbols, alphabet):
    """Encode then decode; returns (payload, decoded array)."""
    payload = BACKEND.encode(np.asarray(symbols, dtype=np.int64), alphabet)
    return payload, BACKEND.decode(payload, alphabet, len(symbols))


def dtype_for(alphabet):
    return np.uint8 if alphabet <= 256 else np.int64


@st.composite
def streams(draw):
    """An alphabet (the sizes in use, or any up to 300k) and a symbol list drawn from it."""
    alphabet = draw(st.one_of(st.sampled_from(ALPHABETS), st.integers(1, 300_000)))
    # A few frequent symbols mixed with the whole range, as ranks are.
    hot = draw(st.lists(st.integers(0, min(alphabet - 1, 40)), min_size=1, max_size=5))
    symbol = st.one_of(st.sampled_from(hot), st.integers(0, alphabet - 1))
    return alphabet, draw(st.lists(symbol, max_size=400))


@given(streams())
@settings(max_examples=300, deadline=None)
def test_roundtrip(case):
    alphabet, symbols = case
    _, decoded = roundtrip(symbols, alphabet)
    assert decoded.dtype == dtype_for(alphabet)
    assert decoded.tolist() == symbols


@pytest.mark.parametrize("alphabet", ALPHABETS + [2**40])
def test_roundtrip_every_symbol_and_the_largest(alphabet):
    symbols = list(range(min(alphabet, 600))) * 2 + [alphabet - 1] * 3
    assert roundtrip(symbols, alphabet)[1].tolist() == symbols


def test_empty_input():
    for alphabet in (1, 256, 65_536):
        payload, decoded = roundtrip([], alphabet)
        assert payload == b"\x00"
        assert decoded.dtype == dtype_for(alphabet) and decoded.size == 0


def test_alphabet_of_one_costs_only_the_count():
    payload, decoded = roundtrip([0] * 1000, 1)
    assert payload == b"\xe8\x07" and decoded.tolist() == [0] * 1000


def test_registered_name():
    from alphazip.backends.base import _REGISTRY

    assert _REGISTRY["rank-ac"] is RankACBackend


@pytest.mark.parametrize("symbols, alphabet", [([0, 4], 4), ([-1], 10), ([65_536], 65_536)])
def test_encode_rejects_symbols_outside_alphabet(symbols, alphabet):
    with pytest.raises(ValueError):
        BACKEND.encode(np.array(symbols), alphabet)


# Pins the bitstream format: these bytes must never change for the name "rank-ac".
GOLDEN = [
    ([1, 1, 0], 4, "03a4000000"),
    ([0] * 5, 65_536, "05ab000000"),
    ([3, 1, 3, 3, 0, 1, 3, 2, 2, 3, 0, 5, 3, 3, 1, 1, 1, 4, 3, 0], 6, "14960b37fc1b68802b000000"),
    (list(b"hello world"), 256, "0b94287160c2fdacbbc3a2000000"),
    ([0, 0, 1, 0, 7, 300, 0, 2, 65_535, 0, 1, 0], 65_536, "0c9e2a238aaeff8d4683b1000000"),
    ([5, 49_000, 17, 17, 48_999], 49_408, "0527f30f526efcfa51b3b6000000"),
]


@pytest.mark.parametrize("symbols, alphabet, expected", GOLDEN)
def test_golden_bitstream(symbols, alphabet, expected):
    payload, decoded = roundtrip(symbols, alphabet)
    assert payload.hex() == expected
    assert decoded.tolist() == symbols


# --- how well it codes ------------------------------------------------------------------------


def order0_entropy_bits(symbols):
    """n * H0 of the empirical symbol distribution, in bits."""
    counts = np.bincount(symbols)
    p = counts[counts > 0] / len(symbols)
    return float(-(p * np.log2(p)).sum() * len(symbols))


@pytest.mark.parametrize("alphabet", [256, 65_536])
def test_skewed_stream_reaches_order0_entropy(alphabet):
    # Geometric ranks with a long tail, like a language model's: adaptive coding pays only a
    # little for learning the distribution.
    rng = np.random.default_rng(7)
    symbols = np.minimum(rng.geometric(0.35, 60_000) - 1 + (rng.random(60_000) < 0.05) * rng.integers(0, 200, 60_000),
                         alphabet - 1)
    payload, decoded = roundtrip(symbols, alphabet)
    assert np.array_equal(decoded, symbols)
    assert 8 * len(payload) <= 1.01 * order0_entropy_bits(symbols) + 2048


def test_context_takes_the_stream_below_order0():
    # Runs of rank 0 and runs of larger ranks, each symbol alone as likely as in an i.i.d.
    # stream: the previous symbols' lengths predict the next one, the order-0 entropy cannot.
    rng = np.random.default_rng(1)
    runs = [np.zeros(n, np.int64) if i % 2 else rng.integers(1, 4, n) for i, n in enumerate(rng.integers(5, 40, 2000))]
    symbols = np.concatenate(runs)
    payload, decoded = roundtrip(symbols, 65_536)
    assert np.array_equal(decoded, symbols)
    assert 8 * len(payload) < 0.75 * order0_entropy_bits(symbols)


def test_bytes_use_their_previous_bytes():
    text = b"the quick brown fox jumps over the lazy dog; " * 40 + bytes(range(256))
    payload, decoded = roundtrip(list(text), 256)
    assert decoded.tobytes() == text
    assert 8 * len(payload) < 0.25 * order0_entropy_bits(np.frombuffer(text, np.uint8))


def test_the_most_compressible_stream_is_within_the_count_bound():
    # All zeros over an alphabet of two is the cheapest stream there is: the decoder's bound on
    # symbols per payload byte must still admit it.
    payload, decoded = roundtrip(np.zeros(100_000, np.int64), 2)
    assert not decoded.any()
    assert 100_000 <= rank_ac._SYMBOLS_PER_BYTE * (len(payload) - 3)


# --- strictness -------------------------------------------------------------------------------


def valid_payload():
    symbols = [3, 1, 3, 3, 0, 1, 3, 2, 2, 3, 0, 5, 3, 3, 1, 1, 1, 4, 3, 0] * 3
    return BACKEND.encode(np.array(symbols), 6)


@pytest.mark.parametrize("alphabet", [6, 65_536])
def test_every_truncation_is_an_error(alphabet):
    rng = np.random.default_rng(5)
    symbols = np.minimum(rng.geometric(0.3, 400) - 1, alphabet - 1)
    payload = BACKEND.encode(symbols, alphabet)
    for cut in range(len(payload)):
        with pytest.raises(BadArchiveError):
            BACKEND.decode(payload[:cut], alphabet, len(symbols))


@pytest.mark.parametrize("junk", [b"\x00", b"\x01", b"\x80", b"\xff", b"\x00\x00\x00\x00\x00"])
def test_trailing_bytes_are_an_error(junk):
    with pytest.raises(BadArchiveError):
        BACKEND.decode(valid_payload() + junk, 6, 60)


def test_nothing_to_decide_with_trailing_bytes():
    for payload, alphabet, count in [(b"\x00\x00", 4, 0), (b"\x00\x01", 4, 0), (b"\x05\x00\x00\x00\x00", 1, 5)]:
        with pytest.raises(BadArchiveError):
            BACKEND.decode(payload, alphabet, count)


@pytest.mark.parametrize("expected", [0, 59, 61, 10**12])
def test_count_mismatch(expected):
    with pytest.raises(BadArchiveError, match="symbols"):
        BACKEND.decode(valid_payload(), 6, expected)


def test_count_beyond_what_the_payload_can_hold():
    # A huge recorded count on a tiny payload is refused before anything is decoded.
    count = 10**9
    payload = count_bytes(count) + b"\x12\x34"
    with pytest.raises(BadArchiveError, match="too short"):
        BACKEND.decode(payload, 65_536, count)


@pytest.mark.parametrize("payload", [b"", b"\x80", b"\xff\xff", b"\x80\x00", b"\xff\x01"])
def test_bad_count(payload):
    with pytest.raises(BadArchiveError):
        BACKEND.decode(payload, 4, 1)


def test_symbol_outside_a_byte_alphabet():
    # Over an alphabet of 5 a symbol is 3 bits, so garbage can decode to 5, 6 or 7.
    for junk in range(256):
        payload = b"\x01" + bytes([junk, 0x55])
        try:
            decoded = BACKEND.decode(payload, 5, 1)
        except BadArchiveError:
            continue
        assert decoded.tolist()[0] < 5


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_corrupt_payload_raises_only_bad_archive(data):
    alphabet = data.draw(st.sampled_from([2, 6, 256, 257, 49_408, 65_536]))
    symbols = data.draw(st.lists(st.integers(0, min(alphabet, 20) - 1), min_size=1, max_size=60))
    payload = bytearray(BACKEND.encode(np.array(symbols), alphabet))
    index = data.draw(st.integers(0, len(payload) - 1))
    payload[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(payload)))
    try:
        decoded = BACKEND.decode(bytes(payload[:cut]), alphabet, len(symbols))
    except BadArchiveError:
        return
    assert len(decoded) == len(symbols) and decoded.dtype == dtype_for(alphabet)
    assert ((decoded >= 0) & (decoded < alphabet)).all()


@given(st.binary(max_size=40), st.sampled_from([2, 256, 65_536]), st.integers(0, 50))
@settings(max_examples=300, deadline=None)
def test_garbage_raises_only_bad_archive(garbage, alphabet, count):
    try:
        decoded = BACKEND.decode(count_bytes(count) + garbage, alphabet, count)
    except BadArchiveError:
        return
    assert len(decoded) == count and ((decoded >= 0) & (decoded < alphabet)).all()


# --- the coder's end --------------------------------------------------------------------------


def test_payload_ends_with_a_multiple_of_2_to_the_24():
    for symbols, alphabet in [([1, 2, 3] * 50, 6), (list(range(300)), 65_536)]:
        assert BACKEND.encode(np.array(symbols), alphabet).endswith(b"\0\0\0")


@pytest.mark.parametrize("last", [1, 0x80, 0xFF])
def test_a_final_point_off_the_grid_is_an_error(last):
    payload = valid_payload()
    with pytest.raises(BadArchiveError):
        BACKEND.decode(payload[:-1] + bytes([last]), 6, 60)


def test_tables_are_pinned():
    # The mixer's fixed-point tables are part of the bitstream.
    assert (sum(rank_ac._SQUASH), sum(rank_ac._STRETCH)) == (8_384_479, 33)
    assert rank_ac._SQUASH[2047] == 2047 and rank_ac._STRETCH[2048] == 1
