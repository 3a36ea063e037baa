"""Where a command's output goes, written so that a failure leaves nothing behind.

A file is written to a temporary file beside its target and renamed into place only once it
is complete (and, if asked, checked); standard output is written as it comes, since bytes
already sent down a pipe cannot be taken back. A failed write (disk full, a reader that went
away, no permission) becomes one :class:`OutputError` naming the target, never a traceback.
"""

import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from .errors import AlphazipError

STDOUT = "stdout"  # how messages name standard output, as gzip's do


class OutputError(AlphazipError):
    """The output could not be written: disk full, a closed pipe, a missing or read-only folder."""


class GuardedSink:
    """A binary sink whose OS errors become :class:`OutputError` naming ``name``."""

    def __init__(self, raw, name: str):
        self.raw, self.name = raw, name

    def write(self, data: bytes) -> int:
        with _named(self.name):
            return self.raw.write(data)

    def flush(self) -> None:
        with _named(self.name):
            self.raw.flush()


@contextmanager
def safe_output(target: Path | None, force: bool, check: Callable[[Path], None] | None = None):
    """A sink for ``target`` (None: standard output).

    ``check``, if given, is called with the path of the complete temporary file before it is
    committed; whatever it raises discards the output. Standard output with a check is buffered
    in a temporary file, since what reached a pipe cannot be unwritten.
    """
    if target is None and check is None:
        with _stdout() as sink:
            yield sink
        return
    if target is not None and target.exists() and not force:
        raise AlphazipError(f"{target}: already exists (use -f to overwrite)")
    name = str(target) if target is not None else tempfile.gettempdir()  # where the bytes wait
    temporary = None
    try:
        temporary = _temporary(target, name)
        with _file(temporary, name) as sink:
            yield sink
        if check is not None:
            check(temporary)
        _commit(temporary, target, name)
    finally:
        if temporary is not None:
            temporary.unlink(missing_ok=True)  # gone already once renamed into place


def _temporary(target: Path | None, name: str) -> Path:
    """A fresh hidden file beside ``target`` (same file system, so the rename is atomic), or in
    the system's temporary folder for standard output."""
    folder = target.parent if target is not None else None
    prefix = f".{target.name}." if target is not None else ".alphazip-"
    with _named(name):
        handle, path = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".tmp")
    os.close(handle)
    return Path(path)


@contextmanager
def _file(path: Path, name: str):
    """The open temporary file as a guarded sink, flushed to disk on success."""
    with _named(name):
        raw = open(path, "wb")
    try:
        yield GuardedSink(raw, name)
        with _named(name):
            raw.flush()
            os.fsync(raw.fileno())  # a rename of unsynced data can leave an empty file after a crash
    finally:
        try:
            raw.close()
        except OSError:
            pass  # only after another failure: its buffered bytes are discarded with the file


def _commit(temporary: Path, target: Path | None, name: str) -> None:
    if target is not None:
        with _named(name):
            os.replace(temporary, target)
        return
    with _stdout() as sink, open(temporary, "rb") as packed:
        shutil.copyfileobj(packed, sink, 1 << 20)


@contextmanager
def _stdout():
    sink = GuardedSink(sys.stdout.buffer, STDOUT)
    try:
        yield sink
        sink.flush()
    except BaseException:
        _silence_stdout()
        raise


def _silence_stdout() -> None:
    """Point standard output at /dev/null, as Python's docs advise for a closed pipe: otherwise
    the interpreter's own flush at exit fails again and prints a second error."""
    try:
        descriptor = sys.stdout.fileno()
    except (OSError, ValueError):
        return  # not a real file descriptor (a test runner's capture): nothing to flush at exit
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, descriptor)
    os.close(null)


@contextmanager
def _named(name: str):
    """Turn an OS error into a one-line :class:`OutputError` naming the output."""
    try:
        yield
    except OSError as exc:
        raise OutputError(f"{name}: {exc.strerror or exc}") from None
