"""The exact engine (tiny Llama and tiny Gemma 3): close to transformers, and bits that depend on
nothing but the tokens — not the batch, its order, the call's length or the thread count."""

import shutil

import pytest
import torch
from conftest import kernel_build
from tiny import tiny_gemma3

from alphazip.model import exactmath as xm
from alphazip.model import native
from alphazip.model.engine import _key_blocks
from alphazip.model.exact import SOFTMAX_UNIT, VALUE_WEIGHT_LEVELS, ExactCache, ExactEngine, probe_fingerprint

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
@pytest.mark.parametrize("level", [0, 1, 2, 3])
@pytest.mark.parametrize("segment", [1, 64])
def test_compiled_kernel_gives_the_torch_path_bits(engine, tokens, monkeypatch, segment, level):
    """Every kernel of a forward pass (norms, RoPE and quantization, attention, products, gates) in
    its SSE2, AVX2, AVX-512 and AVX-512 VNNI builds against the torch path."""
    with kernel_build(level):
        with_kernel = stepped(engine, tokens, segment)
    monkeypatch.setattr(native, "_LIBRARY", None)
    assert torch.equal(stepped(engine, tokens, segment), with_kernel)


def torch_attention(q, row_scale, start, window, cache):
    """exact.py's torch path for ``native.attend``'s arguments (one layer's cache)."""
    bare = ExactEngine.__new__(ExactEngine)
    count = q.shape[3]
    return torch.cat([bare._attend_block(q[:, :, :, first - start:stop - start], row_scale[:, :, :, first - start:stop - start],
                                         cache, 0, low, span, mask)
                      for first, stop, low, span, mask in _key_blocks(start, count, window)], dim=3)


@pytest.mark.skipif(not native.available(), reason="the compiled attention kernel was not built")
@pytest.mark.parametrize("level", [0, 1, 2, 3])
@pytest.mark.parametrize(("group", "dim", "length", "start", "count", "window"), [
    (3, 64, 128, 0, 64, None),  # packing: whole tiles of positions
    (3, 64, 1088, 1000, 1, None),  # a step far into the cache
    (4, 8, 192, 70, 1, None),  # a head narrower than the AVX-512 lanes
    (2, 8, 128, 3, 61, 20),  # a sliding window starting at odd keys, a partial tile of positions
    (5, 256, 256, 129, 7, 100),
    (1, 6, 64, 0, 64, None),  # a head dimension no variant's lanes divide
])
def test_attention_kernel_gives_the_torch_bits_in_every_variant(level, group, dim, length, start, count, window):
    """The SSE2, AVX2, AVX-512 and AVX-512 VNNI tiles of keys and values against the torch path, random and
    extreme integers."""
    generator = torch.Generator().manual_seed(level * 100 + dim)
    batch, kv_heads = 2, 2
    cache = ExactCache([torch.randint(-127, 128, (batch, kv_heads, dim // 2, length, 2), dtype=torch.int8, generator=generator)],
                       [torch.rand(batch, kv_heads, length, generator=generator) * 0.05],
                       [torch.randint(-127, 128, (batch, kv_heads, length // 2, dim, 2), dtype=torch.int8, generator=generator)],
                       [torch.rand(batch, kv_heads, length, generator=generator)])
    q = torch.randint(-127, 128, (batch, kv_heads, group, count, dim), dtype=torch.int8, generator=generator)
    q[0] = -127  # the largest products against extreme keys
    cache.keys[0][0] = -127
    row_scale = torch.rand(batch, kv_heads, group, count, generator=generator) * 0.05
    terms = torch.tensor([SOFTMAX_UNIT, VALUE_WEIGHT_LEVELS, *xm.exp2_coefficients(torch.float32)], dtype=torch.float32)
    with kernel_build(level):
        compiled = native.attend(q, row_scale, start, window, cache.keys[0], cache.key_steps[0], cache.values[0],
                                 cache.value_steps[0], terms)
    assert torch.equal(compiled, torch_attention(q, row_scale, start, window, cache))


@pytest.mark.skipif(not native.available() or native.packed_product() is None, reason="no AMX or VNNI here")
@pytest.mark.parametrize("segment", [1, 7, 150])
def test_a_layer_in_one_call_gives_the_bits_of_its_calls(tiny, tokens, monkeypatch, segment):
    """Llama's layers as one compiled call each (AMX or VNNI machines) against the same kernels called
    one by one. Forward takes it for steps only; here every segment does, so calls of many positions
    are held too."""
    monkeypatch.delenv("ALPHAZIP_INT_MM", raising=False)
    engine = ExactEngine(tiny.hf)
    assert engine._layers_in_one_call(1) and not engine._layers_in_one_call(2)
    chosen = ExactEngine._layers_in_one_call
    monkeypatch.setattr(ExactEngine, "_layers_in_one_call", lambda self, count: chosen(self, 1))
    in_one_call = stepped(engine, tokens, segment)
    monkeypatch.setattr(ExactEngine, "_layers_in_one_call", lambda self, count: False)
    assert torch.equal(stepped(engine, tokens, segment), in_one_call)
