"""One process at a time fills a model's cache folder; the others wait, then find it filled."""

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from ..errors import ModelNotFoundError


@contextmanager
def cache_lock(models: Path, name: str):
    """Hold an exclusive lock on model ``name`` in the cache folder ``models`` until the block ends.

    ``flock`` locks are dropped by the kernel when their holder dies, so a killed fetch never
    leaves the cache locked; the lock file itself stays, empty, for the next fetch to reuse.
    """
    path = models / f".{name}.lock"
    try:
        models.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ModelNotFoundError(f"{path}: cannot lock the model cache: {exc.strerror}") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)  # blocks while another process fetches
        yield
    finally:
        os.close(descriptor)  # closing releases the lock
