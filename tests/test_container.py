"""Bad archives: every failure is one clear AlphazipError, never a wrong output."""

import struct
import zlib

import pytest
from conftest import TINY
from tiny import tiny_model

from alphazip import (BadArchiveError, ChecksumError, Compressor, Decompressor, ModelMismatchError,
                      UnsupportedFormatError)
from alphazip import container
from alphazip.lookup import MODELS

TEXT = b"Alice was beginning to get very tired of sitting by her sister on the bank.\r\n" * 4


@pytest.fixture(scope="module")
def blob(tiny):
    return Compressor(backend="brotli", mode="model", model=TINY, context=32, batch=2).compress(TEXT)


def test_not_an_archive():
    with pytest.raises(BadArchiveError, match="not an alphazip archive"):
        Decompressor().decompress(b"hello world")
    with pytest.raises(BadArchiveError, match="not an alphazip archive"):
        Decompressor().decompress(b"")


def test_unknown_version(blob):
    with pytest.raises(UnsupportedFormatError, match="version 99"):
        Decompressor().decompress(blob[:4] + b"\x63" + blob[5:])


def test_every_truncation_is_rejected(blob):
    for end in range(len(blob)):
        with pytest.raises(BadArchiveError):
            container.read(blob[:end])


def test_trailing_junk_is_rejected(blob):
    with pytest.raises(BadArchiveError, match="3 bytes of trailing junk"):
        Decompressor().decompress(blob + b"abc")


def test_every_flipped_byte_is_rejected(blob):
    for position in range(0, len(blob), 7):
        broken = bytearray(blob)
        broken[position] ^= 0x40
        with pytest.raises(BadArchiveError):
            Decompressor().decompress(bytes(broken))


def test_wrong_model_is_named(tiny, blob):
    other = tiny_model(name="other-tiny", seed=1, dtype=container.read(blob).header.dtype)
    MODELS.add(other)
    with pytest.raises(ModelMismatchError, match="packed with a local model"):
        Decompressor(model="other-tiny").decompress(blob)


def _with_stream(blob: bytes, index: int, payload: bytes, version: int = container.FORMAT_VERSION) -> bytes:
    """Re-write an archive with one stream replaced and a valid outer CRC: only inner checks catch it."""
    archive = container.read(blob)
    archive.frames[0].streams[index] = payload
    return container.write(archive, version)


@pytest.mark.parametrize("version, error", [(3, "decoded bytes fail their CRC-32"), (2, "chunk 1 of")])
def test_altered_ranks_fail_the_checksum(tiny, blob, version, error):
    from alphazip.backends import get_backend

    archive = container.read(blob)
    backend = get_backend("brotli")
    symbols = backend.decode(archive.frames[0].streams[0], archive.header.top_k + 1, sum(archive.frames[0].chunk_tokens))
    top_k = archive.header.top_k
    symbols[40] = 0 if symbols[40] == top_k else (symbols[40] + 1) % top_k  # never an escape
    if version == 2:  # format 2 records each chunk's CRC-32, which format 3 leaves out
        chunks = Compressor(model=TINY, context=32).chunks_of(TEXT, tiny)
        archive.frames[0].chunk_crcs = [zlib.crc32(tiny.tokenizer.decode(chunk)) for chunk in chunks]
        archive.original_sha256 = container.original_identity(TEXT)[1]
    broken = _with_stream(container.write(archive, version), 0, backend.encode(symbols, archive.header.top_k + 1),
                          version)
    with pytest.raises(ChecksumError, match=error):
        Decompressor().decompress(broken)


def test_symbol_count_must_match_the_chunk_table(tiny, blob):
    from alphazip.backends import get_backend

    archive = container.read(blob)
    backend = get_backend("brotli")
    symbols = backend.decode(archive.frames[0].streams[0], archive.header.top_k + 1, sum(archive.frames[0].chunk_tokens))
    broken = _with_stream(blob, 0, backend.encode(symbols[:-1], archive.header.top_k + 1))
    with pytest.raises(BadArchiveError, match="symbols, not the"):
        Decompressor().decompress(broken)


def test_header_records_the_schedule(blob, tiny):
    header = container.read(blob).header
    assert (header.context, header.top_k, header.dtype) == (32, 65535, "float32")
    assert tiny.fingerprint.startswith(header.model_fingerprint)  # format 3 records its first 16 digits
    assert header.versions == {} and header.threads == 0  # they do not decide the bits of the exact engine


def test_corrupt_header_json_is_rejected(blob):
    length = struct.unpack("<I", blob[5:9])[0]
    start = blob[:9] + b"{" * length
    with pytest.raises(BadArchiveError, match="header is corrupt"):  # its own CRC-32 is valid
        container.read(start + struct.pack("<I", zlib.crc32(start)) + blob[13 + length:])
