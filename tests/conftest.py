"""Shared fixtures: the committed tiny model, loaded once and kept by the library's cache; the
compiled kernels' builds one at a time."""

import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from alphazip.lookup import MODELS  # noqa: E402
from alphazip.model import native  # noqa: E402

TINY_FOLDER = Path(__file__).parent / "data" / "tiny-model"
TINY = str(TINY_FOLDER)  # the --model value naming it


@pytest.fixture(scope="session")
def tiny():
    """The tiny model (2 layers, 300-token byte-level BPE), as ``--model tests/data/tiny-model``."""
    return MODELS.get(TINY, "float32")


@contextmanager
def kernel_build(level: int):
    """Within the block, the compiled kernels' build for ``level`` (0 SSE2, 1 AVX2, 2 AVX-512,
    3 AVX-512 VNNI, lowered to what this CPU has); then this CPU's own again."""
    native._LIBRARY.alphazip_select_isa(level)
    try:
        yield
    finally:
        native._LIBRARY.alphazip_select_isa(native._ISA)
