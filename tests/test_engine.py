"""The engine's logits are a pure function of each chunk's tokens (tiny model)."""

import pytest
import torch

from alphazip.model.engine import LlamaEngine

LENGTH, CHUNKS = 40, 7


@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def engine(request, tiny):
    return LlamaEngine(tiny.hf, getattr(torch, request.param))


@pytest.fixture(scope="module")
def tokens(tiny):
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, tiny.tokenizer.vocab_size, (CHUNKS, LENGTH), generator=generator)


def full_pass(engine, tokens):
    return engine.forward(tokens, 0, engine.new_cache(*tokens.shape))


def stepped(engine, tokens, segment=1):
    cache = engine.new_cache(*tokens.shape)
    return torch.cat([engine.forward(tokens[:, t:t + segment], t, cache) for t in range(0, tokens.shape[1], segment)], 1)


def test_float32_matches_transformers(tiny, tokens):
    engine = LlamaEngine(tiny.hf, torch.float32)
    with torch.inference_mode():
        expected = tiny.hf(input_ids=tokens).logits.float()
    torch.testing.assert_close(full_pass(engine, tokens), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("segment", [1, 3, 8])
def test_stepping_and_segments_give_the_full_pass_bits(engine, tokens, segment):
    assert torch.equal(stepped(engine, tokens, segment), full_pass(engine, tokens))


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_batch_size_and_order_do_not_change_bits(engine, tokens, batch):
    reference = full_pass(engine, tokens)
    parts = torch.cat([full_pass(engine, tokens[i:i + batch]) for i in range(0, CHUNKS, batch)])
    assert torch.equal(parts, reference)
    order = torch.arange(CHUNKS).flip(0)
    assert torch.equal(full_pass(engine, tokens[order]), reference[order])


@pytest.mark.parametrize("threads", [1, 2, 8])
def test_thread_count_does_not_change_bits(engine, tokens, threads):
    reference = full_pass(engine, tokens)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert torch.equal(full_pass(engine, tokens), reference)
        assert torch.equal(stepped(engine, tokens[:3]), reference[:3])
    finally:
        torch.set_num_threads(previous)
