"""The optional compiled attention kernel (``_attention.c``), loaded with ctypes.

It computes what the exact engine's torch path computes, bit for bit, in one pass per query row
over an int8 cache instead of a dozen passes over float32 copies. Where it was not built (no C
compiler at install time), :func:`attend` is None and the torch path runs; ``ALPHAZIP_NATIVE=0``
turns it off (tests compare the two).
"""

import ctypes
import os
from pathlib import Path

import torch

_FOLDER = Path(__file__).parent
KERNEL_EXP2_TERMS = 7  # EXP2_TERMS in _attention.c


def _load():
    if os.environ.get("ALPHAZIP_NATIVE") == "0":
        return None
    for library in sorted(_FOLDER.glob("_attention*.so")):
        try:
            function = ctypes.CDLL(str(library)).alphazip_attend
        except (OSError, AttributeError):
            continue
        function.restype = None
        function.argtypes = [ctypes.c_int] * 8 + [ctypes.c_void_p] * 8 + [ctypes.c_int] * 2
        return function
    return None


_KERNEL = _load()


def available() -> bool:
    """Whether the compiled kernel is in use in this process."""
    return _KERNEL is not None


def _pointer(tensor: torch.Tensor) -> int:
    assert tensor.is_contiguous()
    return tensor.data_ptr()


def attend(q: torch.Tensor, row_scale: torch.Tensor, start: int, window: int | None, keys: torch.Tensor,
           key_steps: torch.Tensor, values: torch.Tensor, value_steps: torch.Tensor,
           constants: torch.Tensor) -> torch.Tensor:
    """Attention output [B, KV, group, T, D] float32 for int8 queries ``q`` [B, KV, group, T, D]
    at positions start.., over the int8 cache: ``keys`` [B, KV, D, L], ``values`` [B, KV, L, D], steps [B, KV, L]."""
    batch, kv_heads, group, count, dim = q.shape
    out = torch.empty(q.shape, dtype=torch.float32)
    terms = len(constants) - 3  # unit, levels, then c_0 .. c_terms
    assert terms == KERNEL_EXP2_TERMS, "the kernel's polynomial has a fixed degree"
    _KERNEL(batch, kv_heads, group, count, dim, keys.shape[3], start, window or 0,
            _pointer(q), _pointer(row_scale), _pointer(keys), _pointer(key_steps), _pointer(values),
            _pointer(value_steps), _pointer(out), _pointer(constants), terms, torch.get_num_threads())
    return out
