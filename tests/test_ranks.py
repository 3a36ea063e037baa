import pytest
import torch
from conftest import kernel_build
from hypothesis import given, settings
from hypothesis import strategies as st

from alphazip.model import native
from alphazip.ranks import ranks_of, tokens_at


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_rank_and_token_are_inverse_with_ties(data):
    batch = data.draw(st.integers(1, 6))
    width = data.draw(st.integers(1, 80))
    # Few distinct values: ties everywhere, as with bf16 logits.
    values = data.draw(st.lists(st.sampled_from([-1.0, 0.0, -0.0, 0.5, 2.0]), min_size=batch * width,
                                max_size=batch * width))
    logits = torch.tensor(values).reshape(batch, width)
    tokens = torch.tensor(data.draw(st.lists(st.integers(0, width - 1), min_size=batch, max_size=batch)))
    ranks = ranks_of(logits, tokens)
    reference = (torch.sort(-logits, dim=1, stable=True).indices == tokens[:, None]).int().argmax(1)
    assert torch.equal(ranks, reference)  # highest logit first, ties by lower id
    assert torch.equal(tokens_at(logits, ranks), tokens)
    shallow = data.draw(st.integers(0, width))  # rows at or past it take the sorting path
    assert torch.equal(tokens_at(logits, ranks, shallow=shallow), tokens)


def test_ids_beyond_the_logits_have_no_rank():
    logits = torch.zeros(2, 4)
    assert ranks_of(logits, torch.tensor([3, 7])).tolist() == [3, -1]


@pytest.mark.skipif(not native.available(), reason="the compiled kernels were not built")
@pytest.mark.parametrize("level", [0, 1, 2])
def test_compiled_ranks_follow_the_torch_path_in_every_variant(level, monkeypatch):
    generator = torch.Generator().manual_seed(level)
    logits = torch.randint(-3, 4, (50, 1000), generator=generator).float() / 2  # ties everywhere
    logits[0] = -0.0  # equal to 0.0
    tokens = torch.randint(0, 1000, (50,), generator=generator)
    tokens[1] = 1000  # beyond the width
    with kernel_build(level):
        compiled = ranks_of(logits, tokens)
    monkeypatch.setattr(native, "_LIBRARY", None)
    assert torch.equal(compiled, ranks_of(logits, tokens))


@pytest.mark.skipif(not native.available(), reason="the compiled kernels were not built")
@pytest.mark.parametrize("level", [0, 1, 2])
def test_compiled_token_lookup_follows_the_torch_path_in_every_variant(level, monkeypatch):
    generator = torch.Generator().manual_seed(10 + level)
    logits = torch.randint(-3, 4, (60, 1003), generator=generator).float() / 2  # ties everywhere, a ragged width
    logits[0] = -0.0  # equal to 0.0
    logits[1, ::2] = 0.0
    logits[2] = torch.arange(1003).float()  # rising: every logit enters the kept ones
    logits[3:30] = torch.randn(27, 1003, generator=generator)  # no ties
    ranks = torch.randint(0, 1003, (60,), generator=generator)  # deep ranks: bisection
    ranks[::3] = torch.randint(0, 64, (20,), generator=generator)  # shallow ranks: one pass
    ranks[4], ranks[5], ranks[6] = 0, 63, 64  # the edges of the two ways
    with kernel_build(level):
        compiled = tokens_at(logits, ranks)
    assert torch.equal(ranks_of(logits, compiled), ranks)
    monkeypatch.setattr(native, "_LIBRARY", None)
    assert torch.equal(compiled, tokens_at(logits, ranks))


@pytest.mark.skipif(not native.available(), reason="the compiled kernels were not built")
def test_a_rank_beyond_the_logits_is_refused():
    with pytest.raises(ValueError, match="beyond"):
        tokens_at(torch.zeros(2, 4), torch.tensor([1, 4]))
