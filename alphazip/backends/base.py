"""The interface every back-end coder implements, and the registry that finds them by name."""

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from ..errors import BadArchiveError
from .serialize import bytes_to_symbols, serialized_limit, symbols_to_bytes

_REGISTRY: dict[str, type["Backend"]] = {}


class Backend(ABC):
    """Codes a sequence of integer symbols drawn from ``range(alphabet)`` into bytes and back.

    ``name`` is stable: the same name must always mean the same bitstream, since archives record
    it. ``decode`` is told how many symbols to expect and spends no more than they need (a
    payload is input from strangers: a few KB must not expand to gigabytes); it raises
    :class:`BadArchiveError` on anything else, never a third-party exception.
    """

    name: ClassVar[str]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            if cls.name in _REGISTRY:
                raise ValueError(f"back-end name {cls.name!r} registered twice")
            _REGISTRY[cls.name] = cls

    @abstractmethod
    def encode(self, symbols: np.ndarray, alphabet: int) -> bytes:
        """Code ``symbols`` (ints in ``range(alphabet)``) into a payload."""

    @abstractmethod
    def decode(self, payload: bytes, alphabet: int, count: int) -> np.ndarray:
        """Inverse of :meth:`encode`: exactly ``count`` symbols, as an integer array (uint8 for
        alphabets of at most 256, else int64)."""


class ByteBackend(Backend):
    """A general-purpose byte compressor applied to the serialized symbols."""

    #: Exceptions of the wrapped library that mean "corrupt input".
    library_errors: ClassVar[tuple[type[BaseException], ...]] = ()

    @abstractmethod
    def compress(self, data: bytes) -> bytes:
        """Compress bytes with the wrapped library at its strongest practical setting."""

    @abstractmethod
    def decompress(self, data: bytes, limit: int) -> bytes:
        """Decompress one whole stream of at most ``limit`` bytes; trailing or missing bytes, or
        more output than ``limit``, are an error (raised before the excess is allocated)."""

    def encode(self, symbols: np.ndarray, alphabet: int) -> bytes:
        return self.compress(symbols_to_bytes(symbols, alphabet))

    def decode(self, payload: bytes, alphabet: int, count: int) -> np.ndarray:
        try:
            data = self.decompress(payload, serialized_limit(count, alphabet))
        except self.library_errors as exc:
            raise BadArchiveError(f"{self.name} payload is corrupt: {exc}") from None
        symbols = bytes_to_symbols(data, alphabet)
        if len(symbols) != count:
            raise BadArchiveError(f"{self.name} payload holds {len(symbols)} symbols, not the {count} expected")
        return symbols


def expansion_error(name: str, limit: int) -> BadArchiveError:
    """The error of a payload that decompresses to more than its symbols can take."""
    return BadArchiveError(f"{name} payload expands beyond the {limit} bytes its symbols can take")


def get_backend(name: str) -> Backend:
    """The back-end registered as ``name``; ValueError naming the known ones if there is none."""
    _load_builtin_backends()
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise ValueError(f"unknown back-end {name!r}; known: {', '.join(backend_names())}") from None


def backend_names() -> list[str]:
    """Names of every registered back-end, in registration order."""
    _load_builtin_backends()
    return list(_REGISTRY)


def _load_builtin_backends() -> None:
    # Importing a module registers its back-end; one file per coder, nothing else to edit.
    from . import brotli, gzip, huffman, rank_ac, xz, zstd  # noqa: F401
