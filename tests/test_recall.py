"""Recall: keys are exact integers on any machine, the memory's predictions are those of its plain
definition, a chunk recalls only states before its position, and the engine gives the same
states stepping as packing."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from alphazip import recall
from alphazip.mixing import RECALL_EXPERT, PRIOR_RECALL
from alphazip.sharing import Recorded, SharedHistory


def reference_keys(states: np.ndarray) -> np.ndarray:
    """keys_of's keys by int64 arithmetic (the quantization's roundings as numpy does them)."""
    def int8(values):
        largest = np.abs(values).max(axis=1, keepdims=True)
        return np.rint(values * (127.0 / np.where(largest > 0, largest, 1.0))).astype(np.int64)
    quantized = int8(states.astype(np.float32).astype(np.float64))
    projected = quantized @ recall.projection(states.shape[1]).astype(np.int64)
    return int8(projected.astype(np.float64))


finite = st.floats(width=32, allow_nan=False, allow_infinity=False)  # tiny and huge rows too: no scale may overflow


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 9), st.integers(1, 600)), elements=finite))
def test_keys_are_the_integer_products_whatever_the_threads(states):
    expected = reference_keys(states)
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            keys, norms = recall.keys_of(states)
            assert np.array_equal(keys, expected) and np.abs(keys).max() <= 127
            assert np.array_equal(norms, (expected ** 2).sum(axis=1).astype(np.float64))
    finally:
        torch.set_num_threads(previous)


def test_keys_of_rows_do_not_depend_on_the_rows_beside_them():
    states = np.random.default_rng(0).standard_normal((40, 576)).astype(np.float32) * 30
    together, _ = recall.keys_of(states)
    alone = np.concatenate([recall.keys_of(states[i:i + 1])[0] for i in range(40)])
    assert np.array_equal(together, alone)


def test_keys_of_a_state_with_non_finite_values_are_defined():
    state = np.array([[np.nan, np.inf, -np.inf, 1.0, -2.0]], np.float32)
    keys, norms = recall.keys_of(state)
    assert np.array_equal(keys, reference_keys(np.array([[0, 0, 0, 1.0, -2.0]], np.float32)))


def test_the_projection_columns_are_nearly_orthogonal():
    """A projection whose columns agree makes every key alike and recall useless (a plain
    multiplicative hash did exactly that)."""
    p = recall.projection(576).astype(np.int64)
    assert set(np.unique(p)) == {-1, 1}
    gram = p.T @ p
    assert (np.abs(gram - 576 * np.eye(recall.KEY_DIMS)) < 0.25 * 576).all()


def reference_predict(memory_keys, tokens, keys) -> list:
    """Memory.predict by its definition, one query and one state at a time."""
    found = []
    for key in keys:
        near = []
        for state, (other, token) in enumerate(zip(memory_keys, tokens)):
            scale = float(np.sqrt(float(key @ key))) * float(np.sqrt(float(other @ other)))
            cosine = float(key @ other) / scale if scale > 0 else 0.0
            level = min(int(np.floor(cosine * recall.LEVELS)), recall.LEVELS)
            if level >= recall.FLOOR:
                near.append((level, state, token))
        near = sorted(near, reverse=True)[:recall.NEAREST]  # most similar, ties: the most recent
        if not near:
            found.append(None)
            continue
        weights: dict[int, int] = {}
        for level, _, token in near:
            weights[token] = weights.get(token, 0) + int(recall.WEIGHTS[level])
        heaviest = sorted(weights, key=lambda token: (-weights[token], token))[:recall.CANDIDATES]
        bucket = min((near[0][0] - recall.FLOOR) // recall.BUCKET_LEVELS, recall.BUCKETS - 1)
        found.append((bucket, {token: weights[token] for token in heaviest}, sum(weights.values())))
    return found


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 400), st.integers(1, 6))
def test_predictions_are_those_of_the_definition(seed, size, queries):
    rng = np.random.default_rng(seed)
    # few distinct directions, scaled and repeated: ties and near-ties on purpose, and a zero key
    base = rng.integers(-127, 128, (4, recall.KEY_DIMS))
    memory_keys = base[rng.integers(0, 4, size)] // rng.integers(1, 3, (size, 1))
    memory_keys[rng.random(size) < 0.1] = 0
    memory_keys = np.clip(memory_keys + (rng.random(memory_keys.shape) < 0.05), -127, 127)
    tokens = rng.integers(0, 20, size)
    keys = np.clip(base[rng.integers(0, 4, queries)] + rng.integers(-3, 4, (queries, recall.KEY_DIMS)), -127, 127)
    memory = recall.Memory(size)
    memory.add(memory_keys.astype(np.float32), (memory_keys.astype(np.float64) ** 2).sum(1), tokens.tolist())
    got = memory.predict(keys.astype(np.float32), (keys.astype(np.float64) ** 2).sum(1))
    assert got == reference_predict(memory_keys, tokens, keys)


def test_a_query_with_more_alike_states_than_its_shortlist_scans_them_all():
    rng = np.random.default_rng(5)
    key = rng.integers(-127, 128, recall.KEY_DIMS)
    size = 3 * recall.SHORTLIST
    memory_keys = np.clip(key + (rng.random((size, recall.KEY_DIMS)) < 0.02), -127, 127)  # all alike
    tokens = rng.integers(0, 40, size)
    memory = recall.Memory(size)
    memory.add(memory_keys.astype(np.float32), (memory_keys.astype(np.float64) ** 2).sum(1), tokens.tolist())
    got = memory.predict(key[None].astype(np.float32), (key[None].astype(np.float64) ** 2).sum(1))
    assert got == reference_predict(memory_keys, tokens, key[None])


def test_there_is_a_prior_per_bucket():
    assert len(PRIOR_RECALL) == recall.BUCKETS


def stepped(chunks: list[list[int]], states: list[np.ndarray]) -> list[list]:
    """Each chunk's recall prediction at each position, a group stepped as a decoder steps it."""
    group = SharedHistory([len(chunk) for chunk in chunks], recalling=True)
    seen = [[] for _ in chunks]
    for position in range(max(map(len, chunks))):
        live = [i for i, chunk in enumerate(chunks) if position < len(chunk)]
        keys, norms = recall.keys_of(np.stack([states[i][position] for i in live]))
        group.query(live, keys, norms)
        for i in live:
            seen[i].append([(b, c, s) for e, b, c, s in group.members[i].experts() if e == RECALL_EXPERT])
        for i in live:
            group.members[i].append(chunks[i][position])
    return seen


def test_a_chunk_recalls_only_states_before_its_position():
    rng = np.random.default_rng(1)
    states = [rng.standard_normal((12, 64)).astype(np.float32) for _ in range(2)]
    states[1][7] = states[0][3]  # chunk 1 at 7 is in chunk 0's state at 3 (token 103 followed)
    states[1][2] = states[0][9]  # and at 2 in the state at 9: not decoded yet then
    chunks = [[100 + i for i in range(12)], [200 + i for i in range(12)]]
    seen = stepped(chunks, states)
    assert seen[0][0] == [] and seen[1][0] == []  # nothing to recall at position 0
    assert any(103 in counts for _, counts, _ in seen[1][7])
    for position, predictions in enumerate(seen[1]):
        for _, counts, _ in predictions:
            known = set(chunks[0][:position]) | set(chunks[1][:position])
            assert set(counts) <= known


def test_recorded_recall_is_the_live_one():
    rng = np.random.default_rng(2)
    chunks = [rng.integers(0, 30, length).tolist() for length in (20, 14, 20)]
    states = [rng.standard_normal((len(chunk), 48)).astype(np.float32) for chunk in chunks]
    for chunk, state in zip(chunks, states):  # repeats: states close to earlier ones
        state[10:] = state[:len(state) - 10] + 0.01 * state[10:]
    expected = stepped(chunks, states)
    recorded = Recorded([np.array(chunk) for chunk in chunks], recalling=True)
    for i, state in enumerate(states):
        recorded.remember(i, 0, state[:5])
        recorded.remember(i, 5, np.concatenate([state[5:], state[:3]]))  # padding past the end is dropped
    for i in (2, 0, 1):
        member = recorded.member(i)
        for position, token in enumerate(chunks[i]):
            assert [(b, c, s) for e, b, c, s in member.experts() if e == RECALL_EXPERT] == expected[i][position]
            member.append(token)
    assert any(expected[i][p] for i in range(3) for p in range(len(chunks[i])))


@pytest.mark.parametrize("rows", [1, 3])
def test_the_engine_gives_the_same_states_stepping_as_packing(tiny, rows):
    """Recall's exactness rests on it: packing reads states from segments, unpacking from steps."""
    from alphazip.lookup import engine_for
    engine = engine_for(tiny, "auto")
    tokens = np.random.default_rng(3).integers(0, tiny.tokenizer.vocab_size, (rows, 20))
    whole = tiny.stepper(rows, 20, engine)
    whole.advance(tokens)
    packed = whole.features
    single = tiny.stepper(rows, 20, engine)
    stepped_states = []
    for t in range(20):
        single.step(tokens[:, t])
        stepped_states.append(single.features[:, 0])
    assert torch.equal(packed, torch.stack(stepped_states, 1))


def test_weights_fall_as_e_to_the_minus_40_from_cosine_1():
    levels = np.arange(recall.FLOOR, recall.LEVELS + 1)
    ideal = 2.0 ** 16 * np.exp(-40 * (recall.LEVELS - levels) / recall.LEVELS)
    assert recall.WEIGHTS[recall.LEVELS] == 1 << 16 and (recall.WEIGHTS[:recall.FLOOR] == 0).all()
    assert np.allclose(recall.WEIGHTS[levels], ideal, rtol=0.01, atol=2)
