"""The same round-trip and strictness checks over every registered back-end."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphazip.backends import backend_names, get_backend
from alphazip.errors import BadArchiveError

BACKENDS = backend_names()


def test_registry_has_the_five_coders():
    assert set(BACKENDS) >= {"gzip", "brotli", "zstd", "xz", "huffman"}


def test_unknown_backend_names_the_known_ones():
    with pytest.raises(ValueError, match="brotli"):
        get_backend("nope")


@pytest.mark.parametrize("name", BACKENDS)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_symbols_round_trip(name, data):
    alphabet = data.draw(st.sampled_from([1, 2, 256, 257, 49_408, 262_400]))
    symbols = data.draw(st.lists(st.integers(0, alphabet - 1), max_size=300))
    backend = get_backend(name)
    decoded = backend.decode(backend.encode(np.array(symbols, dtype=np.int64), alphabet), alphabet, len(symbols))
    assert decoded.tolist() == symbols


@pytest.mark.parametrize("name", BACKENDS)
def test_skewed_ranks_compress_well(name):
    rng = np.random.default_rng(0)
    ranks = np.minimum(rng.geometric(0.5, 20_000) - 1, 255)
    payload = get_backend(name).encode(ranks, 256)
    counts = np.bincount(ranks)
    entropy_bits = -np.sum(counts[counts > 0] * np.log2(counts[counts > 0] / len(ranks)))
    assert len(payload) * 8 < 1.35 * entropy_bits  # every coder should get near the order-0 limit


@pytest.mark.parametrize("name", BACKENDS)
def test_corrupt_payloads_raise_our_error(name):
    backend = get_backend(name)
    payload = backend.encode(np.arange(200) % 7, 256)
    for broken in [payload[:-1], payload + b"\x00", b"", b"\xff" * 20, payload[: len(payload) // 2]]:
        try:
            backend.decode(broken, 256, 200)
        except BadArchiveError:
            continue
        # A coder without its own check may decode junk to *some* symbols; never to the original.
        assert backend.decode(broken, 256, 200).tolist() != (np.arange(200) % 7).tolist()
