"""Compression bombs: small payloads, valid in a back-end's format, that expand to gigabytes.

Each is made with the library's streaming compressor fed 1 MiB of zeros at a time, so making
one never holds its output. Zero bytes are symbol 0 in both symbol layouts (u8 and LEB128), so
a bomb is a valid stream of symbols for a raw frame and for either stream of a model frame.
DEFLATE cannot expand more than about 1,000 times, so the gzip bomb is the largest (0.5 MB); the
others are a few hundred KB at most.
"""

import lzma
import zlib
from functools import cache

import brotli
import zstandard

from . import forgery

_MIB = 1 << 20
# What each bomb expands to: enough that holding it, or its symbols as int64, exceeds the
# harness's 2 GiB address-space headroom; each takes a second or two to make.
EXPANDED = {"gzip": 512 * _MIB, "xz": 512 * _MIB, "brotli": 2048 * _MIB, "zstd": 4096 * _MIB}
RANK_AC_CLAIM = 1 << 28  # symbols a rank-ac bomb claims (the reader must refuse before allocating)
HUFFMAN_SYMBOLS = 1 << 24  # 2 MiB of one-bit codes: seconds of pure-Python decoding


@cache
def bomb(backend: str, alphabet: int = 256) -> bytes:
    """A ``backend`` payload of ``EXPANDED[backend]`` zero bytes; for ``huffman``, whose width of
    a new symbol depends on the alphabet, ``HUFFMAN_SYMBOLS`` zero symbols of ``alphabet``."""
    if backend == "huffman":
        return huffman_zeros(HUFFMAN_SYMBOLS, alphabet)
    if backend == "rank-ac":  # its count comes first: a few coder bytes that claim 2^28 symbols
        return forgery.leb128(RANK_AC_CLAIM) + bytes(64)
    return zeros(backend, EXPANDED[backend])


@cache
def zeros(backend: str, size: int) -> bytes:
    """A ``backend`` payload of ``size`` zero bytes, made 1 MiB at a time."""
    if backend == "huffman":
        return huffman_zeros(size, 256)
    feed, finish = _compressors(size)[backend]()
    pieces = [feed(bytes(_MIB)) for _ in range(size // _MIB)]
    return b"".join(pieces) + feed(bytes(size % _MIB)) + finish()


def _compressors(size: int) -> dict:
    """Per back-end, a function giving a fresh (feed, finish) pair in the back-end's format, for
    ``size`` bytes in all (zstd records it in the frame, as the writer does: the reader
    refuses a zstd payload that does not say its size)."""
    def gzip():
        c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # one gzip member
        return c.compress, c.flush

    def xz():
        c = lzma.LZMACompressor(format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=0)
        return c.compress, c.flush

    def brotli_():
        c = brotli.Compressor(quality=5, lgwin=24)
        return c.process, c.finish

    def zstd():
        c = zstandard.ZstdCompressor(level=3).compressobj(size=size)
        return c.compress, c.flush

    return {"gzip": gzip, "xz": xz, "brotli": brotli_, "zstd": zstd}


def huffman_zeros(count: int, alphabet: int = 1 << 16) -> bytes:
    """A ``huffman`` payload of ``count`` zero symbols, written by the rule rather than the coder
    (which would take minutes): the first symbol is sent whole (the NYT's path is empty), every
    later 0 is its leaf's one-bit path "1" (the leaf sits in slot 1, the right child)."""
    width = (alphabet - 1).bit_length()
    bits = width + count - 1
    value = ((1 << (count - 1)) - 1) << (-bits % 8)  # the ones, then zero padding to a whole byte
    return forgery.leb128(count) + value.to_bytes((bits + 7) // 8, "big")
