"""Committed archives must keep decoding: a change that breaks them must bump the format version.

``golden/v1`` holds archives of format 1 (one frame, fixed-width fields), ``golden/v2`` those of
format 2 (frames, varints); each folder is written once by scripts/make_golden.py and never again.
"""

from pathlib import Path

import pytest
import torch
from conftest import TINY

from alphazip import ChecksumError, Decompressor, ModelMismatchError, container

GOLDEN = Path(__file__).parent / "data" / "golden"
VERSIONS = ("v1", "v2")
TINY_ARCHIVES = sorted(path for version in VERSIONS for path in (GOLDEN / version).glob("tiny-*.az"))


def test_golden_archives_exist():
    assert len(TINY_ARCHIVES) == 10 * len(VERSIONS)  # five back-ends, model and raw mode each
    assert container.FORMAT_VERSION == len(VERSIONS), "a new format version needs its golden folder"


@pytest.mark.parametrize("path", TINY_ARCHIVES, ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_golden_archive_decodes(tiny, path):
    blob = path.read_bytes()
    assert f"v{blob[4]}" == path.parent.name
    original = (path.parent / "original.bin").read_bytes()
    assert Decompressor(model=TINY).decompress(blob) == original
    mode = path.stem.rsplit("-", 1)[1]
    assert container.read(blob).mode == mode


def test_golden_archive_of_mixed_frames_decodes(tiny):
    blob = (GOLDEN / "v2" / "frames-tiny-zstd-mixed.az").read_bytes()
    archive = container.read(blob)
    assert [frame.mode for frame in archive.frames] == ["model", "model", "raw", "model"]
    assert Decompressor(model=TINY).decompress(blob) == (GOLDEN / "v2" / "frames.bin").read_bytes()


# The CPU kind each default-model archive was packed on: torch's kernels sum in another order on
# other kinds, so there the archive must decode exactly or stop with our clear error, never more.
REAL_ARCHIVES = {"v1/smollm2-brotli.az": "AVX512", "v1/smollm2-engine-brotli.az": "AVX2",
                 "v2/smollm2-engine-brotli.az": "AVX2"}


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
