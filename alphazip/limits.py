"""What unpacking an archive may cost this machine: the memory limit and the batch that fits it.

Like ``xz --memlimit``: an archive is input from strangers, and its chunk table decides how much
memory decoding allocates (a KV cache per chunk stepped side by side). Chunks of an invariant
engine decode in any batch, so a tight limit first shrinks the batch; only an archive that needs
more than the limit even one chunk at a time is refused, before anything is allocated.
"""

import os
import re

from .errors import MemoryLimitError

SHARE_OF_MEMORY = 0.75  # the default limit: this much of the machine's (or container's) memory
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def default_memory_limit() -> int:
    """Three quarters of the memory this process may use: physical, or the cgroup's limit if lower."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        with open("/sys/fs/cgroup/memory.max") as handle:
            text = handle.read().strip()
        physical = min(physical, int(text)) if text.isdigit() else physical
    except OSError:
        pass
    return int(physical * SHARE_OF_MEMORY)


def parse_size(text: str) -> int:
    """Bytes from "500M", "2G", "1.5GiB" or a plain number; ValueError otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not match or float(match[1]) <= 0:
        raise ValueError(f"not a size: {text!r} (try 500M or 2G)")
    return int(float(match[1]) * _UNITS[match[2].upper()])


def fitting_batch(model, engine: str, batch: int, longest: int, limit: int) -> int:
    """The largest batch up to ``batch`` whose decoding of chunks of ``longest`` tokens fits in
    ``limit`` bytes; MemoryLimitError when none does (or when ``engine`` cannot change its batch)."""
    per_chunk = model.decoding_memory(engine, longest)
    if per_chunk * batch <= limit:
        return batch
    if model.invariant(engine) and per_chunk <= limit:
        return limit // per_chunk
    needed = per_chunk if model.invariant(engine) else per_chunk * batch
    raise MemoryLimitError(f"archive needs {_mib(needed)} to unpack (chunks of {longest} tokens), more than the "
                           f"memory limit of {_mib(limit)}; raise it with --memlimit")


def check_lockstep(model, engine: str, together: int, longest: int, limit: int) -> None:
    """Chunks that must be stepped together (a group sharing its history) allocate their caches
    at once, whatever the batch: refuse before decoding if they do not fit in ``limit``."""
    needed = model.decoding_memory(engine, longest) * together
    if needed > limit:
        raise MemoryLimitError(f"archive needs {_mib(needed)} to unpack ({together} chunks of {longest} tokens stepped "
                               f"together), more than the memory limit of {_mib(limit)}; raise it with --memlimit")


SYMBOL_BYTES = 16  # per token of a model frame: its int64 symbol, its serialized bytes, their copies


def check_model_frame(tokens: int, limit: int) -> None:
    """A model frame's symbols are decoded whole before any chunk steps: refuse a frame whose
    symbol arrays would not fit in ``limit`` before they are expanded."""
    if tokens * SYMBOL_BYTES > limit:
        raise MemoryLimitError(f"archive holds a frame of {tokens} tokens, whose symbols need "
                               f"{_mib(tokens * SYMBOL_BYTES)}, more than the memory limit of {_mib(limit)}; "
                               "raise it with --memlimit")


def check_raw_frame(size: int, limit: int) -> None:
    """A raw frame is decoded whole: refuse one larger than ``limit`` before expanding it."""
    if size > limit:
        raise MemoryLimitError(f"archive holds a frame of {_mib(size)}, more than the memory limit of {_mib(limit)}; "
                               "raise it with --memlimit")


def _mib(size: int) -> str:
    return f"{size / (1 << 20):,.0f} MiB"
