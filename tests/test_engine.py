"""The float engine alphazip-llama-2, kept to decode its old archives: it still computes transformers'
logits. Its batch invariance held only for the kernels of the CPUs it was built on (on an AVX-512/AMX
Xeon its full pass and stepping differ), which is why new archives use the exact engine."""

import pytest
import torch

from alphazip.model.engine import LlamaEngine

LENGTH, CHUNKS = 40, 7


@pytest.fixture(scope="module")
def tokens(tiny):
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, tiny.tokenizer.vocab_size, (CHUNKS, LENGTH), generator=generator)


def full_pass(engine, tokens):
    return engine.forward(tokens, 0, engine.new_cache(*tokens.shape))



def test_float32_matches_transformers(tiny, tokens):
    engine = LlamaEngine(tiny.hf, torch.float32)
    with torch.inference_mode():
        expected = tiny.hf(input_ids=tokens).logits.float()
    torch.testing.assert_close(full_pass(engine, tokens), expected, rtol=1e-5, atol=1e-5)
