"""The exact engine (tiny Llama and tiny Gemma 3): close to transformers, and bits that depend on
nothing but the tokens — not the batch, its order, the call's length or the thread count."""

import shutil

import pytest
import torch
from tiny import tiny_gemma3

from alphazip.model import native
from alphazip.model.exact import ExactEngine, probe_fingerprint

# Longer than Gemma's sliding window (20) and than one key block (64): both kinds of mask are exercised.
LENGTH, CHUNKS = 150, 5


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def hf_model(request, tiny):
    return tiny.hf if request.param == "llama" else tiny_gemma3()[0]


@pytest.fixture(scope="module")
def engine(hf_model):
    return ExactEngine(hf_model)


@pytest.fixture(scope="module")
def tokens(hf_model):
    generator = torch.Generator().manual_seed(2)
    return torch.randint(0, hf_model.config.vocab_size, (CHUNKS, LENGTH), generator=generator)


def full_pass(engine, tokens):
    return engine.forward(tokens, 0, engine.new_cache(*tokens.shape))


def stepped(engine, tokens, segment):
    cache = engine.new_cache(*tokens.shape)
    return torch.cat([engine.forward(tokens[:, t:t + segment], t, cache) for t in range(0, tokens.shape[1], segment)], 1)


def test_close_to_transformers_float32(hf_model, engine, tokens):
    with torch.inference_mode():
        expected = hf_model(input_ids=tokens).logits.float()
    ours = full_pass(engine, tokens)
    # Quantization moves the logits a little, not the predictions.
    assert float((ours - expected).abs().max()) < 0.05 * float(expected.abs().max())
    assert float((ours.argmax(-1) == expected.argmax(-1)).float().mean()) > 0.95


@pytest.mark.parametrize("segment", [1, 7, 64])
def test_stepping_and_segments_give_the_full_pass_bits(engine, tokens, segment):
    assert torch.equal(stepped(engine, tokens, segment), full_pass(engine, tokens))


@pytest.mark.parametrize("threads", [1, 3, 8])
def test_batch_order_and_threads_do_not_change_bits(engine, tokens, threads):
    reference = full_pass(engine, tokens)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert torch.equal(torch.cat([full_pass(engine, tokens[i:i + 2]) for i in range(0, CHUNKS, 2)]), reference)
        order = torch.arange(CHUNKS).flip(0)
        assert torch.equal(full_pass(engine, tokens[order]), reference[order])
        assert torch.equal(stepped(engine, tokens[:1], 1), reference[:1])
    finally:
        torch.set_num_threads(previous)


def test_a_longer_cache_does_not_change_bits(engine, tokens):
    """Unpacking sizes the cache by the longest chunk of its group, packing by its own group's."""
    cache = engine.new_cache(CHUNKS, 4 * LENGTH)
    assert torch.equal(engine.forward(tokens, 0, cache), full_pass(engine, tokens))


def test_the_window_matters():
    """Gemma's sliding window (20 keys) is applied: without it the logits past position 20 differ."""
    gemma = tiny_gemma3()[0]
    tokens = torch.arange(60)[None, :] % gemma.config.vocab_size
    engine = ExactEngine(gemma)
    windowed = full_pass(engine, tokens)
    engine.config = engine.config.__class__(**{**engine.config.__dict__, "windows": (None,) * 3})
    unwindowed = full_pass(engine, tokens)
    assert torch.equal(windowed[:, :20], unwindowed[:, :20])
    assert not torch.allclose(windowed[:, 21:], unwindowed[:, 21:], atol=1e-3)


def test_final_logit_softcapping_follows_transformers():
    capped = tiny_gemma3(final_logit_softcapping=0.05)[0]
    tokens = torch.arange(40)[None, :] % capped.config.vocab_size
    engine = ExactEngine(capped)
    ours = full_pass(engine, tokens)
    engine.config = engine.config.__class__(**{**engine.config.__dict__, "softcap": None})
    uncapped = full_pass(engine, tokens)
    assert float(uncapped.abs().max()) > 0.1  # the cap really bites on this model
    assert float(ours.abs().max()) <= 0.05 * (1 + 1e-6)
    torch.testing.assert_close(ours, torch.tanh(uncapped / 0.05) * 0.05, rtol=0.0, atol=1e-6)


def test_probe_depends_on_the_start_token_and_the_weights(hf_model, engine):
    base = probe_fingerprint(engine, hf_model.config.vocab_size, 1)
    assert base == probe_fingerprint(ExactEngine(hf_model), hf_model.config.vocab_size, 1)
    assert base != probe_fingerprint(engine, hf_model.config.vocab_size, 2)
    altered = ExactEngine(hf_model)
    altered.final_norm = altered.final_norm * 1.001
    assert base != probe_fingerprint(altered, hf_model.config.vocab_size, 1)


def test_the_kernel_is_built_where_a_compiler_is():
    """pip install builds it when it can (a failed build is skipped quietly): catch that here."""
    if shutil.which("cc") or shutil.which("gcc"):
        assert native.available()


@pytest.mark.skipif(not native.available(), reason="the compiled attention kernel was not built")
@pytest.mark.parametrize("segment", [1, 64])
def test_compiled_kernel_gives_the_torch_path_bits(engine, tokens, monkeypatch, segment):
    with_kernel = stepped(engine, tokens, segment)
    monkeypatch.setattr(native, "_LIBRARY", None)
    assert torch.equal(stepped(engine, tokens, segment), with_kernel)
