"""How an input is laid out in an archive: frames of bytes, each cut into chunks of tokens.

Frames are coded independently (memory is bounded by one frame whatever the input's size);
a frame's tokens are cut into chunks that are coded, and decoded, side by side. Everything
here decides the bitstream, so the reader applies the same rules (or checks them).
"""

from collections.abc import Iterator
from typing import BinaryIO

from .container import Frame, Header
from .errors import BadArchiveError

DEFAULT_CONTEXT = 1024
# By default an input shorter than 8 full chunks is cut into 8 shorter ones (of 128 tokens at
# least): unpacking steps chunks side by side, so 8 chunks of 65 tokens unpack 8 x sooner than
# one of 520 (a step costs about the same for 1 or 8 rows on a CPU).
MIN_CHUNKS, MIN_CONTEXT = 8, 128
# Input bytes packed as one frame. 1 MiB (about 300 k tokens of prose) is large enough that the
# back-ends' cost of starting afresh is small (docs/engine.md, "Memory").
FRAME_BYTES = 1 << 20
MIN_FRAME_BYTES = 1 << 12


def chunk_length(context: int | None, tokens: int) -> int:
    """Tokens per chunk: ``context`` if set, else ``DEFAULT_CONTEXT`` shortened for small inputs.

    A small input is cut into ``MIN_CHUNKS`` chunks of at least ``MIN_CONTEXT`` tokens, trading
    a little ratio (less context per token) for a much quicker unpack.
    """
    if context is not None:
        return context
    return min(DEFAULT_CONTEXT, max(MIN_CONTEXT, -(-tokens // MIN_CHUNKS)))


def check_chunk_lengths(header: Header, frame: Frame) -> None:
    """A chunk holds at most the context the header asked for (or the default's): a longer one
    would size a KV cache the writer never needed."""
    longest = header.context or DEFAULT_CONTEXT
    if any(tokens > longest for tokens in frame.chunk_tokens):
        raise BadArchiveError(f"archive is corrupt (a chunk of {max(frame.chunk_tokens)} tokens, "
                              f"longer than its context of {longest})")


def input_frames(source: BinaryIO, frame_bytes: int) -> Iterator[bytes]:
    """The input in pieces of about ``frame_bytes``, read as they are needed.

    A piece ends after the last newline of its final quarter where there is one, so that frames
    rarely split a line (or a UTF-8 character) and tokenize as the whole text would.
    """
    rest = b""
    while True:
        piece = rest + _read_up_to(source, frame_bytes - len(rest))
        if len(piece) < frame_bytes:  # the source ran out
            if piece:
                yield piece
            return
        cut = piece.rfind(b"\n", frame_bytes - frame_bytes // 4) + 1 or frame_bytes
        yield piece[:cut]
        rest = piece[cut:]


def _read_up_to(source: BinaryIO, size: int) -> bytes:
    """``size`` bytes, fewer only at the end: a raw stream or socket may return short reads."""
    pieces, wanted = [], size
    while wanted and (piece := source.read(wanted)):
        pieces.append(piece)
        wanted -= len(piece)
    return b"".join(pieces)


def marking_last(items: Iterator) -> Iterator[tuple[object, bool]]:
    """(item, whether it is the last one), looking one item ahead."""
    items = iter(items)
    current = next(items, _NOTHING)
    while current is not _NOTHING:
        following = next(items, _NOTHING)
        yield current, following is _NOTHING
        current = following


_NOTHING = object()
