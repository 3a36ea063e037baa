"""Frames: inputs packed and unpacked piece by piece, so that memory does not follow input size."""

import io

import pytest
from conftest import TINY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphazip import BadArchiveError, Compressor, Decompressor, container, describe
from alphazip.layout import MIN_FRAME_BYTES, input_frames
from alphazip.cli import app

SMALL = {"model": TINY, "context": 16, "batch": 3, "frame_bytes": MIN_FRAME_BYTES}
LINES = b"".join(b"line %d: the quick brown fox, \xc3\xa9t\xc3\xa9\n" % n for n in range(400))  # ~14 KB
BINARY = bytes(range(256)) * 24


def test_pieces_cover_the_input_and_end_after_a_newline():
    pieces = list(input_frames(io.BytesIO(LINES), MIN_FRAME_BYTES))
    assert b"".join(pieces) == LINES and len(pieces) >= 3
    assert all(len(piece) <= MIN_FRAME_BYTES for piece in pieces)
    assert all(piece.endswith(b"\n") for piece in pieces)  # no line, no UTF-8 character is cut


def test_a_piece_without_newline_is_cut_at_the_frame_size():
    pieces = list(input_frames(io.BytesIO(b"x" * 10_000), MIN_FRAME_BYTES))
    assert [len(piece) for piece in pieces] == [4096, 4096, 1808]


@pytest.mark.parametrize("mode", ["model", "raw", "auto"])
def test_many_frames_round_trip(tiny, mode):
    blob = Compressor(mode=mode, **SMALL).compress(LINES)
    archive = container.read(blob)
    assert len(archive.frames) >= 3 and sum(frame.size for frame in archive.frames) == len(LINES)
    assert Decompressor().decompress(blob) == LINES


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=0, max_size=3 * MIN_FRAME_BYTES)
       | st.text(max_size=2 * MIN_FRAME_BYTES).map(lambda text: text.encode("utf-8", "surrogatepass")))
def test_arbitrary_bytes_round_trip_across_frames(tiny, data):
    blob = Compressor(mode="model", **SMALL).compress(data)
    assert Decompressor().decompress(blob) == data


def test_streaming_writes_the_archive_compress_returns(tiny):
    compressor = Compressor(mode="model", **SMALL)
    sink = io.BytesIO()
    read, written = compressor.compress_stream(io.BytesIO(LINES), sink, size=len(LINES))
    assert (read, written) == (len(LINES), len(sink.getvalue()))
    assert sink.getvalue() == compressor.compress(LINES)
    out = io.BytesIO()
    assert Decompressor().decompress_stream(io.BytesIO(sink.getvalue()), out) == len(LINES)
    assert out.getvalue() == LINES


def test_progress_counts_bytes_up_to_the_input_size(tiny):
    seen = []
    Compressor(mode="model", **SMALL).compress(LINES, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (len(LINES), len(LINES))
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_binary_stretch_in_text_gets_a_raw_frame(tiny):
    data = LINES[:8000] + BINARY + LINES[:4000]
    archive = container.read(Compressor(mode="auto", **SMALL).compress(data))
    assert archive.header.mode == "model"  # the first frame is text: the model may be needed
    binary_frames = [frame for frame in archive.frames if frame.size and frame.mode == "raw"]
    assert binary_frames  # (the random tiny model loses on text too, so text frames may be raw as well)
    assert Decompressor().decompress(container.write(archive)) == data


def test_a_lone_raw_frame_gets_a_bare_header(tiny):
    blob = Compressor(mode="auto", **SMALL).compress(BINARY[:3000])
    assert container.read(blob).header.model == "" and describe(blob)["mode"] == "raw"


def test_raw_frames_never_load_the_model(tiny):
    # Several frames the random tiny model loses on: a model header, only raw frames.
    blob = Compressor(mode="auto", **SMALL).compress(b"abc" * 5000)
    archive = container.read(blob)
    assert archive.header.mode == "model" and archive.mode == "raw"
    assert Decompressor(model="/nonexistent/model").decompress(blob) == b"abc" * 5000


def test_each_frame_is_checked(tiny):
    blob = Compressor(mode="model", **SMALL).compress(LINES)
    archive = container.read(blob)
    second = blob.index(container.frame_bytes(archive.frames[1]))
    damaged = bytearray(blob)
    damaged[second + 20] ^= 0x01
    with pytest.raises(BadArchiveError, match="frame fails its CRC-32"):
        Decompressor().decompress(bytes(damaged))


def test_truncation_anywhere_is_an_error(tiny):
    blob = Compressor(mode="model", **SMALL).compress(LINES)
    for cut in range(0, len(blob), max(1, len(blob) // 40)):
        with pytest.raises(BadArchiveError):
            Decompressor().decompress(blob[:cut])
    with pytest.raises(BadArchiveError, match="trailing junk"):
        Decompressor().decompress(blob + b"\x00")


def test_frames_swapped_are_caught(tiny):
    archive = container.read(Compressor(mode="model", **SMALL).compress(LINES))
    archive.frames[0], archive.frames[1] = archive.frames[1], archive.frames[0]
    with pytest.raises(Exception, match="SHA-256"):
        Decompressor().decompress(container.write(archive))


def test_frame_size_below_the_minimum_is_refused():
    with pytest.raises(ValueError, match="frame size"):
        Compressor(frame_bytes=MIN_FRAME_BYTES - 1)


@settings(max_examples=200)
@given(st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_varints_round_trip(value):
    encoded = container.varint(value)
    reader = container._Reader(io.BytesIO(encoded + b"tail"))
    assert reader.varint() == value and len(encoded) == max(1, -(-value.bit_length() // 7))


def test_cli_frame_size_through_pipes(tiny, tmp_path):
    from typer.testing import CliRunner

    runner = CliRunner()
    packed = runner.invoke(app, ["pack", "-", "-c", "-q", "--model", TINY, "--context", "16", "--mode", "model",
                                 "--frame-size", str(MIN_FRAME_BYTES)], input=LINES)
    assert packed.exit_code == 0, packed.output
    assert len(container.read(packed.stdout_bytes).frames) >= 3
    unpacked = runner.invoke(app, ["unpack", "-", "-c", "-q"], input=packed.stdout_bytes)
    assert unpacked.exit_code == 0 and unpacked.stdout_bytes == LINES
    refused = runner.invoke(app, ["pack", "-", "-c", "--frame-size", "100"], input=LINES)
    assert refused.exit_code != 0 and "frame size" in refused.output


class _Trickle(io.RawIOBase):
    """A stream that returns at most 1,000 bytes a read, as a pipe or socket may."""

    def __init__(self, data: bytes):
        self.data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self.data.read(min(size, 1000) if size >= 0 else 1000)


def test_short_reads_lose_nothing(tiny):
    sink = io.BytesIO()
    read, _ = Compressor(mode="raw", frame_bytes=MIN_FRAME_BYTES).compress_stream(_Trickle(LINES), sink)
    assert read == len(LINES) and Decompressor().decompress(sink.getvalue()) == LINES
    assert b"".join(input_frames(_Trickle(LINES), MIN_FRAME_BYTES)) == LINES
