"""Learning as it codes (``alphazip.model.learning``): it learns, what it learns depends on the
positions alone (not how they were batched), and its compiled kernels give the torch path's bits."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, kernel_build
from tiny import tiny_gemma3

from alphazip.api import Compressor, Decompressor, Settings
from alphazip.coding.frequencies import CONSTANTS, frequencies
from alphazip.errors import MemoryLimitError
from alphazip.model import learning, native
from alphazip.model.engine import EngineStepper
from alphazip.model.exact import EXACT_ENGINE_NAME, ExactEngine
from alphazip.model.learning import LEARNING_ENGINE_NAME, LEARNING_ENGINES, Learner

TEXT = (Path(__file__).parent.parent / "data" / "alice-excerpt.txt").read_bytes()


def _tokens(tiny, batch: int, length: int) -> np.ndarray:
    ids = tiny.tokenizer.encode(TEXT)[:batch * length]
    return np.asarray(ids, dtype=np.int64).reshape(batch, length)


def _show(tiny, learner: Learner, tokens: np.ndarray, pieces: list[tuple[slice, slice]]) -> None:
    """Advance ``tokens`` [B, T] piece by piece ((rows, positions) each, positions in order per
    row) on steppers over the learner's engine, showing the learner every position."""
    inputs = np.concatenate([np.full((len(tokens), 1), tiny.bos_id), tokens[:, :-1]], axis=1)
    steppers = {}
    for rows, positions in pieces:
        key = (rows.start, rows.stop)
        steppers.setdefault(key, EngineStepper(learner.engine, tiny.tokenizer.model_inputs, rows.stop - rows.start,
                                               tokens.shape[1]))
        trace = []
        logits = steppers[key].advance(inputs[rows, positions], trace)
        targets = torch.from_numpy(tokens[rows, positions])
        learner.observe(trace, logits, targets, torch.ones(targets.shape, dtype=torch.bool))


def _at(rate: float, engine: str = LEARNING_ENGINE_NAME) -> learning.Learning:
    """What ``engine`` learns, at a step size that shows on the tiny model within a few steps."""
    return replace(LEARNING_ENGINES[engine], rate=rate, decay=0.0)


def _weights(learner: Learner) -> list[torch.Tensor]:
    blocks = [getattr(layer, name) for layer in learner.engine.layers for name in ("qkv", "o", "gate_up", "down")]
    return [linear.weight_t for linear in blocks + [learner.engine.head]]


def _bits(tiny, engine, tokens: np.ndarray) -> float:
    inputs = np.concatenate([np.full((len(tokens), 1), tiny.bos_id), tokens[:, :-1]], axis=1)
    logits = EngineStepper(engine, tiny.tokenizer.model_inputs, len(tokens), tokens.shape[1]).advance(inputs)
    picked = torch.log_softmax(logits, -1).gather(-1, torch.from_numpy(tokens)[..., None])
    return float(-picked.sum()) / np.log(2)


def test_learning_lowers_the_loss_on_what_it_read_and_leaves_the_engine_as_it_was(tiny):
    engine = tiny._engine(EXACT_ENGINE_NAME)
    tokens = _tokens(tiny, 2, 64)
    before = [linear.weight_t.clone() for layer in engine.layers
              for linear in (layer.qkv, layer.o, layer.gate_up, layer.down)]
    learner = Learner(engine, tiny.hf, _at(1e-2))
    start = _bits(tiny, learner.engine, tokens)
    for _ in range(8):
        _show(tiny, learner, tokens, [(slice(0, 2), slice(0, 64))])
        learner.learn()
    assert _bits(tiny, learner.engine, tokens) < 0.95 * start
    after = [linear.weight_t for layer in engine.layers for linear in (layer.qkv, layer.o, layer.gate_up, layer.down)]
    assert all(torch.equal(a, b) for a, b in zip(before, after))


def test_what_it_learns_depends_on_the_positions_not_their_batching(tiny):
    """Whole segments of all rows (packing) and one position of each row at a time in two parts
    (unpacking) learn the same weights, bit for bit."""
    engine = tiny._engine(EXACT_ENGINE_NAME)
    tokens = _tokens(tiny, 3, 24)
    whole, stepped = Learner(engine, tiny.hf, _at(3e-3)), Learner(engine, tiny.hf, _at(3e-3))
    for start in (0, 12):
        _show(tiny, whole, tokens, [(slice(0, 3), slice(start, start + 12))])
        _show(tiny, stepped, tokens, [(rows, slice(t, t + 1)) for t in range(start, start + 12)
                                      for rows in (slice(2, 3), slice(0, 2))])
        whole.learn()
        stepped.learn()
    assert all(torch.equal(a, b) for a, b in zip(_weights(whole), _weights(stepped)))
    assert not all(torch.equal(a, b) for a, b in zip(_weights(whole), _weights(Learner(engine, tiny.hf))))


@pytest.mark.skipif(not native.available(), reason="the compiled kernels were not built")
@pytest.mark.parametrize("level", [0, 1, 3])
def test_the_kernels_give_the_torch_paths_bits(level):
    generator = torch.Generator().manual_seed(level)
    master = torch.randn(37, 53, generator=generator) * 0.05
    gradient = (torch.randint(-2**20, 2**20, (37, 53), dtype=torch.int32, generator=generator),
                torch.rand(37, generator=generator) * 1e-3, torch.rand(53, generator=generator) * 1e-2)
    compiled, torch_path = learning._Adam(master.clone()), learning._Adam(master.clone())
    for _ in range(3):  # the moments carry over
        with kernel_build(level):
            expected = compiled.step(gradient, 1 / 37, 1e-3)
        torch_path_layer = _torch_only(lambda: torch_path.step(gradient, 1 / 37, 1e-3))
        assert torch.equal(expected.weight_t, torch_path_layer.weight_t)
        assert torch.equal(expected.scale, torch_path_layer.scale)
        assert torch.equal(compiled.master, torch_path.master) and torch.equal(compiled.second, torch_path.second)
    gate_up, gradient_at_gate = torch.randn(9, 2 * 40, generator=generator) * 6, torch.randn(9, 40, generator=generator)
    constants = torch.tensor([learning.xm.LOG2E, 0.0, 0.0, *learning.xm.exp2_coefficients(torch.float32)])
    with kernel_build(level):
        kernel_gate = learning._gate_backward(gate_up, gradient_at_gate, constants)
        kernel_columns = learning._quantize_channels(gate_up)
    assert torch.equal(kernel_gate, _torch_only(lambda: learning._gate_backward(gate_up, gradient_at_gate, constants)))
    torch_columns = _torch_only(lambda: learning._quantize_channels(gate_up))
    assert all(torch.equal(a, b) for a, b in zip(kernel_columns, torch_columns))
    logits = torch.randn(5, 1000, generator=generator) * 4
    targets = torch.randint(0, 1000, (5,), generator=generator)
    scale = torch.rand(1000, generator=generator)
    with kernel_build(level):
        kernel = native.loss_gradient(logits, targets, scale, CONSTANTS)
    counts = frequencies(logits)
    reference = counts.double().div_(counts.sum(1, keepdim=True).double()).float()
    reference[torch.arange(5), targets] -= 1.0
    assert torch.equal(kernel, reference.mul_(scale))


@pytest.mark.skipif(not native.available(), reason="the compiled kernels were not built")
@pytest.mark.parametrize("level", [0, 1, 3])
def test_the_attention_backward_softmax_kernel_gives_the_torch_paths_bits(tiny, level):
    from alphazip.model import attention_backward
    constants = tiny._engine(EXACT_ENGINE_NAME)._constants
    generator = torch.Generator().manual_seed(level)
    scores = torch.randn(3, 2 * 5, 1100, generator=generator) * 30  # 3 heads, a group of 2, 5 positions
    scores[0, 0, 3] = 0.0
    positions = torch.tensor([0, 17, 640, 1098, 1099])
    with kernel_build(level):
        kernel = attention_backward._softmax(scores.clone(), positions, 2, constants)
    torch_path = _torch_only(lambda: attention_backward._softmax(scores.clone(), positions, 2, constants))
    assert torch.equal(kernel, torch_path)
    assert kernel[:, 0, 1:].eq(0).all() and kernel[:, 0, 0].eq(1).all()  # the first position sees itself alone


def _torch_only(call):
    library = native._LIBRARY
    native._LIBRARY = None
    try:
        return call()
    finally:
        native._LIBRARY = library


def test_the_newest_engine_learns_the_output_embedding_untied_and_the_first_does_not(tiny):
    engine = tiny._engine(EXACT_ENGINE_NAME)
    tokens = _tokens(tiny, 2, 32)
    embedding, head = engine.embed.clone(), engine.head.weight_t.clone()
    with_head = Learner(engine, tiny.hf, _at(1e-2))
    without = Learner(engine, tiny.hf, _at(1e-2, "alphazip-exact-learn-1"))
    for learner in (with_head, without):
        _show(tiny, learner, tokens, [(slice(0, 2), slice(0, 32))])
        learner.learn()
    assert not torch.equal(with_head.engine.head.weight_t, head)
    assert without.engine.head is engine.head and torch.equal(engine.head.weight_t, head)
    assert torch.equal(with_head.engine.embed, embedding)  # the input side stays as it was


def test_the_newest_engines_learn_attention_and_the_ones_before_do_not(tiny):
    engine = tiny._engine(EXACT_ENGINE_NAME)
    tokens = _tokens(tiny, 2, 32)
    learners = {name: Learner(engine, tiny.hf, _at(1e-2, name)) for name in LEARNING_ENGINES}
    for learner in learners.values():
        _show(tiny, learner, tokens, [(slice(0, 2), slice(0, 32))])
        learner.learn()
    for name, learner in learners.items():
        changed = [not torch.equal(mine.qkv.weight_t, original.qkv.weight_t)
                   for mine, original in zip(learner.engine.layers, engine.layers)]
        assert all(changed) if LEARNING_ENGINES[name].attention else not any(changed)
    assert LEARNING_ENGINES[LEARNING_ENGINE_NAME].attention
    # the gradient through attention reaches the lower block's MLP too: it learns otherwise
    newest, before = learners["alphazip-exact-learn-3"], learners["alphazip-exact-learn-2"]
    assert not torch.equal(newest.engine.layers[0].down.weight_t, before.engine.layers[0].down.weight_t)


def test_ac_leaves_its_bias_out_where_the_model_learns_its_head(tiny):
    from alphazip.api import _coder_for
    from alphazip.coding import get_coder
    ac = get_coder("ac")
    assert _coder_for(ac, tiny, LEARNING_ENGINE_NAME).bias is False
    assert _coder_for(ac, tiny, "alphazip-exact-learn-1").bias and _coder_for(ac, tiny, EXACT_ENGINE_NAME).bias
    assert ac.bias  # the registered coder itself is unchanged


@pytest.mark.parametrize("engine", list(LEARNING_ENGINES))
@pytest.mark.parametrize("batch", [1, 3])
def test_archives_of_a_learning_model_round_trip(batch, engine):
    data = TEXT[:3000]
    settings = Settings(model=TINY, mode="model", backend="ac", engine=engine, context=300)
    blob = Compressor(settings).compress(data)
    assert Decompressor(batch=batch).decompress(blob) == data


def test_the_newest_engine_takes_smaller_steps_as_it_goes(tiny):
    newest = LEARNING_ENGINES[LEARNING_ENGINE_NAME]
    assert newest.decay > 0 and newest.step_size(0) == newest.rate
    assert newest.step_size(int(1 / newest.decay)) == newest.rate / 2  # exact: rate / 2.0
    assert all(later < earlier for earlier, later in zip(map(newest.step_size, range(50)), map(newest.step_size, range(1, 51))))
    engine = tiny._engine(EXACT_ENGINE_NAME)
    tokens = _tokens(tiny, 2, 32)
    steady, shrinking = (Learner(engine, tiny.hf, replace(newest, rate=1e-2, decay=decay)) for decay in (0.0, 0.5))
    for step in range(2):
        for learner in (steady, shrinking):
            _show(tiny, learner, tokens, [(slice(0, 2), slice(0, 32))])
            learner.learn()
        same = all(torch.equal(a, b) for a, b in zip(_weights(steady), _weights(shrinking)))
        assert same == (step == 0)  # the first step is the same size, the second is not


def test_learning_is_refused_for_models_it_does_not_cover():
    gemma, _ = tiny_gemma3()
    with pytest.raises(ValueError, match="Llama"):
        Learner(ExactEngine(gemma), gemma)


def test_a_learning_archive_that_would_not_fit_the_memory_limit_is_refused():
    """Its group's chunks are stepped together whatever the batch, like a sharing coder's."""
    data = TEXT[:3000]
    blob = Compressor(Settings(model=TINY, mode="model", backend="brotli", engine="alphazip-exact-learn-3",
                               context=100)).compress(data)
    with pytest.raises(MemoryLimitError, match="stepped together"):
        Decompressor(batch=1, memory_limit=2_000_000).decompress(blob)
    assert Decompressor(batch=1).decompress(blob) == data


def test_attention_backward_follows_the_float_gradient(tiny):
    """The exact attention backward against autograd on the same queries, keys and values in
    float64: the gradients at the queries and at the step's keys and values (the past's are data)."""
    from alphazip.model import exactmath as xm
    from alphazip.model.attention_backward import attention_backward
    from alphazip.model.engine import _rotate
    from alphazip.model.exact import _store
    engine = tiny._engine(EXACT_ENGINE_NAME)
    c = engine.config
    generator = torch.Generator().manual_seed(5)
    length, count, group = 40, 9, c.heads // c.kv_heads
    q, k, v = (torch.randn(1, heads, length, c.head_dim, generator=generator, dtype=torch.float64)
               for heads in (c.heads, c.kv_heads, c.kv_heads))
    upstream = torch.randn(count, c.heads, c.head_dim, generator=generator, dtype=torch.float64)
    positions = torch.arange(length - count, length)
    cos, sin = engine._rope_rows(0, 0, length)
    cache = engine.new_cache(1, length)
    _store(cache, 0, 0, _rotate(k.float(), cos, sin), v.float())
    q_rotated = _rotate(q.float(), cos, sin)[0, :, positions]  # [H, n, D]
    integers, step = xm.quantize_rows(q_rotated, 127)
    got = attention_backward(engine, cache, 0, 0, positions, integers.transpose(0, 1).to(torch.int8),
                             (step[..., 0] * engine._score_factor).t(),
                             _float_attention(q, k, v, cos, sin, positions, group, c.score_scale).float(),
                             upstream.reshape(count, -1).float())

    q_leaf, k_leaf, v_leaf = (x.clone().requires_grad_(True) for x in (q, k, v))
    out = _float_attention(q_leaf, k_leaf, v_leaf, cos.double(), sin.double(), positions, group, c.score_scale)
    (out * upstream.reshape(count, -1)).sum().backward()
    expected = torch.cat([q_leaf.grad[0, :, positions].transpose(0, 1).reshape(count, -1),
                          k_leaf.grad[0, :, positions].transpose(0, 1).reshape(count, -1),
                          v_leaf.grad[0, :, positions].transpose(0, 1).reshape(count, -1)], dim=1)
    widths = [c.heads * c.head_dim, c.kv_heads * c.head_dim, c.kv_heads * c.head_dim]
    for mine, reference in zip(got.double().split(widths, 1), expected.split(widths, 1)):
        assert torch.nn.functional.cosine_similarity(mine.flatten(), reference.flatten(), dim=0) > 0.999
        assert (mine - reference).norm() < 0.03 * reference.norm()


def _float_attention(q, k, v, cos, sin, positions, group, scale):
    """Causal attention of the queries at ``positions`` over keys 0..; the past's keys and
    values (before ``positions``) detached, as the learning step treats them. [n, H D]."""
    first = int(positions[0])
    k = torch.cat([k[:, :, :first].detach(), k[:, :, first:]], dim=2)
    v = torch.cat([v[:, :, :first].detach(), v[:, :, first:]], dim=2)
    q, k = _rotate_any(q, cos, sin)[:, :, positions], _rotate_any(k, cos, sin)
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    scores = q @ k.transpose(-1, -2) * scale
    scores = scores.masked_fill(torch.arange(k.shape[2])[None, :] > positions[:, None], -torch.inf)
    out = torch.softmax(scores, -1) @ v  # [1, H, n, D]
    return out[0].transpose(0, 1).reshape(len(positions), -1)


def _rotate_any(x, cos, sin):
    half = x.shape[-1] // 2
    return x * cos.to(x.dtype) + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin.to(x.dtype)
