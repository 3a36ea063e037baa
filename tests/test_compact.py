"""Format 3: the compact header and frame records, and what they cost a small archive."""

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphazip import BadArchiveError, UnsupportedFormatError, compact, container
from alphazip.container import Archive, Frame, Header
from alphazip.model.registry import BUILTIN_MODELS

SMOLLM2 = BUILTIN_MODELS["smollm2-135m"]
DEFAULT = Header(mode="model", backend="brotli", model="smollm2-135m", model_fingerprint=SMOLLM2.fingerprints[0],
                 dtype="float32", engine="alphazip-exact-1", probe=dict(SMOLLM2.probes)["alphazip-exact-1"],
                 top_k=65535, context=0, batch=1)


def round_trip(header: Header) -> Header:
    return compact.parse_header(compact.header_bytes(header), Header)


def test_the_default_settings_cost_two_bytes():
    assert len(compact.header_bytes(DEFAULT)) == 2  # back-end and mode, built-in model id
    assert round_trip(DEFAULT) == DEFAULT


def test_a_raw_header_is_one_byte():
    raw = Header(mode="raw", backend="xz")
    assert compact.header_bytes(raw) == bytes([compact.BACKEND_IDS.index("xz")])
    assert round_trip(raw) == raw


@given(backend=st.sampled_from(compact.BACKEND_IDS), engine=st.sampled_from(compact.ENGINE_IDS),
       dtype=st.sampled_from(compact.DTYPE_IDS), top_k=st.integers(1, container.MAX_TOP_K),
       context=st.integers(0, container.MAX_CONTEXT), batch=st.integers(1, 64), threads=st.integers(0, 64),
       builtin=st.booleans(), digest=st.binary(min_size=32, max_size=32), probe=st.binary(min_size=32, max_size=32))
@settings(max_examples=200, deadline=None)
def test_every_setting_round_trips(backend, engine, dtype, top_k, context, batch, threads, builtin, digest, probe):
    lockstep = engine == compact.LOCKSTEP_ENGINE
    header = Header(mode="model", backend=backend, model="smollm2-135m" if builtin else "",
                    model_fingerprint=SMOLLM2.fingerprints[0] if builtin else digest.hex()[:16],
                    dtype=dtype, engine=engine, probe="" if lockstep else probe.hex()[:16], top_k=top_k,
                    context=context, batch=batch if lockstep else 1, threads=threads if lockstep else 0)
    assert round_trip(header) == header


@pytest.mark.parametrize("data, error", [
    (bytes([0x0F]), UnsupportedFormatError),  # back-end id 15
    (bytes([0x10 | 0x40, 99]), UnsupportedFormatError),  # built-in model 99
    (bytes([0x10 | 0x40 | 0x20, 1, 9, 0, 1, 0]), UnsupportedFormatError),  # engine id 9
    (bytes([0x10 | 0x40 | 0x20, 1, 0, 7, 1, 0]), UnsupportedFormatError),  # dtype id 7
    (bytes([0x20]), BadArchiveError),  # settings in a raw archive's header
    (bytes([0x10 | 0x40, 1, 0]), BadArchiveError),  # a byte after the last field
    (bytes([0x10, 1, 2, 3]), BadArchiveError),  # a fingerprint prefix cut short
    (bytes([0x10 | 0x40 | 0x20, 1, 0, 0, 0xFF]), BadArchiveError),  # a varint cut short
])
def test_bad_headers_are_refused(data, error):
    with pytest.raises(error):
        compact.parse_header(data, Header)


def test_a_one_frame_model_archive_has_at_most_40_bytes_of_container():
    # 8 chunks of 128 tokens (the default cut of a 4 KiB input), two payloads of any size.
    symbols, escapes = b"s" * 700, b"e"
    frame = Frame("model", 4096, [128] * 7 + [100], [], [symbols, escapes], crc=0x1234)
    blob = container.write(Archive(DEFAULT, [frame], 4096, None))
    assert len(blob) - len(symbols) - len(escapes) <= 40
    read = container.read(blob)
    assert read.header == DEFAULT and read.frames == [frame] and read.original_sha256 is None


def test_archives_of_several_frames_record_the_sha256():
    frames = [Frame("raw", 10, [], [], [b"x" * 12], crc=n) for n in range(3)]
    archive = Archive(Header(mode="raw", backend="gzip"), frames, 30, bytes(range(32)))
    assert container.read(container.write(archive)) == archive


def test_format_3_stores_chunks_of_one_length():
    frame = Frame("model", 100, [10, 20], [], [b"", b""], crc=0)
    with pytest.raises(ValueError, match="one length"):
        container.write(Archive(DEFAULT, [frame], 100, None))
    frame.chunk_crcs = [1, 2]  # format 2 records a CRC-32 per chunk, and chunks of any length
    assert container.read(container.write(Archive(DEFAULT, [frame], 100, bytes(32)), version=2)).frames[0].size == 100


def test_every_truncation_and_flip_of_a_compact_archive_is_refused():
    frame = Frame("model", 300, [128, 128, 44], [], [b"symbols", b"e"], crc=0x89ABCDEF)
    blob = container.write(dataclasses.replace(Archive(DEFAULT, [frame], 300, None)))
    for end in range(len(blob)):
        with pytest.raises(BadArchiveError):
            container.read(blob[:end])
    for at in range(len(blob)):
        broken = bytearray(blob)
        broken[at] ^= 0x01
        try:
            read = container.read(bytes(broken))
        except BadArchiveError:
            continue
        # Not caught by the container only where the frame's data CRC-32 (checked once decoded) is hit.
        assert read.frames[0].crc != frame.crc, at
