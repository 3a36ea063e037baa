"""The interface every back-end coder implements, and the registry that finds them by name."""

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from ..errors import BadArchiveError
from .serialize import bytes_to_symbols, symbols_to_bytes

_REGISTRY: dict[str, type["Backend"]] = {}


class Backend(ABC):
    """Codes a sequence of integer symbols drawn from ``range(alphabet)`` into bytes and back.

    ``name`` is stable: the same name must always mean the same bitstream, since archives record
    it. A payload is self-delimiting in its symbol count; ``decode`` raises
    :class:`BadArchiveError` on anything it cannot decode, never a third-party exception.
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
    def decode(self, payload: bytes, alphabet: int) -> np.ndarray:
        """Inverse of :meth:`encode`; returns an int64 array."""


class ByteBackend(Backend):
    """A general-purpose byte compressor applied to the serialized symbols."""

    #: Exceptions of the wrapped library that mean "corrupt input".
    library_errors: ClassVar[tuple[type[BaseException], ...]] = ()

    @abstractmethod
    def compress(self, data: bytes) -> bytes:
        """Compress bytes with the wrapped library at its strongest practical setting."""

    @abstractmethod
    def decompress(self, data: bytes) -> bytes:
        """Decompress one whole stream; trailing or missing bytes are an error."""

    def encode(self, symbols: np.ndarray, alphabet: int) -> bytes:
        return self.compress(symbols_to_bytes(symbols, alphabet))

    def decode(self, payload: bytes, alphabet: int) -> np.ndarray:
        try:
            data = self.decompress(payload)
        except self.library_errors as exc:
            raise BadArchiveError(f"{self.name} payload is corrupt: {exc}") from None
        return bytes_to_symbols(data, alphabet)


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
    from . import brotli, gzip, huffman, xz, zstd  # noqa: F401
