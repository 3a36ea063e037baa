"""gzip back-end: DEFLATE at level 9 in a gzip member (``gzip -9``)."""

import gzip
import zlib

from ..errors import BadArchiveError
from .base import ByteBackend, expansion_error


class GzipBackend(ByteBackend):
    """The serialized symbols in one gzip member, ``mtime`` 0 so output is reproducible."""

    name = "gzip"
    library_errors = (OSError, EOFError, zlib.error)

    def compress(self, data: bytes) -> bytes:
        return gzip.compress(data, compresslevel=9, mtime=0)

    def decompress(self, data: bytes, limit: int) -> bytes:
        decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # exactly one gzip member
        out = decompressor.decompress(data, limit + 1)
        if len(out) > limit:
            raise expansion_error(self.name, limit)
        out += decompressor.flush()
        if not decompressor.eof:
            raise BadArchiveError("gzip payload is truncated")
        if decompressor.unused_data:
            raise BadArchiveError(f"gzip payload has {len(decompressor.unused_data)} trailing bytes")
        return out
