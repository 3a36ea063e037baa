"""Committed archives must keep decoding: a change that breaks them must bump the format version."""

from pathlib import Path

import pytest
import torch
from conftest import TINY

from alphazip import ChecksumError, Decompressor, ModelMismatchError, container

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


# The CPU kind each default-model archive was packed on: torch's kernels sum in another order on
# other kinds, so there the archive must decode exactly or stop with our clear error, never more.
REAL_ARCHIVES = {"smollm2-brotli.az": "AVX512", "smollm2-engine-brotli.az": "AVX2"}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REAL_ARCHIVES))
def test_golden_default_model_archive_decodes(name):
    blob = (GOLDEN / name).read_bytes()
    excerpt = (Path(__file__).parent.parent / "data" / "alice-excerpt.txt").read_bytes()[:600]
    try:
        assert Decompressor().decompress(blob) == excerpt
    except (ChecksumError, ModelMismatchError) as error:
        here = torch.backends.cpu.get_cpu_capability()
        assert here != REAL_ARCHIVES[name], f"fails on the CPU kind it was packed on: {error}"
        assert "fails its CRC-32" in str(error) or "probe fingerprint" in str(error)
