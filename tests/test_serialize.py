import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from alphazip.backends.serialize import bytes_to_symbols, leb128_decode, leb128_encode, symbols_to_bytes
from alphazip.errors import BadArchiveError


@given(st.lists(st.integers(0, 2**63 - 1)))
def test_leb128_round_trips(values):
    array = np.array(values, dtype=np.int64)
    assert leb128_decode(leb128_encode(array)).tolist() == values


def test_leb128_known_bytes():
    assert leb128_encode(np.array([0, 127, 128, 300])) == b"\x00\x7f\x80\x01\xac\x02"


def test_small_alphabet_is_one_byte_per_symbol():
    assert symbols_to_bytes(np.array([0, 5, 255]), 256) == b"\x00\x05\xff"


@pytest.mark.parametrize("data", [b"\x80", b"\x01\xff"])
def test_truncated_varint_is_rejected(data):
    with pytest.raises(BadArchiveError):
        leb128_decode(data)


def test_symbol_outside_alphabet_is_rejected():
    with pytest.raises(BadArchiveError, match="outside the alphabet"):
        bytes_to_symbols(b"\x05", 5)
