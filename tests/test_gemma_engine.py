"""Gemma 3 (tiny model): the float engine alphazip-gemma3-1 (kept to decode its old archives) computes
transformers' logits; new archives use the exact engine and unpack under any batch."""

import pytest
import torch
from tiny import tiny_gemma3

from alphazip import Compressor, Decompressor, container, schedule
from alphazip.model.exact import EXACT_ENGINE_NAME
from alphazip.model.gemma import Gemma3Engine
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
    assert header.engine == EXACT_ENGINE_NAME and len(header.probe) == 16  # format 3 keeps 64 bits
    monkeypatch.setattr(schedule, "DECODE_BATCH", unpack_batch)
    assert Decompressor().decompress(blob) == TEXT


def test_transformers_path_archives_still_decode(gemma_folder):
    """Old Gemma archives (transformers lockstep) still decode on the machine that packed them."""
    theirs = Compressor(model=gemma_folder, context=40, batch=3, mode="model", engine=TRANSFORMERS_ENGINE).compress(TEXT)
    assert container.read(theirs).header.engine == TRANSFORMERS_ENGINE
    assert Decompressor().decompress(theirs) == TEXT
