"""Committed archives must keep decoding: a change that breaks them must bump the format version."""

from pathlib import Path

import pytest
from conftest import TINY

from alphazip import Decompressor, container

GOLDEN = Path(__file__).parent / "data" / "golden"
TINY_ARCHIVES = sorted(GOLDEN.glob("tiny-*.az"))


def test_golden_archives_exist():
    assert len(TINY_ARCHIVES) == 10  # five back-ends, model and raw mode each


@pytest.mark.parametrize("path", TINY_ARCHIVES, ids=lambda p: p.stem)
def test_golden_archive_decodes(tiny, path):
    original = (GOLDEN / "original.bin").read_bytes()
    assert Decompressor(model=TINY).decompress(path.read_bytes()) == original
    mode = path.stem.rsplit("-", 1)[1]
    assert container.read(path.read_bytes()).header.mode == mode


@pytest.mark.slow
def test_golden_default_model_archive_decodes():
    path = GOLDEN / "smollm2-brotli.az"
    excerpt = (Path(__file__).parent.parent / "data" / "alice-excerpt.txt").read_bytes()[:600]
    assert Decompressor().decompress(path.read_bytes()) == excerpt
