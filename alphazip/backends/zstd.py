"""Zstandard back-end at level 19 (``zstd -19``)."""

import zstandard

from ..errors import BadArchiveError
from .base import ByteBackend, expansion_error


class ZstdBackend(ByteBackend):
    """The serialized symbols as one zstd frame with its content size and checksum."""

    name = "zstd"
    library_errors = (zstandard.ZstdError,)

    def compress(self, data: bytes) -> bytes:
        return zstandard.ZstdCompressor(level=19, write_checksum=True).compress(data)

    def decompress(self, data: bytes, limit: int) -> bytes:
        # The frame records its content size (our writer always does, and zstd checks it while
        # decoding): anything larger than the symbols can take, or unknown, is refused up front.
        size = zstandard.frame_content_size(data)
        if size < 0:
            raise BadArchiveError("zstd payload does not record its size")
        if size > limit:
            raise expansion_error(self.name, limit)
        decompressor = zstandard.ZstdDecompressor().decompressobj()
        out = decompressor.decompress(data)
        if not decompressor.eof:
            raise BadArchiveError("zstd payload is truncated")
        if decompressor.unused_data:
            raise BadArchiveError(f"zstd payload has {len(decompressor.unused_data)} trailing bytes")
        return out
