"""Brotli back-end at quality 11, window 24 (``brotli -q 11``)."""

import brotli as _brotli

from ..errors import BadArchiveError
from .base import ByteBackend, expansion_error


class BrotliBackend(ByteBackend):
    """The serialized symbols as one Brotli stream."""

    name = "brotli"
    library_errors = (_brotli.error,)

    def compress(self, data: bytes) -> bytes:
        return _brotli.compress(data, quality=11, lgwin=24)

    def decompress(self, data: bytes, limit: int) -> bytes:
        decompressor = _brotli.Decompressor()
        out = decompressor.process(data, output_buffer_limit=limit + 1)
        if len(out) > limit:
            raise expansion_error(self.name, limit)
        if not decompressor.is_finished():
            raise BadArchiveError("brotli payload is truncated or has trailing bytes")
        return out
