"""Shared fixtures: the committed tiny model, loaded once and kept by the library's cache."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from alphazip.lookup import MODELS  # noqa: E402

TINY_FOLDER = Path(__file__).parent / "data" / "tiny-model"
TINY = str(TINY_FOLDER)  # the --model value naming it


@pytest.fixture(scope="session")
def tiny():
    """The tiny model (2 layers, 300-token byte-level BPE), as ``--model tests/data/tiny-model``."""
    return MODELS.get(TINY, "float32")
