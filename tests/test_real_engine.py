"""The exact engine on the default model: packed once, unpacked under other batches and threads (slow)."""

from pathlib import Path

import pytest
import torch

from alphazip import Compressor, Decompressor, container, schedule
from alphazip.model.exact import EXACT_ENGINE_NAME

pytestmark = pytest.mark.slow
TEXT = (Path(__file__).parent.parent / "data" / "alice-excerpt.txt").read_bytes()[:700]
SETTINGS = {"context": 64, "mode": "model", "engine": EXACT_ENGINE_NAME}


@pytest.fixture(scope="module")
def packed():
    """Packed at batch 7 with 2 threads, and at batch 64 with 1 thread."""
    blob = Compressor(batch=7, **SETTINGS).compress(TEXT)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        other = Compressor(batch=64, **SETTINGS).compress(TEXT)
    finally:
        torch.set_num_threads(previous)
    return blob, other


def test_payload_is_the_same_whatever_batch_and_threads_packed_it(packed):
    blob, other = packed
    assert container.read(blob).frames == container.read(other).frames


@pytest.mark.parametrize(("unpack_batch", "threads"), [(1, 2), (7, 1), (64, 2), (7, 8)])
def test_unpacks_under_other_batches_and_threads(packed, monkeypatch, unpack_batch, threads):
    monkeypatch.setattr(schedule, "DECODE_BATCH", unpack_batch)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert Decompressor().decompress(packed[0]) == TEXT
    finally:
        torch.set_num_threads(previous)
