"""Token coders by the name archives record: every byte back-end's rank coder, and ``ac``."""

from ..backends import backend_names
from .arithmetic import (ArithmeticCoder, PlainArithmeticCoder, UnbiasedArithmeticCoder, UnrecallingArithmeticCoder,
                         UnsharedArithmeticCoder)
from .base import FrameDecoder, FrameEncoder, TokenCoder
from .ranked import RankCoder

__all__ = ["FrameDecoder", "FrameEncoder", "TokenCoder", "RankCoder", "ArithmeticCoder", "get_coder", "coder_names"]

_ARITHMETIC = {coder.name: coder for coder in (ArithmeticCoder, UnrecallingArithmeticCoder, UnsharedArithmeticCoder,
                                                  UnbiasedArithmeticCoder, PlainArithmeticCoder)}


def coder_names() -> list[str]:
    """What ``--backend`` accepts: the byte back-ends (coding ranks), then the arithmetic coders."""
    return backend_names() + list(_ARITHMETIC)


def get_coder(name: str) -> TokenCoder:
    """The token coder ``name``; ValueError naming the known ones if there is none."""
    if name in _ARITHMETIC:
        return _ARITHMETIC[name]()
    if name in backend_names():
        return RankCoder(name)
    raise ValueError(f"unknown back-end {name!r}; known: {', '.join(coder_names())}")
