"""Experts shared by a group of chunks: the encoder's recorded predictions are the decoder's live
ones, chunks see each other's history only as far as lockstep allows, and the schedule never
splits a group."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from alphazip.schedule import batches, lockstep_spans
from alphazip.sharing import SPAN_POSITIONS, Recorded, SharedHistory, groups

chunk_lists = st.lists(st.lists(st.integers(0, 5), max_size=40), min_size=1, max_size=6)


def live_predictions(chunks: list[list[int]]) -> list[list]:
    """Each chunk's predictions at each position, from a group stepped in lockstep as a decoder does."""
    group = SharedHistory([len(chunk) for chunk in chunks])
    seen = [[] for _ in chunks]
    for position in range(max(map(len, chunks), default=0)):
        live = [i for i, chunk in enumerate(chunks) if position < len(chunk)]
        for i in live:
            seen[i].append([(e, b, dict(c), s) for e, b, c, s in group.members[i].experts()])
        for i in live:
            group.members[i].append(chunks[i][position])
    return seen


@settings(max_examples=60, deadline=None)
@given(chunk_lists, st.randoms(use_true_random=False))
def test_recorded_predictions_are_the_live_ones_in_any_order_of_chunks(chunks, random):
    expected = live_predictions(chunks)
    recorded = Recorded([np.array(chunk, dtype=np.int64) for chunk in chunks])
    order = list(range(len(chunks)))
    random.shuffle(order)  # the encoder codes the chunks of a group in its own order
    for i in order:
        member = recorded.member(i)
        for position, token in enumerate(chunks[i]):
            assert list(member.experts()) == expected[i][position]
            member.append(token)


def test_a_chunk_predicts_from_another_chunks_earlier_positions():
    pattern = list(range(10, 40))
    first = pattern + [1] * 30
    second = [2, 3, 4, 5, 6, 7, 8, 9] + pattern[:20] + [1] * 32  # the pattern 8 positions later
    predicted = live_predictions([first, second])[1]
    # at position 8 + 12 the match of 12 tokens found the pattern in the first chunk
    at = 8 + 12
    matches = {next(iter(c)) for e, b, c, s in predicted[at] if e == 0}
    assert matches == {second[at]}
    # alone, the second chunk has no history to match
    assert not any(e == 0 for e, *_ in live_predictions([second])[0][at])


def test_a_token_not_decoded_yet_is_never_predicted():
    # both chunks identical: the second may only see the first's positions before its own
    chunk = list(range(30))
    predicted = live_predictions([chunk, chunk])
    for position, experts in enumerate(predicted[1]):
        for _, _, counts, _ in experts:
            assert all(token in chunk[:position] for token in counts)


def test_out_of_lockstep_use_fails_loudly():
    group = SharedHistory([3, 3])
    group.members[0].append(1)
    with pytest.raises(RuntimeError, match="lockstep"):
        group.members[0].append(2)  # chunk 1 has not added its first token
    with pytest.raises(RuntimeError, match="lockstep"):
        list(group.members[0].experts())


def test_groups_hold_span_positions_at_the_longest_chunk():
    assert groups([1024] * 130) == [range(0, 64), range(64, 128), range(128, 130)]
    assert groups([8192] * 9) == [range(0, 8), range(8, 9)]
    assert groups([SPAN_POSITIONS * 2, 5]) == [range(0, 1), range(1, 2)]
    assert groups([16] * 200) == [range(0, 64), range(64, 128), range(128, 192), range(192, 200)]
    assert groups([]) == []


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 200), st.integers(1, 70), st.integers(1, 80))
def test_spans_cover_every_chunk_in_order_and_never_split_a_group(count, batch, size):
    lockstep = [range(start, min(start + size, count)) for start in range(0, count, size)]
    spans = lockstep_spans(count, batch, lockstep)
    assert [chunk for span in spans for chunk in span] == list(range(count))
    for group in lockstep:
        assert sum(group.start in span for span in spans) == 1
        assert any(group.start in span and group.stop - 1 in span for span in spans)
    for span in spans:
        assert len(span) <= max(batch, size)
        assert all(len(run) <= batch for run in batches(span, batch))
