"""One case under limits: decode a hostile archive and say which outcome it had.

Outcomes, best first: "exact" (decoded to what the forger meant), "parsed" (a reader-only case
read without error), "clean" (one of our errors), then the holes: "lax" (decoded to the original
the forger started from, though the archive contradicts itself and must be refused: a lie or junk
the reader let pass), "wrong" (decoded without error to bytes other than the forger's original),
"other" (any other exception), "hang" (over the time limit), "memory" (over the address-space
limit), "crash" (the worker died).
"""

import contextlib
import inspect
import re
import resource
import signal
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from ..api import Decompressor
from ..report import describe
from ..errors import AlphazipError

OUTCOMES = ("exact", "parsed", "clean", "lax", "wrong", "other", "hang", "memory", "crash")
FAILURES = ("lax", "wrong", "other", "hang", "memory", "crash")
# An allocation that failed, as torch's and C++'s allocators word it (they raise RuntimeError).
_ALLOCATION_FAILED = re.compile(r"can't allocate memory|Cannot allocate memory|out of memory|bad_alloc")
_PACKAGE = Path(__file__).resolve().parents[1]  # alphazip/


@dataclass
class Case:
    """A hostile archive and what decoding it may rightly give."""

    kind: str  # the maker's name in cases.KINDS
    name: str  # what was forged, e.g. "header top_k=1000000000000 on model-huffman"
    blob: bytes
    expected: tuple[bytes, ...]  # the outputs that are right; () when any output is wrong
    override: bool = True  # decode with the test model given (False: whatever model the archive names)
    reader_only: bool = False  # only read and describe the archive (``alphazip info``), decode nothing
    original: bytes | None = None  # what the forger started from (where ``expected`` is (), output
    # equal to it is "lax", not "wrong")


@dataclass
class Result:
    """What one case did."""

    index: int
    kind: str
    name: str
    outcome: str
    error: str = ""  # "Type: message" (or what a wrong output was)
    where: str = ""  # innermost frame of alphazip that raised it: "alphazip/container.py:208 in take"
    trace: str = ""  # the traceback, for failures
    seconds: float = 0.0
    peak_kb: int = 0  # the worker's peak RSS during this case
    growth_kb: int = 0  # peak RSS over the RSS the case started from

    @property
    def signature(self) -> str:
        """What groups failures of one cause: outcome, exception type and where it was raised."""
        return f"{self.outcome}: {self.error.split(':')[0]} at {self.where or '-'}"


class Hang(BaseException):
    """The time limit passed. A BaseException, so that no ``except Exception`` in the reader
    mistakes it for a failure of its own and carries on."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise :class:`Hang` in this (main) thread once ``seconds`` have passed."""
    def alarm(signum, frame):
        raise Hang(f"over the time limit of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def limit_address_space(headroom: int) -> int:
    """Cap this process's address space at its current size plus ``headroom`` bytes, so that a
    runaway allocation raises MemoryError instead of taking the machine; returns the cap."""
    cap = status_kb("VmSize") * 1024 + headroom
    resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
    return cap


def status_kb(field: str) -> int:
    """A size from /proc/self/status in KiB: VmSize, VmRSS or VmHWM (the peak RSS)."""
    with open("/proc/self/status") as status:
        return int(re.search(rf"^{field}:\s+(\d+)", status.read(), re.MULTILINE)[1])


def reset_peak() -> None:
    """Start VmHWM afresh (Linux's clear_refs "5"), so that each case's peak RSS is its own.
    Where that is not allowed the peak stays the worker's so far: growth still shows new highs."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass


def run(case: Case, index: int, model: str, seconds: float, memory_limit: int) -> Result:
    """Decode ``case`` under a time limit and classify what happened (the caller set the
    address-space limit). ``memory_limit`` goes to the Decompressor where it takes one."""
    reset_peak()
    start_kb, start = status_kb("VmRSS"), time.perf_counter()
    result = Result(index, case.kind, case.name, "clean")
    try:
        with time_limit(seconds):
            output = _decode(case, model, memory_limit)
        result.outcome = _judge(case, output)
        if result.outcome == "wrong":
            result.error = f"WrongOutput: decoded {len(output)} bytes, not {[len(e) for e in case.expected]}"
        elif result.outcome == "lax":
            result.error = f"LaxAccept: decoded the original ({len(output)} bytes) from an archive that lies"
    except AlphazipError:
        pass
    except (Hang, Exception) as exc:  # noqa: BLE001 - classifying every exception is the point
        result.outcome = _failure_of(exc)
        result.error = f"{type(exc).__name__}: {str(exc)[:300]}"
        result.where = where_raised(exc)
        result.trace = traceback.format_exc()
    result.seconds = time.perf_counter() - start
    result.peak_kb = status_kb("VmHWM")
    result.growth_kb = max(0, result.peak_kb - start_kb)
    return result


def _decode(case: Case, model: str, memory_limit: int):
    if case.reader_only:
        return describe(case.blob)
    return Decompressor(model=model if case.override else None, **_limit_keyword(memory_limit)).decompress(case.blob)


def _limit_keyword(memory_limit: int) -> dict:
    # The reader may or may not take a memory limit yet; the harness works with both.
    return {"memory_limit": memory_limit} if "memory_limit" in inspect.signature(Decompressor).parameters else {}


def _judge(case: Case, output) -> str:
    if case.reader_only:
        return "parsed"
    if output in case.expected:
        return "exact"
    return "lax" if not case.expected and output == case.original else "wrong"


def _failure_of(exc: BaseException) -> str:
    if isinstance(exc, Hang):
        return "hang"
    if isinstance(exc, MemoryError) or _ALLOCATION_FAILED.search(str(exc)):
        return "memory"
    return "other"


def where_raised(exc: BaseException) -> str:
    """The innermost traceback frame inside alphazip (not the harness). A hang caught after a C
    call returned has none of its own: then the exception it interrupted says where."""
    while exc is not None:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if _inside_alphazip(f.filename)]
        if frames:
            path = Path(frames[-1].filename).resolve().relative_to(_PACKAGE.parent)
            return f"{path}:{frames[-1].lineno} in {frames[-1].name}"
        exc = exc.__context__
    return ""


def _inside_alphazip(filename: str) -> bool:
    path = Path(filename).resolve()
    return path.is_relative_to(_PACKAGE) and not path.is_relative_to(_PACKAGE / "fuzz")
