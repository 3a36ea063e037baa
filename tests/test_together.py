"""Several small archives unpacked side by side: the same bytes as one by one, each failure its own."""

import pytest
from conftest import TINY
from typer.testing import CliRunner

from alphazip import api, container, schedule, together
from alphazip.api import Compressor, Decompressor
from alphazip.cli import app
from alphazip.errors import AlphazipError

TEXTS = [b"It was the best of times, it was the worst of times.",
         b"It was the age of wisdom, it was the age of foolishness.\n" * 3,
         b"",
         b"\x00\xff a binary stretch \x01\x02" * 4,
         "Na\u00efve caf\u00e9 \u2014 r\u00e9sum\u00e9s\n".encode() * 5,
         b"short"]
LONG = b"".join(b"line %d of a longer input\n" % n for n in range(400))  # 3 frames of 4 KiB


def packed(data: bytes, backend: str, **settings) -> bytes:
    return Compressor(backend=backend, model=TINY, context=16, batch=2, **settings).compress(data)


@pytest.fixture
def decode_calls(tiny, monkeypatch):
    """How many times chunks were decoded, and how many chunks each time."""
    calls = []
    original = schedule.decode_chunks

    def counting(model, decoder, chunk_tokens, *args, **kwargs):
        calls.append(len(chunk_tokens))
        return original(model, decoder, chunk_tokens, *args, **kwargs)

    monkeypatch.setattr(together, "decode_chunks", counting)
    monkeypatch.setattr(api, "decode_chunks", counting)
    return calls


@pytest.mark.parametrize("backend", ["brotli", "huffman", "rank-ac", "ac", "ac-plain"])
def test_archives_decoded_together_give_what_each_gives_alone(backend, decode_calls):
    blobs = [packed(data, backend, mode="model") for data in TEXTS]
    blobs.append(packed(LONG, backend, mode="model", frame_bytes=4096))  # several frames: unpacked alone
    results = together.unpack_together(Decompressor(), blobs)
    assert results == [*TEXTS, LONG]
    one_frame = [archive.frames for archive in map(container.read, blobs[:-1]) if len(archive.frames) == 1]
    several = container.read(blobs[-1]).frames
    assert len(several) > 1
    # one joint decoding for the one-frame archives, then each frame of the last one alone
    assert decode_calls == [sum(len(frames[0].chunk_tokens) for frames in one_frame),
                            *(len(frame.chunk_tokens) for frame in several)]


@pytest.mark.parametrize("backend", ["brotli", "ac"])
def test_a_corrupt_archive_fails_alone_and_the_others_come_back(backend, tiny):
    blobs = [packed(data, backend, mode="model") for data in TEXTS[:3]]
    damaged = bytearray(blobs[1])
    damaged[-6] ^= 0x10  # inside the payload: only decoding can tell
    blobs[1] = bytes(damaged)
    alone = []
    for blob in blobs:
        try:
            alone.append(Decompressor().decompress(blob))
        except AlphazipError as exc:
            alone.append(exc)
    results = together.unpack_together(Decompressor(), blobs)
    assert results[0] == TEXTS[0] and results[2] == TEXTS[2]
    assert isinstance(results[1], AlphazipError) and str(results[1]) == str(alone[1])


def test_unpacking_several_files_steps_them_together(tmp_path, decode_calls):
    paths = []
    for index, data in enumerate(TEXTS[:2] * 5):
        path = tmp_path / f"f{index}.az"
        path.write_bytes(packed(data + bytes([65 + index]), "brotli", mode="model"))
        paths.append(path)
    (tmp_path / "f3.az").write_bytes(b"AZ not an archive")
    result = CliRunner().invoke(app, ["unpack", "-q", "--model", TINY, *map(str, paths)])
    assert result.exit_code == 1 and "f3.az" in result.stderr and result.stderr.count("alphazip:") == 1
    for index, data in enumerate(TEXTS[:2] * 5):
        if index != 3:
            assert (tmp_path / f"f{index}").read_bytes() == data + bytes([65 + index])
    assert not (tmp_path / "f3").exists()
    assert len(decode_calls) == 2  # groups of 8 archives, the bad one left out of the first
