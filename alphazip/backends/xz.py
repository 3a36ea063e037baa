"""xz back-end: LZMA2 at preset 9 extreme (``xz -9e``)."""

import lzma

from ..errors import BadArchiveError
from .base import ByteBackend, expansion_error

MEMORY_LIMIT = 1 << 27  # bytes the decoder may use: twice what preset 9 needs


class XzBackend(ByteBackend):
    """The serialized symbols as one .xz stream with a CRC64 check."""

    name = "xz"
    library_errors = (lzma.LZMAError, EOFError)

    def compress(self, data: bytes) -> bytes:
        return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64,
                             preset=9 | lzma.PRESET_EXTREME)

    def decompress(self, data: bytes, limit: int) -> bytes:
        # xz -9e needs a 64 MiB dictionary: a header asking for more is refused, not allocated.
        decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=MEMORY_LIMIT)
        out = decompressor.decompress(data, max_length=limit + 1)
        if len(out) > limit:
            raise expansion_error(self.name, limit)
        if not decompressor.eof:
            raise BadArchiveError("xz payload is truncated")
        if decompressor.unused_data:
            raise BadArchiveError(f"xz payload has {len(decompressor.unused_data)} trailing bytes")
        return out
