"""The invariant engine on Gemma 3 (tiny model): transformers' logits, and bits independent of batching."""

import pytest
import torch
from tiny import tiny_gemma3

from alphazip import Compressor, Decompressor, api, container
from alphazip.model.gemma import GEMMA3_ENGINE_NAME, Gemma3Engine
from alphazip.model.lm import TRANSFORMERS_ENGINE

# Longer than the sliding window (20) and than one key block (64): both kinds of mask are exercised.
LENGTH, CHUNKS = 150, 5
TEXT = ("It was the best of times, it was the worst of times, it was the age of wisdom, " * 12).encode()


@pytest.fixture(scope="module")
def gemma():
    return tiny_gemma3()[0]


@pytest.fixture(scope="module")
def tokens(gemma):
    generator = torch.Generator().manual_seed(2)
    return torch.randint(0, gemma.config.vocab_size, (CHUNKS, LENGTH), generator=generator)


@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def engine(request, gemma):
    return Gemma3Engine(gemma, getattr(torch, request.param))


def full_pass(engine, tokens):
    return engine.forward(tokens, 0, engine.new_cache(*tokens.shape))


def test_float32_matches_transformers(gemma, tokens):
    with torch.inference_mode():
        expected = gemma(input_ids=tokens).logits.float()
    torch.testing.assert_close(full_pass(Gemma3Engine(gemma, torch.float32), tokens), expected, rtol=1e-5, atol=1e-5)


def test_final_logit_softcapping_matches_transformers(tokens):
    """Gemma 3 has none, Gemma-style configs may: the engine caps as transformers does."""
    capped = tiny_gemma3(final_logit_softcapping=0.05)[0]
    with torch.inference_mode():
        expected = capped(input_ids=tokens).logits.float()
    assert float(expected.abs().max()) <= 0.0501  # the cap really bites on this model
    torch.testing.assert_close(full_pass(Gemma3Engine(capped, torch.float32), tokens), expected, rtol=1e-5, atol=1e-6)


def test_the_window_matters(gemma, tokens):
    """Guards the test above: without the window the logits past position 20 differ."""
    engine = Gemma3Engine(gemma, torch.float32)
    windowed = full_pass(engine, tokens)
    engine.window = LENGTH
    unwindowed = full_pass(engine, tokens)
    assert torch.equal(windowed[:, :20], unwindowed[:, :20])
    assert not torch.allclose(windowed[:, 21:], unwindowed[:, 21:], atol=1e-3)


@pytest.mark.parametrize("segment", [1, 7, 64])
def test_stepping_and_segments_give_the_full_pass_bits(engine, tokens, segment):
    cache = engine.new_cache(*tokens.shape)
    stepped = torch.cat([engine.forward(tokens[:, t:t + segment], t, cache) for t in range(0, LENGTH, segment)], 1)
    assert torch.equal(stepped, full_pass(engine, tokens))


@pytest.mark.parametrize("threads", [1, 8])
def test_batch_order_and_threads_do_not_change_bits(engine, tokens, threads):
    reference = full_pass(engine, tokens)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert torch.equal(torch.cat([full_pass(engine, tokens[i:i + 2]) for i in range(0, CHUNKS, 2)]), reference)
        order = torch.arange(CHUNKS).flip(0)
        assert torch.equal(full_pass(engine, tokens[order]), reference[order])
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def gemma_folder(tmp_path_factory):
    model, tokenizer = tiny_gemma3()
    folder = tmp_path_factory.mktemp("tiny-gemma3")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("unpack_batch", [1, 7, 64])
def test_archives_name_the_engine_and_unpack_under_any_batch(gemma_folder, monkeypatch, unpack_batch):
    blob = Compressor(model=gemma_folder, context=40, batch=3, mode="model").compress(TEXT)
    header = container.read(blob).header
    assert header.engine == GEMMA3_ENGINE_NAME and len(header.probe) == 64
    monkeypatch.setattr(api, "DECODE_BATCH", unpack_batch)
    assert Decompressor().decompress(blob) == TEXT


def test_same_payload_as_the_transformers_path_would_decode(gemma_folder):
    """Old Gemma archives (transformers lockstep) still decode; the engine's payload is theirs
    (the headers differ: engine name and probe fingerprint)."""
    ours = Compressor(model=gemma_folder, context=40, batch=3, mode="model").compress(TEXT)
    theirs = Compressor(model=gemma_folder, context=40, batch=3, mode="model", engine=TRANSFORMERS_ENGINE).compress(TEXT)
    assert container.read(theirs).header.engine == TRANSFORMERS_ENGINE
    assert Decompressor().decompress(theirs) == TEXT
    assert container.read(ours).frames == container.read(theirs).frames
