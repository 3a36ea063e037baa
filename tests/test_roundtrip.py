"""Round trips of arbitrary bytes through the whole pipeline, on the tiny model."""

import numpy as np
import pytest
from conftest import TINY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphazip import Compressor, Decompressor, container, describe
from alphazip.layout import chunk_length
from alphazip.lookup import MODELS
from alphazip.policy import looks_binary
from alphazip.coding import coder_names

SAMPLES = [
    b"",
    b"a",
    b"The quick brown fox jumps over the lazy dog.\r\n" * 20,
    "naïve café — ünïcödé 😀 <s></s> <|im_end|>".encode() * 3,
    b"\xff\xfe\x00\x80 invalid \xc0\xaf utf-8 \xed\xa0\x80 surrogate",
    b"x" * 5000,  # one very long line
    bytes(range(256)),
]
FAST = {"model": TINY, "context": 24, "batch": 3}


@pytest.mark.parametrize("backend", coder_names())
@pytest.mark.parametrize("data", SAMPLES, ids=range(len(SAMPLES)))
def test_samples_round_trip_in_model_mode(tiny, backend, data):
    blob = Compressor(backend=backend, mode="model", **FAST).compress(data)
    assert Decompressor().decompress(blob) == data
    assert describe(blob)["mode"] == "model"


@pytest.mark.parametrize("backend", coder_names())
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400) | st.text(max_size=200).map(str.encode))
def test_arbitrary_bytes_round_trip(tiny, backend, data):
    for mode in ("model", "auto"):
        blob = Compressor(backend=backend, mode=mode, **FAST).compress(data)
        assert Decompressor().decompress(blob) == data


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=1, max_size=300), context=st.integers(1, 40), batch=st.integers(1, 5),
       top_k=st.sampled_from([1, 2, 16, 255, 1000]))
def test_any_schedule_and_top_k_round_trip(tiny, data, context, batch, top_k):
    compressor = Compressor(backend="zstd", mode="model", model=TINY, context=context, batch=batch, top_k=top_k)
    assert Decompressor().decompress(compressor.compress(data)) == data


def test_auto_mode_never_much_worse_than_the_backend_on_raw_bytes(tiny):
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    blob = Compressor(backend="brotli", **FAST).compress(noise)
    import brotli
    assert describe(blob)["mode"] == "raw"
    assert len(blob) <= len(brotli.compress(noise, quality=11)) + 100
    assert Decompressor().decompress(blob) == noise


def test_auto_mode_keeps_the_model_when_it_wins(tiny):
    # The tiny model is random, so it rarely wins; force the comparison both ways via mode.
    data = b"The quick brown fox jumps over the lazy dog. " * 30
    model_blob = Compressor(backend="gzip", mode="model", **FAST).compress(data)
    raw_blob = Compressor(backend="gzip", mode="raw", **FAST).compress(data)
    auto_blob = Compressor(backend="gzip", mode="auto", **FAST).compress(data)
    assert len(auto_blob) == min(len(model_blob), len(raw_blob))


def test_auto_mode_chooses_the_model_where_it_packs_smaller():
    # Words drawn at random (each one token of the tiny vocabulary): an order-0 model of them
    # codes each in 2.5 bits on average, brotli on the text cannot.
    from tiny import unigram_model

    words = [b" jumps", b" quick", b" brown", b" over", b" lazy", b" the", b" dog", b" fox"]
    rng = np.random.default_rng(5)
    data = b"".join(words[i] for i in rng.choice(8, 3000, p=[0.4, 0.2, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05]))
    model = unigram_model(data)
    MODELS.add(model)
    packed = Compressor(backend="brotli", mode="auto", model=model.name, context=256).pack(data)
    raw = Compressor(backend="brotli", mode="raw").compress(data)
    assert packed.mode == "model"
    assert len(container.write(packed)) < 0.85 * len(raw)
    assert Decompressor().decompress(container.write(packed)) == data


def test_binary_detection():
    assert looks_binary(bytes(range(256)) * 4)
    assert not looks_binary("plain text\r\n\tindented\n".encode() * 10)
    assert not looks_binary(b"")


def test_compressor_is_reusable(tiny):
    compressor = Compressor(backend="huffman", mode="model", **FAST)
    decompressor = Decompressor()
    for data in (b"one", b"two two", b""):
        assert decompressor.decompress(compressor.compress(data)) == data


def test_default_chunking_cuts_small_inputs_into_eight_chunks():
    assert chunk_length(None, 520) == 128  # at least MIN_CONTEXT tokens a chunk
    assert chunk_length(None, 4500) == 563  # eight chunks
    assert chunk_length(None, 57_051) == 1024  # large inputs: DEFAULT_CONTEXT
    assert chunk_length(300, 10) == 300  # an explicit --context is kept


def test_small_input_packed_with_default_context_round_trips(tiny):
    data = SAMPLES[2] * 6  # about 5,500 bytes, 1,024 to 8,192 tiny-model tokens
    blob = Compressor(model=TINY, mode="model").compress(data)
    facts = describe(blob)
    assert facts["chunks"] == 8 and facts["context"] == chunk_length(None, facts["tokens"]) < 1024
    assert Decompressor().decompress(blob) == data
