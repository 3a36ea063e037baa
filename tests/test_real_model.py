"""The default model end to end (fetched and converted on first use; marked slow)."""

from pathlib import Path

import pytest
from conftest import TINY

from alphazip import Compressor, Decompressor, ModelMismatchError, describe
from alphazip.backends import backend_names

pytestmark = pytest.mark.slow
CORPUS = Path(__file__).parent.parent.parent / "shared" / "corpus"
EXCERPT = (Path(__file__).parent.parent / "data" / "alice-excerpt.txt").read_bytes()[:1500]
QUICK = {"context": 96, "batch": 8}


@pytest.fixture(scope="module")
def packed():
    """The excerpt packed once per back-end with the default model."""
    return {name: Compressor(backend=name, mode="model", **QUICK).compress(EXCERPT) for name in backend_names()}


@pytest.mark.parametrize("backend", backend_names())
def test_default_model_round_trips(packed, backend):
    blob = packed[backend]
    assert Decompressor().decompress(blob) == EXCERPT
    assert describe(blob)["model"] == "smollm2-135m"


def test_default_model_beats_brotli_on_text(packed):
    import brotli

    from alphazip import container

    # Payloads only: on 1.5 KB the fixed header (model fingerprint, versions) is a large share.
    payload = sum(len(stream) for frame in container.read(packed["brotli"]).frames for stream in frame.streams)
    assert payload < 0.8 * len(brotli.compress(EXCERPT, quality=11))


def test_mixed_bytes_round_trip():
    data = "Prose, then bytes the tokenizer lacks: ".encode() + bytes([0x04, 0xC0, 0xFF, 0xF5, 0x00]) + "ünïcode €".encode()
    blob = Compressor(backend="zstd", mode="model", **QUICK).compress(data)
    assert Decompressor().decompress(blob) == data


def test_archive_from_default_model_refuses_another(packed, tiny):
    with pytest.raises(ModelMismatchError, match="smollm2-135m"):
        Decompressor(model=TINY).decompress(packed["brotli"])


@pytest.mark.parametrize("name", ["geo.protodata", "fireworks.jpeg"])
def test_binary_corpus_files_are_stored_near_brotli_size(name):
    import brotli

    path = CORPUS / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    data = path.read_bytes()
    blob = Compressor(backend="brotli").compress(data)
    assert describe(blob)["mode"] == "raw"
    assert len(blob) <= 1.03 * len(brotli.compress(data, quality=11))
    assert Decompressor().decompress(blob) == data
