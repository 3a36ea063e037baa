"""Back-end coders, one module each, found by name through the registry in :mod:`.base`."""

from .base import Backend, ByteBackend, backend_names, get_backend

__all__ = ["Backend", "ByteBackend", "backend_names", "get_backend"]
