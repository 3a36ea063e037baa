"""Committed archives must keep decoding: a change that breaks them must bump the format version.

``golden/v1`` holds archives of format 1 (one frame, fixed-width fields), ``golden/v2`` those of
format 2 (frames, varints), ``golden/v3`` those of format 3 (compact header, a CRC-32 per frame);
each folder is written once by scripts/make_golden.py and never again.
"""

from pathlib import Path

import pytest
from conftest import TINY

from alphazip import ChecksumError, Decompressor, ModelMismatchError, container
from alphazip.model.exact import EXACT_ENGINE_NAME
from alphazip.model.learning import LEARNING_ENGINES

GOLDEN = Path(__file__).parent / "data" / "golden"
VERSIONS = ("v1", "v2", "v3")
TINY_ARCHIVES = sorted(path for version in VERSIONS for path in (GOLDEN / version).glob("tiny-*.az"))
# The exact engine's archives (formats 2 and 3): they must decode on every machine, under every setting.
EXACT_ARCHIVES = sorted(path for version in ("v2", "v3") for path in (GOLDEN / version).glob("exact-tiny-*.az"))
# One per learning engine: what it learns must stay the same, bit for bit, or the engine is renamed.
LEARNING_ARCHIVES = sorted((GOLDEN / "v3").glob("learn-tiny-*.az"))


def test_golden_archives_exist():
    assert len(TINY_ARCHIVES) == 10 * len(VERSIONS)  # five back-ends, model and raw mode each
    # five back-ends and frames of mixed modes in two formats; rank-ac, ac-1, ac-plain, ac-2, ac-3
    # and ac in format 3
    assert len(EXACT_ARCHIVES) == 12 + 6
    assert container.FORMAT_VERSION == len(VERSIONS), "a new format version needs its golden folder"
    assert [f"alphazip-exact-learn-{path.stem.rsplit('-', 1)[1]}" for path in LEARNING_ARCHIVES] == sorted(LEARNING_ENGINES)


def decodes_or_refuses_clearly(blob: bytes, expected: bytes, model: str | None = None) -> None:
    """Exact-engine archives decode everywhere. Float-engine archives decode only where the kernels
    sum as the packing machine's did (not even every AVX-512 CPU: the AMX Xeon fails v1's), so
    elsewhere they must stop with our clear error, never more."""
    header = container.read(blob).header
    try:
        assert Decompressor(model=model).decompress(blob) == expected
    except (ChecksumError, ModelMismatchError) as error:
        assert header.engine != EXACT_ENGINE_NAME, f"an exact-engine archive failed: {error}"
        assert "fails its CRC-32" in str(error) or "probe fingerprint" in str(error)


@pytest.mark.parametrize("path", TINY_ARCHIVES, ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_golden_archive_decodes(tiny, path):
    blob = path.read_bytes()
    assert f"v{blob[4]}" == path.parent.name
    original = (path.parent / "original.bin").read_bytes()
    decodes_or_refuses_clearly(blob, original, TINY)
    mode = path.stem.rsplit("-", 1)[1]
    assert container.read(blob).mode == mode


@pytest.mark.parametrize("path", EXACT_ARCHIVES, ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_golden_exact_engine_archive_decodes(tiny, path):
    blob = path.read_bytes()
    assert container.read(blob).header.engine == EXACT_ENGINE_NAME
    original = (path.parent / ("frames.bin" if "mixed" in path.stem else "original.bin")).read_bytes()
    assert Decompressor(model=TINY).decompress(blob) == original


@pytest.mark.parametrize("path", LEARNING_ARCHIVES, ids=lambda p: p.stem)
@pytest.mark.parametrize("batch", [1, 5])
def test_golden_learning_archive_decodes(tiny, path, batch):
    blob = path.read_bytes()
    assert container.read(blob).header.engine in LEARNING_ENGINES
    assert Decompressor(model=TINY, batch=batch).decompress(blob) == (GOLDEN / "v3" / "learning.bin").read_bytes()


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_golden_archive_of_mixed_frames_decodes(tiny, version):
    blob = (GOLDEN / version / "frames-tiny-zstd-mixed.az").read_bytes()
    archive = container.read(blob)
    assert [frame.mode for frame in archive.frames] == ["model", "model", "raw", "model"]
    decodes_or_refuses_clearly(blob, (GOLDEN / version / "frames.bin").read_bytes(), TINY)


# Default-model archives: the transformers path's (v1, bf16), two float engines' and the exact engine's.
REAL_ARCHIVES = ["v1/smollm2-brotli.az", "v1/smollm2-engine-brotli.az", "v2/smollm2-engine-brotli.az",
                 "v2/exact-smollm2-brotli.az", "v3/exact-smollm2-brotli.az", "v3/exact-smollm2-ac.az",
                 "v3/exact-smollm2-ac-plain.az", "v3/exact-smollm2-rank-ac.az", "v3/exact-smollm2-ac-bias.az",
                 "v3/exact-smollm2-ac-share.az", "v3/exact-smollm2-ac-recall.az"]


@pytest.mark.parametrize("name, backend", [("exact-tiny-ac-model.az", "ac-1"), ("exact-smollm2-ac.az", "ac-1"),
                                           ("exact-tiny-ac-bias-model.az", "ac-2"), ("exact-smollm2-ac-bias.az", "ac-2"),
                                           ("exact-tiny-ac-share-model.az", "ac-3"), ("exact-smollm2-ac-share.az", "ac-3"),
                                           ("exact-tiny-ac-recall-model.az", "ac"), ("exact-smollm2-ac-recall.az", "ac")])
def test_ac_archives_of_before_read_under_the_names_of_their_coders(name, backend):
    """Back-end id 6 was "ac" before the log-space bias, id 8 before the chunks shared their
    experts' history, id 9 before it recalled the model's states: their archives decode as
    "ac-1", "ac-2" and "ac-3" now."""
    assert container.read((GOLDEN / "v3" / name).read_bytes()).header.backend == backend


@pytest.mark.slow
@pytest.mark.parametrize("name", REAL_ARCHIVES)
def test_golden_default_model_archive_decodes(name):
    blob = (GOLDEN / name).read_bytes()
    excerpt = (Path(__file__).parent.parent / "data" / "alice-excerpt.txt").read_bytes()[:600]
    decodes_or_refuses_clearly(blob, excerpt)
