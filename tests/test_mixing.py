import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from alphazip.mixing import FREQ_BITS, MAX_TOTAL, ChunkMixer, mix_rows

WIDTH = 64  # small vocabularies: histories repeat, so every expert gets to predict


def frequencies(rng: np.random.Generator, rows: int, width: int = WIDTH) -> np.ndarray:
    """Random frequencies, each >= 1, each row summing to 2**FREQ_BITS (the contract)."""
    freqs = rng.integers(1, 1 << 14, (rows, width))
    freqs = freqs * ((1 << FREQ_BITS) - width) // freqs.sum(1, keepdims=True) + 1
    freqs[:, 0] += (1 << FREQ_BITS) - freqs.sum(1)
    return freqs.astype(np.int64)


def run(history: list[int], freqs: np.ndarray, width: int = WIDTH) -> list[np.ndarray]:
    """Mixed tables of one mixer coding ``history``, freqs[i] at position i."""
    mixer, out = ChunkMixer(width), []
    for token, row in zip(history, freqs):
        out.append(mixer.mix(row))
        mixer.update(token)
    return out


histories = st.lists(st.integers(0, WIDTH + 3), max_size=120)  # ids >= WIDTH: escaped raw bytes


@settings(max_examples=60, deadline=None)
@given(histories, st.integers(0, 2 ** 32 - 1))
def test_deterministic_and_within_the_coders_limits(history, seed):
    freqs = frequencies(np.random.default_rng(seed), len(history))
    first, second = run(history, freqs), run(history, freqs)
    for a, b, f in zip(first, second, freqs):
        assert a.dtype == np.int64 and a.shape == (WIDTH,)
        assert np.array_equal(a, b)
        assert (a >= f).all() and a.min() >= 1
        assert a.sum() <= MAX_TOTAL


@settings(max_examples=30, deadline=None)
@given(st.lists(histories, min_size=1, max_size=5), st.integers(0, 2 ** 32 - 1))
def test_mix_rows_equals_mix_row_by_row(batch, seed):
    steps = max(len(h) for h in batch)
    freqs = frequencies(np.random.default_rng(seed), len(batch) * steps).reshape(steps, len(batch), WIDTH)
    alone = [ChunkMixer(WIDTH) for _ in batch]
    together = [ChunkMixer(WIDTH) for _ in batch]
    for step in range(steps):
        rows = [b for b, h in enumerate(batch) if step < len(h)]  # finished chunks leave the batch
        mixed = mix_rows([together[b] for b in rows], freqs[step, rows])
        for i, b in enumerate(rows):
            assert np.array_equal(mixed[i], alone[b].mix(freqs[step, b]))
            alone[b].update(batch[b][step])
            together[b].update(batch[b][step])


def test_weights_stay_within_limits_when_everything_repeats():
    # The heaviest case: every expert predicts one token with its largest weight.
    freqs = frequencies(np.random.default_rng(0), 3000)
    for mixed in run([7] * 3000, freqs):
        assert mixed.sum() <= MAX_TOTAL


def test_a_repeat_is_much_more_probable_the_second_time():
    rng = np.random.default_rng(1)
    phrase = rng.integers(0, 49152, 200).tolist()
    history = rng.integers(0, 49152, 300).tolist() + phrase + rng.integers(0, 49152, 50).tolist() + phrase
    flat = np.full((1, 49152), (1 << FREQ_BITS) // 49152, np.int64)
    flat[0, 0] += (1 << FREQ_BITS) - flat.sum()
    mixed = run(history, np.repeat(flat, len(history), 0), 49152)
    start = len(history) - len(phrase)
    def bits(tables, tokens):  # mean code length, once the match model has found the repeat
        return np.mean([-np.log2(m[t] / m.sum()) for m, t in zip(tables[20:], tokens[20:])])
    assert bits(mixed[300:500], phrase) > 15  # a flat model: log2(49152) = 15.6
    assert bits(mixed[start:], phrase) < 1


def test_ids_beyond_the_width_enter_the_history_but_are_never_predicted():
    mixer = ChunkMixer(10)
    for token in [3, 12, 4, 3, 12]:  # after 3 came 12 (escaped): nothing to add for it
        mixer.update(token)
    ids, weights = mixer.predictions()
    assert (ids < 10).all() and (weights > 0).all()
    mixer.update(4)  # the history 3 12 4 now repeats, so the match model predicts 3
    ids, _ = mixer.predictions()
    assert 3 in ids.tolist()


def test_predictions_are_unique_ids():
    mixer = ChunkMixer(WIDTH)
    for token in [1, 2, 3, 1, 2, 3, 1, 2, 4, 1, 2]:
        mixer.update(token)
    ids, weights = mixer.predictions(top=3)
    assert len(set(ids.tolist())) == len(ids) and ids.dtype == weights.dtype == np.int64
