"""xz back-end: LZMA2 at preset 9 extreme (``xz -9e``)."""

import lzma

from ..errors import BadArchiveError
from .base import ByteBackend


class XzBackend(ByteBackend):
    """The serialized symbols as one .xz stream with a CRC64 check."""

    name = "xz"
    library_errors = (lzma.LZMAError, EOFError)

    def compress(self, data: bytes) -> bytes:
        return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64,
                             preset=9 | lzma.PRESET_EXTREME)

    def decompress(self, data: bytes) -> bytes:
        decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        out = decompressor.decompress(data)
        if not decompressor.eof:
            raise BadArchiveError("xz payload is truncated")
        if decompressor.unused_data:
            raise BadArchiveError(f"xz payload has {len(decompressor.unused_data)} trailing bytes")
        return out
