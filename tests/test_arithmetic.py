"""The ``ac`` token coder: its range coder, its exact frequencies, and whole archives."""

import math

import numpy as np
import pytest
import torch
from conftest import TINY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphazip import Compressor, Decompressor, container
from alphazip.lookup import engine_for
from alphazip.coding.arithmetic import ArithmeticDecoder, ArithmeticEncoder
from alphazip.coding.frequencies import SCALE_BITS, FrequencyLookup, coding_facts, frequencies
from alphazip.model import native
from alphazip.coding.rangecoder import MAX_TOTAL, RangeDecoder, RangeEncoder
from alphazip.errors import AlphazipError, BadArchiveError
from alphazip.schedule import score_chunks

AC = {"backend": "ac", "model": TINY, "mode": "model"}


@st.composite
def coded_symbols(draw):
    """(cum, freq, total) triples, from near-certain symbols to uniform ones over 2^48."""
    out = []
    for _ in range(draw(st.integers(0, 200))):
        total = draw(st.integers(1, MAX_TOTAL))
        freq = draw(st.integers(1, total))
        out.append((draw(st.integers(0, total - freq)), freq, total))
    return out


@settings(max_examples=200, deadline=None)
@given(symbols=coded_symbols())
def test_range_coder_round_trips_within_two_bytes_of_the_information(symbols):
    encoder = RangeEncoder()
    for symbol in symbols:
        encoder.encode(*symbol)
    code = encoder.finish()
    decoder = RangeDecoder(code)
    for cum, freq, total in symbols:
        assert cum <= decoder.target(total) < cum + freq
        decoder.consume(cum, freq)
    decoder.check_end()
    information = sum(math.log2(total / freq) for _, freq, total in symbols) / 8
    assert len(code) <= information + 2


def test_range_decoder_refuses_trailing_bytes():
    symbols = [(3, 1, 10), (0, 5, 7), (123, 456, 10_000)] * 20
    encoder = RangeEncoder()
    for symbol in symbols:
        encoder.encode(*symbol)
    decoder = RangeDecoder(encoder.finish() + b"junk" * 4)
    with pytest.raises(BadArchiveError):  # junk read as the code's tail, or left over at the end
        for cum, freq, total in symbols:
            decoder.target(total)
            decoder.consume(cum, freq)
        decoder.check_end()


def test_frequencies_are_positive_integers_led_by_the_argmax():
    logits = torch.randn(5, 300) * 8
    table = frequencies(logits)
    assert table.dtype == torch.int64 and int(table.min()) >= 1
    assert torch.equal(table.argmax(1), logits.argmax(1))
    assert torch.all(table.amax(1) == (1 << SCALE_BITS) + 1)
    assert torch.equal(frequencies(logits), table)  # a function of the logits alone
    assert torch.equal(frequencies(logits[2:3]), table[2:3])  # whatever the rows beside it


def test_coding_facts_match_the_table():
    logits = torch.randn(70, 50) * 4
    tokens = torch.randint(0, 50, (70,))
    cum, freq, total = coding_facts(logits, tokens)
    table = frequencies(logits)
    for row, token in enumerate(tokens.tolist()):
        assert int(cum[row]) == int(table[row, :token].sum())
        assert int(freq[row]) == int(table[row, token]) and int(total[row]) == int(table[row].sum())


def test_plain_ac_codes_within_a_few_bytes_a_chunk_of_the_models_ideal(tiny):
    data = ("It was the best of times, it was the worst of times. " * 12).encode()
    compressor = Compressor(**dict(AC, backend="ac-plain"), context=64, batch=4)
    archive = compressor.pack(data)
    chunks = compressor.chunks_of(data, tiny)
    ideal = sum(score_chunks(tiny, chunks, 4, engine=engine_for(tiny, "auto")).bits) / 8
    payload = len(archive.frames[0].streams[0])
    assert archive.frames[0].streams[1] == b""
    assert ideal - 1 <= payload <= ideal * 1.005 + 3 * len(chunks)
    assert Decompressor().decompress(container.write(archive)) == data


def test_mixing_codes_what_the_chunk_repeats_in_fewer_bytes(tiny):
    """The tiny model cannot predict a repeated line; the match and n-gram experts can."""
    line = b"zq7 Xylophone-quartz 93 &jw; "
    data = line * 30
    mixed, plain = (len(Compressor(**dict(AC, backend=name), context=400).compress(data)) for name in ("ac", "ac-plain"))
    assert mixed < 0.6 * plain


@pytest.mark.parametrize("backend", ["ac", "ac-1", "ac-plain"])
@pytest.mark.parametrize("batch", [1, 2, 64])
def test_ac_unpacks_in_any_batch(tiny, batch, backend):
    data = "ünïcödé \xff bytes <|im_end|> and text\n".encode("utf-8", "surrogateescape") * 9 + b"\xff\xfe\x80"
    blob = Compressor(**dict(AC, backend=backend), context=20, batch=3).compress(data)
    assert Decompressor(batch=batch).decompress(blob) == data


def test_mixing_survives_tokens_the_model_all_but_excludes():
    """A token of frequency 1 in a table of 2^40 is a 0 share in the mixer's 2^24 units."""
    width = 3000
    logits = torch.zeros(40, width)
    logits[:, 0] = 30.0  # the model is sure of token 0; the chunk repeats others
    chunk = np.array([5, 6, 7, 8] * 9 + [5, 6, 9, 9])  # the experts expect 7, and 9 comes
    encoder = ArithmeticEncoder([40], width, width + 256)
    encoder.observe([0], 0, logits[None], chunk[None], np.array([40]))
    decoder = ArithmeticDecoder(encoder.streams(), [40], width, width + 256)
    assert [int(decoder.next_tokens(np.array([0]), t, logits[t:t + 1])[0]) for t in range(40)] == chunk.tolist()


@pytest.mark.parametrize("mixing, bias", [(True, True), (True, False), (False, False)])
def test_ac_escapes_ids_beyond_the_logits(mixing, bias):
    """Ids past the logits (raw-byte tokens of vocabularies without them) take the escape; the
    coder round-trips them given logits alone, in any grouping of chunks."""
    width, id_space = 40, 40 + 256
    generator = torch.Generator().manual_seed(5)
    chunks = [torch.randint(0, id_space, (length,), generator=generator).numpy() for length in (7, 1, 12)]
    logits = [torch.randn(len(chunk), width, generator=generator) * 3 for chunk in chunks]
    chunks[0][3:7] = chunks[0][:4]  # a repeat, for the mixer's experts to predict
    lengths = [len(chunk) for chunk in chunks]
    encoder = ArithmeticEncoder(lengths, width, id_space, mixing, bias)
    for index, chunk in enumerate(chunks):  # two positions at a time, like a packing segment
        for start in range(0, len(chunk), 2):
            encoder.observe([index], start, logits[index][None, start:start + 2], chunk[None, start:start + 2],
                            np.array([len(chunk)]))
    decoder = ArithmeticDecoder(encoder.streams(), lengths, width, id_space, mixing, bias)
    for position in range(12):  # all chunks side by side, as unpacking steps them
        rows = np.array([i for i, chunk in enumerate(chunks) if position < len(chunk)])
        step = torch.stack([logits[i][position] for i in rows])
        assert decoder.next_tokens(rows, position, step).tolist() == [int(chunks[i][position]) for i in rows]
    decoder.finish()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(0, 10_000), value=st.integers(0, 255))
def test_a_damaged_ac_stream_is_a_clean_error(tiny, position, value):
    data = b"The quick brown fox jumps over the lazy dog. " * 8
    archive = Compressor(**AC, context=40).pack(data)
    frame = archive.frames[0]
    stream = bytearray(frame.streams[0])
    where = position % len(stream)
    if stream[where] == value:
        return
    stream[where] = value
    frame.streams[0] = bytes(stream)
    try:
        restored = Decompressor().decompress(container.write(archive))
    except AlphazipError:
        return
    assert restored == data  # a change the code never looked at (a byte past what it needs)


@pytest.mark.skipif(not native.available(), reason="the compiled kernels were not built")
def test_compiled_frequencies_match_the_torch_path(monkeypatch):
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(70, 1500, generator=generator) * 6
    logits[3] = -1e30  # a flat row
    logits[4, 7] = 90.0  # a certain token
    tokens = torch.randint(0, 1500, (70,), generator=generator)
    tokens[:2] = torch.tensor([0, 1499])
    compiled = FrequencyLookup(logits)
    targets = [int(t) * k // 7 for k, t in zip(range(70), compiled.totals.tolist())]
    targets[5] = int(compiled.totals[5])  # the escape
    rows = list(range(70)) + [5, 0, 69]
    targets += [0, 1, int(compiled.totals[69]) - 1]
    ids = [int(t) for t in tokens] + [0, 1499, 700]
    expected = coding_facts(logits, tokens), compiled.totals, compiled.find(rows, targets), compiled.at(rows, ids)
    monkeypatch.setattr(native, "_LIBRARY", None)
    in_torch = FrequencyLookup(logits)
    assert all(torch.equal(a, b) for a, b in zip(coding_facts(logits, tokens), expected[0]))
    assert torch.equal(in_torch.totals, expected[1]) and in_torch.find(rows, targets) == expected[2]
    assert in_torch.at(rows, ids) == expected[3]
    cums, freqs, _ = coding_facts(logits, tokens)
    assert expected[3][0][:70] == cums.tolist() and expected[3][1][:70] == freqs.tolist()
