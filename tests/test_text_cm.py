"""``ac`` archives' raw frames: brotli, or the context-mixing byte coder where it is smaller."""

import random
from pathlib import Path

import brotli
import numpy as np
import pytest
from conftest import TINY
from hypothesis import given, settings
from hypothesis import strategies as st

from alphazip import Compressor, Decompressor, container
from alphazip.backends.text_cm import BROTLI, CONTEXT_MIXING, TaggedRaw, decode_mixing, encode_mixing
from alphazip.errors import BadArchiveError

URLS = (Path(__file__).parent / "data" / "urls-excerpt.txt").read_bytes()  # the first 8 KiB of urls.10K


def markov_text(size: int, seed: int = 7) -> bytes:
    """Letters from an order-2 source with peaked transitions: what context mixing models exactly
    and brotli (literals by one byte of context) only in part."""
    rng = random.Random(seed)
    letters, table, out = b"abcdefghijklmnopqrstuvwxyz ./", {}, bytearray(b"ab")
    while len(out) < size:
        state = bytes(out[-2:])
        choices = table.setdefault(state, rng.sample(letters, 4))
        out.append(rng.choices(choices, weights=(8, 4, 2, 1))[0])
    return bytes(out)


TEXT = markov_text(6000)


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=600))
def test_the_mixing_coder_round_trips_any_bytes(data):
    payload = encode_mixing(data)
    assert decode_mixing(memoryview(payload), len(data)) == data


def test_the_mixing_coder_learns_text():
    """URLs in under 40 % of their bytes, within 4 % of brotli -11 with its built-in dictionary
    (the whole urls.10K: below it, docs/results.md); an order-2 source well below brotli."""
    assert len(encode_mixing(URLS)) < min(0.4 * len(URLS), 1.04 * len(brotli.compress(URLS, quality=11)))
    assert len(encode_mixing(TEXT)) < 0.92 * len(brotli.compress(TEXT, quality=11))


def raw(data: bytes, to_beat: int | None) -> bytes:
    return TaggedRaw().encode(np.frombuffer(data, np.uint8), 256, to_beat)


def test_it_is_tried_only_where_it_may_win():
    data = TEXT
    assert raw(data, to_beat=None)[0] == BROTLI  # nothing to beat: brotli, fast
    assert raw(data, to_beat=10)[0] == BROTLI  # a model frame far smaller: not worth the time
    assert raw(data, to_beat=len(data))[0] == CONTEXT_MIXING  # smaller than brotli here
    binary = bytes(range(256)) * 20
    assert raw(binary, to_beat=len(binary))[0] == BROTLI  # not text


@pytest.mark.parametrize("to_beat", [None, 10 ** 6])
def test_either_payload_decodes(to_beat):
    data = TEXT[:3000]
    assert TaggedRaw().decode(raw(data, to_beat), 256, len(data)).tobytes() == data


@pytest.mark.parametrize("payload", [b"", b"\x07abc", b"\x01", b"\x01\x05", b"\x01\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01"])
def test_bad_payloads_are_clean_errors(payload):
    with pytest.raises(BadArchiveError):
        TaggedRaw().decode(payload, 256, 5)


def test_a_damaged_mixing_payload_is_a_clean_error():
    data = TEXT
    payload = bytearray(raw(data, to_beat=10 ** 6))
    assert payload[0] == CONTEXT_MIXING
    for position in (3, len(payload) // 2, len(payload) - 1):
        damaged = bytearray(payload)
        damaged[position] ^= 0x24
        try:
            assert TaggedRaw().decode(bytes(damaged), 256, len(data)).tobytes() != data
        except BadArchiveError:
            pass
    with pytest.raises(BadArchiveError):
        TaggedRaw().decode(bytes(payload[:-3]), 256, len(data))


def test_an_ac_archive_stores_text_the_model_loses_on_with_it(tiny):
    """The tiny test model codes this text worse than its bytes: auto mode keeps a raw frame, coded
    by whichever of brotli and the mixing coder is smaller, and it unpacks."""
    data = TEXT
    blob = Compressor(backend="ac", model=TINY, context=256, frame_bytes=1 << 20).compress(data)
    frame = container.read(blob).frames[0]
    assert frame.mode == "raw" and frame.streams[0][0] == CONTEXT_MIXING
    assert Decompressor().decompress(blob) == data
    older = Compressor(backend="ac-1", model=TINY, context=256, frame_bytes=1 << 20).compress(data)
    assert len(blob) < len(older)  # ac-1's raw frames are brotli's
    assert Decompressor().decompress(older) == data
