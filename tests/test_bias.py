"""The ``ac`` coder's adaptive log-space bias: the same bits from the kernel (every build) and the
torch path, a smaller code where the text keeps using tokens the model underrates, bounded memory."""

import numpy as np
import pytest
import torch
from conftest import kernel_build

from alphazip.coding import bias as bias_module
from alphazip.coding.arithmetic import ArithmeticDecoder, ArithmeticEncoder
from alphazip.coding.bias import ChunkBiases
from alphazip.coding.frequencies import coding_facts
from alphazip.model import native


def run_biases(lengths: list[int], logits: list[torch.Tensor], tokens: list[list[int]]) -> list:
    """Every chunk through its bias side by side, as unpacking steps them (``biased``, then
    ``learn``) and as packing does (``facts``, in one call): each step's biased rows and argmaxes
    and the facts of its tokens under them."""
    unpacking, packing = (ChunkBiases(lengths, logits[0].shape[1]) for _ in range(2))
    seen = []
    for position in range(max(lengths)):
        chunks = [c for c, length in enumerate(lengths) if position < length]
        step = torch.stack([logits[c][position] for c in chunks])
        biased, tops = unpacking.biased(chunks, step)
        ids = torch.tensor([tokens[c][position] for c in chunks])
        facts = [t.tolist() for t in coding_facts(biased, torch.where(ids < biased.shape[1], ids, 0))]
        assert packing.facts(chunks, position, step, torch.arange(len(chunks)), ids) == (*facts, tops)
        seen.append((biased, tops))
        unpacking.learn(chunks, position, biased, torch.tensor(facts[2]), ids)
    return seen


def sample(seed: int, width: int = 3000):
    generator = torch.Generator().manual_seed(seed)
    lengths = [40, 7, 25]
    logits = [torch.randn(length, width, generator=generator) * 4 for length in lengths]
    logits[0][:, 11] = 1e4  # far above the rest: every other id at the frequency floor
    tokens = [torch.randint(0, width + 5, (length,), generator=generator).tolist() for length in lengths]
    tokens[2][5:20] = [17, 18, 19] * 5  # repeats, for the bias to learn
    return lengths, logits, tokens


@pytest.mark.skipif(not native.available(), reason="the compiled kernels were not built")
@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_the_kernel_learns_the_torch_paths_bits(monkeypatch, level):
    """SSE2, AVX2 and AVX-512 builds of the steps against the torch path, escapes and floors included;
    packing's one-call step against unpacking's steps in each."""
    lengths, logits, tokens = sample(1)
    with kernel_build(level):
        compiled = run_biases(lengths, logits, tokens)
    monkeypatch.setattr(native, "_LIBRARY", None)
    torch_path = run_biases(lengths, logits, tokens)
    assert all(torch.equal(a, b) and tops == others for (a, tops), (b, others) in zip(compiled, torch_path, strict=True))
    assert not torch.equal(torch_path[-1][0], torch.stack([logits[0][-1]]))  # it learnt something


def coded_size(bias: bool, lengths, logits, tokens) -> int:
    width = logits[0].shape[1]
    encoder = ArithmeticEncoder(lengths, width, width + 5, mixing=False, bias=bias)
    for chunk, length in enumerate(lengths):
        encoder.observe([chunk], 0, logits[chunk][None], np.array([tokens[chunk]]), np.array([length]))
    streams = encoder.streams()
    decoder = ArithmeticDecoder(streams, lengths, width, width + 5, mixing=False, bias=bias)
    for position in range(max(lengths)):  # side by side, the bias of each chunk its own
        rows = np.array([c for c, length in enumerate(lengths) if position < length])
        step = torch.stack([logits[c][position] for c in rows])
        assert decoder.next_tokens(rows, position, step).tolist() == [tokens[c][position] for c in rows]
    decoder.finish()
    return len(streams[0])


def test_the_bias_codes_a_text_that_keeps_using_a_few_tokens_smaller():
    """Flat logits over 3,000 ids and a text of five of them: the model alone pays ~11.6 bits a
    token, the bias learns the five within a few dozen tokens."""
    generator = torch.Generator().manual_seed(2)
    lengths = [300, 120]
    logits = [torch.randn(length, 3000, generator=generator) * 0.1 for length in lengths]
    tokens = [torch.randint(100, 105, (length,), generator=generator).tolist() for length in lengths]
    plain, biased = (coded_size(bias, lengths, logits, tokens) for bias in (False, True))
    assert biased < 0.6 * plain


def test_slots_follow_the_chunks_side_by_side_not_the_frame():
    """Twenty chunks coded one after another reuse one row of biases."""
    width, lengths = 50, [3] * 20
    biases = ChunkBiases(lengths, width)
    for chunk in range(20):
        for position in range(3):
            biased, _ = biases.biased([chunk], torch.zeros(1, width))
            assert position or torch.equal(biased, torch.zeros(1, width))  # a new chunk starts at 0
            totals = coding_facts(biased, torch.tensor([7]))[2]
            biases.learn([chunk], position, biased, totals, torch.tensor([7]))
    assert len(biases._values) == 1


def test_rate_is_exact_in_float32():
    assert float(torch.tensor(bias_module.RATE, dtype=torch.float32)) == bias_module.RATE
