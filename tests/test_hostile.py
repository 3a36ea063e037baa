"""Archives forged by a stranger, with valid CRCs: each is refused with one clear error before
anything is loaded, fetched or allocated for it."""

import dataclasses
import lzma
import zlib

import brotli
import numpy as np
import pytest
import zstandard
from conftest import TINY

from alphazip import (BadArchiveError, Compressor, Decompressor, MemoryLimitError, ModelNotFoundError,
                      UnsupportedFormatError, container)
from alphazip.lookup import ModelCache
from alphazip.backends import get_backend
from alphazip.model import lm, registry

TEXT = b"Alice was beginning to get very tired of sitting by her sister on the bank.\r\n" * 6


@pytest.fixture(scope="module")
def archive(tiny):
    """A valid archive, with the chunk CRCs that format 2 records (format 3 records one per frame)."""
    packer = Compressor(backend="zstd", mode="model", model=TINY, context=32, batch=2)
    archive = container.read(packer.compress(TEXT))
    archive.frames[0].chunk_crcs = [zlib.crc32(tiny.tokenizer.decode(chunk)) for chunk in packer.chunks_of(TEXT, tiny)]
    return archive


@pytest.fixture
def nothing_loads(monkeypatch):
    """Fail the test if a model is loaded or fetched; decoding uses a cache with nothing in it."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"a model was loaded or fetched: {args}")

    monkeypatch.setattr(lm.LanguageModel, "load", classmethod(refuse))
    monkeypatch.setattr(registry, "pull", refuse)
    return Decompressor(models=ModelCache())


def forged(archive, frames=None, version=2, **header_fields) -> bytes:
    """``archive`` with other header values or frames, written (and CRC'd) by the container itself:
    by default in format 2, whose JSON header and chunk table can say anything."""
    header = dataclasses.replace(archive.header, **header_fields)
    archive = dataclasses.replace(archive, header=header, frames=frames or archive.frames,
                                  original_sha256=container.original_identity(TEXT)[1])
    return container.write(archive, version)


@pytest.mark.parametrize("field, value", [
    ("top_k", 10**12), ("top_k", 0), ("top_k", True), ("top_k", "7"), ("threads", 10**6), ("batch", 0),
    ("batch", -1), ("context", "x"), ("context", 10**9), ("versions", ["torch"]), ("model_fingerprint", "ab"),
    ("probe", 7), ("model", "x" * 100_000)])
def test_hostile_header_values_are_refused_before_loading(archive, nothing_loads, field, value):
    with pytest.raises(BadArchiveError, match="header is corrupt"):
        nothing_loads.decompress(forged(archive, **{field: value}))


def test_unknown_dtype_and_engine_are_named(archive, nothing_loads):
    with pytest.raises(UnsupportedFormatError, match="float16"):
        nothing_loads.decompress(forged(archive, dtype="float16"))
    with pytest.raises(UnsupportedFormatError, match="engine 'cuda-fast'"):
        nothing_loads.decompress(forged(archive, engine="cuda-fast"))


def test_a_deeply_nested_header_is_refused(archive):
    blob = container.write(archive)
    length = int.from_bytes(blob[5:9], "little")
    nested = b'{"mode":"model","backend":"zstd","versions":' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    start = blob[:5] + len(nested).to_bytes(4, "little") + nested
    with pytest.raises(BadArchiveError, match="header is corrupt"):
        container.read(start + zlib.crc32(start).to_bytes(4, "little") + blob[13 + length:])


def _bomb(backend: str) -> bytes:
    """A few KB that expand to 256 MiB of zeros, built without holding the output."""
    zeros = bytes(1 << 20)
    if backend == "gzip":
        packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        return b"".join(packer.compress(zeros) for _ in range(256)) + packer.flush()
    if backend == "xz":
        packer = lzma.LZMACompressor(format=lzma.FORMAT_XZ)
        return b"".join(packer.compress(zeros) for _ in range(256)) + packer.flush()
    if backend == "zstd":
        return zstandard.ZstdCompressor().compress(bytes(256 << 20))
    packer = brotli.Compressor(quality=5)
    return b"".join(packer.process(zeros) for _ in range(256)) + packer.finish()


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("backend", ["gzip", "xz", "zstd", "brotli"])
def test_compression_bombs_stop_at_what_the_frame_can_hold(backend, version):
    # A raw frame of 100 bytes whose payload expands to 256 MiB: refused before it is expanded.
    frame = container.Frame("raw", 100, [], [], [_bomb(backend)], crc=0)
    archive = container.Archive(container.Header(mode="raw", backend=backend), [frame], 100, bytes(32))
    blob = container.write(archive, version)
    with pytest.raises(BadArchiveError, match="expands beyond the 100 bytes"):
        Decompressor().decompress(blob)


def test_a_gzip_bomb_as_model_symbols_is_refused(archive, tiny):
    frame = archive.frames[0]
    bombed = dataclasses.replace(frame, streams=[_bomb("gzip"), frame.streams[1]])
    with pytest.raises(BadArchiveError, match="expands beyond"):
        Decompressor().decompress(forged(archive, frames=[bombed], backend="gzip"))


def test_a_huffman_count_other_than_the_chunk_table_is_refused():
    payload = get_backend("huffman").encode(np.zeros(10**6, dtype=np.int64), 256)
    with pytest.raises(BadArchiveError, match="not the 100 expected"):
        get_backend("huffman").decode(payload, 256, 100)


@pytest.mark.parametrize("tokens, error", [
    ([33], "longer than its context of 32"),  # the header's context is 32
    ([10**7], "token count is out of range"),  # would size a KV cache of hundreds of GB
    ([0, 5], "token count is out of range"),
    ([32] * 20, "tokens in a frame of"),  # every token is at least one byte
])
def test_chunk_tables_that_lie_are_refused_before_loading(archive, nothing_loads, tokens, error):
    frame = dataclasses.replace(archive.frames[0], chunk_tokens=tokens, chunk_crcs=[0] * len(tokens))
    with pytest.raises(BadArchiveError, match=error):
        nothing_loads.decompress(forged(archive, frames=[frame]))


def test_frame_sizes_and_stream_counts_that_lie_are_refused(archive):
    frame = archive.frames[0]
    for lie, error in [(dict(size=1 << 40), "a frame of"), (dict(streams=frame.streams * 2), "holds 4 streams")]:
        with pytest.raises(BadArchiveError, match=error):
            container.read(forged(archive, frames=[dataclasses.replace(frame, **lie)]))


@pytest.mark.parametrize("size, tokens, length, error", [
    (462, 5000, 32, "5000 tokens in a frame of 462 bytes"), (462, 400, 0, "in chunks of 0"),
    (462, 400, 400, "longer than its context of 32"), (1 << 22, 1 << 22, 1, "in chunks of 1")])
def test_compact_chunk_tables_that_lie_are_refused(archive, nothing_loads, size, tokens, length, error):
    # Format 3 records a token count and a chunk length: each lie is refused before the chunk
    # list is made (four million chunks of one token would be a list of four million).
    frame = archive.frames[0]
    body = b"".join([container.varint(n) for n in (size, tokens, length, len(frame.streams[0]))] + frame.streams)
    blob = container.write(archive, 3)
    start = blob.index(container.frame_bytes(frame, 3)) - 1 - len(container.varint(len(container.frame_bytes(frame, 3))))
    forged_blob = (blob[:start] + bytes([2]) + container.varint(len(body)) + body
                   + zlib.crc32(body).to_bytes(4, "little") + frame.crc.to_bytes(4, "little") + b"\x00")
    with pytest.raises(BadArchiveError, match=error):
        nothing_loads.decompress(forged_blob)


def test_a_folder_named_in_the_archive_is_never_loaded(archive, nothing_loads):
    # The header names the tiny model's folder, which holds a loadable model; the fingerprint
    # is no model's, so nothing is loaded and the error says what to pass.
    blob = forged(archive, model=TINY, model_fingerprint="0" * 64)
    with pytest.raises(ModelNotFoundError, match="pass --model"):
        nothing_loads.decompress(blob)


def test_a_built_in_name_with_an_unknown_fingerprint_fetches_nothing(archive, nothing_loads):
    with pytest.raises(ModelNotFoundError, match="neither a built-in"):
        nothing_loads.decompress(forged(archive, model="smollm2-135m", model_fingerprint="1" * 64))


def test_a_built_in_is_chosen_by_its_fingerprint_not_its_name(archive, monkeypatch):
    chosen = []

    def record(spec, dtype, log=None):
        chosen.append(spec)
        raise ModelNotFoundError("stop here")

    cache = ModelCache()
    monkeypatch.setattr(cache, "get", record)
    fingerprint = registry.BUILTIN_MODELS["gemma3-270m"].fingerprints[0]
    with pytest.raises(ModelNotFoundError, match="stop here"):
        Decompressor(models=cache).decompress(forged(archive, model="/etc", model_fingerprint=fingerprint))
    assert chosen == ["gemma3-270m"]


def test_the_loaded_model_is_found_by_fingerprint(archive, tiny):
    # The recorded name is a path that does not exist here: the fingerprint finds the loaded model.
    assert Decompressor().decompress(forged(archive, model="/nowhere/tiny")) == TEXT


def test_a_tight_memory_limit_shrinks_the_batch_and_still_decodes(archive, tiny):
    per_chunk = tiny.decoding_memory(archive.header.engine, 32)
    blob = container.write(archive)
    assert Decompressor(memory_limit=2 * per_chunk).decompress(blob) == TEXT
    with pytest.raises(MemoryLimitError, match="more than the memory limit"):
        Decompressor(memory_limit=per_chunk - 1).decompress(blob)


def test_the_fingerprint_covers_every_field_the_logits_read():
    from tiny import tiny_gemma3, tiny_tokenizer

    def fingerprints(**overrides):
        model, tokenizer = tiny_gemma3(**overrides)
        return lm.LanguageModel.from_hf(model, tokenizer, "g").fingerprints

    base = fingerprints()
    for change in [dict(sliding_window=12), dict(query_pre_attn_scalar=16), dict(final_logit_softcapping=30.0),
                   dict(bos_token_id=tiny_tokenizer().eos_token_id)]:
        edited = fingerprints(**change)
        assert edited[0] != base[0], change  # archives of today refuse the edited config
        assert edited[1] == base[1], change  # the older fingerprint could not see it


def test_a_checkpoint_that_pickles_code_is_refused(tmp_path):
    import torch

    from alphazip.errors import AlphazipError
    from alphazip.finetune import _load_checkpoint

    marker = tmp_path / "ran"
    torch.save({"run": {}, "payload": _RunsCode(str(marker))}, tmp_path / "checkpoint.pt")
    with pytest.raises(AlphazipError, match="not a readable checkpoint"):
        _load_checkpoint(tmp_path / "checkpoint.pt")
    assert not marker.exists()


class _RunsCode:
    """Unpickling this touches a file: what a planted checkpoint could do with weights_only=False."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_model_frame_whose_symbols_exceed_the_memory_limit_is_refused(archive, tiny):
    blob = container.write(archive)
    tokens = sum(archive.frames[0].chunk_tokens)
    assert Decompressor(memory_limit=1 << 30).decompress(blob) == TEXT
    with pytest.raises(MemoryLimitError, match=f"a frame of {tokens} tokens"):
        Decompressor(memory_limit=tokens * 8).decompress(blob)


def test_a_group_stepped_together_needs_its_memory_whatever_the_batch(tiny):
    # ac's chunks share their history in groups that decode together: a limit that fits one
    # chunk but not the group refuses before decoding, and one that fits the group decodes.
    text = TEXT * 4
    blob = Compressor(backend="ac", model=TINY, context=16, mode="model").compress(text)
    chunks = container.read(blob).frames[0].chunk_tokens
    assert len(chunks) > 2
    per_chunk = tiny.decoding_memory(container.read(blob).header.engine, 16)
    with pytest.raises(MemoryLimitError, match="stepped together"):
        Decompressor(model=TINY, memory_limit=2 * per_chunk).decompress(blob)
    assert Decompressor(model=TINY, memory_limit=len(chunks) * per_chunk, batch=1).decompress(blob) == text
