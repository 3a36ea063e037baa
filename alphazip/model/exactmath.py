"""Elementwise functions and reductions whose every bit is the same on every CPU.

The exact engine may use only operations whose result IEEE 754 fixes to the last bit: single
elementwise ``+ - * /``, ``sqrt``, rounding, comparisons, max/min, conversions, and sums of
integers that stay exactly representable (so any order gives the same result). It may not use
libm or SLEEF transcendentals (``exp``, ``sin``, ``rsqrt``: their last bit follows the
instruction set), float reductions (their order follows SIMD width and thread split), or fused
operations that some kernels run as one FMA and others as a multiply and an add (``addcmul``,
``lerp``, ``add`` with ``alpha``).

So ``exp2`` is built here from those operations: an exact split into integer and fraction, a
Taylor polynomial in Horner form, and a power of two made from its bits. Every step is one exactly
rounded operation in a fixed order, so the result is a function of the input alone.
"""

import math

import numpy as np
import torch

LN2 = 0.6931471805599453

LOG2E = 1.4426950408889634
# Taylor terms of 2^f = e^(f ln 2) for |f| <= 1/2: enough for full precision in each dtype.
_EXP2_TERMS = {torch.float32: 7, torch.float64: 14}
_EXP2_RANGE = {torch.float32: (-126.0, 127.0), torch.float64: (-1022.0, 1023.0)}  # normal powers of two
PI_PARTS = (1.5707963267341256, 6.077100506506192e-11, 2.0222662487959506e-21)  # pi/2 in three pieces


def power_of_two(k: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """2^k for integer-valued ``k`` in the normal range, built from the exponent bits (exact)."""
    if dtype == torch.float32:
        return ((k.to(torch.int32) + 127) << 23).view(torch.float32)
    return ((k.to(torch.int64) + 1023) << 52).view(torch.float64)


def exp2_coefficients(dtype: torch.dtype) -> list[float]:
    """c_0 .. c_n of 2^f's Taylor polynomial, c_n = (ln 2)^n / n! (each rounded to ``dtype`` where used)."""
    return [LN2 ** n / math.factorial(n) for n in range(_EXP2_TERMS[dtype] + 1)]


def exp2_(y: torch.Tensor) -> torch.Tensor:
    """2^y for float32 or float64 ``y``, overwriting ``y``. Below 2^-126 (float32) the result is
    the smallest normal, so -inf gives a value that every quantization below rounds to 0.

    y = k + f with k = round(y) and |f| <= 1/2 (the subtraction is exact); 2^f by a Taylor
    polynomial in Horner form, 2^k from its bits.
    """
    low, high = _EXP2_RANGE[y.dtype]
    y.clamp_(low, high)
    k = torch.round(y)
    f = y.sub_(k)
    coefficients = exp2_coefficients(y.dtype)
    p = f * coefficients[-1]
    for c in reversed(coefficients[1:-1]):
        p.add_(c).mul_(f)
    return p.add_(1.0).mul_(power_of_two(k, y.dtype))


def exp(x: torch.Tensor) -> torch.Tensor:
    """e^x = 2^(x log2 e); ``x`` is left as it was."""
    return exp2_(x * LOG2E)


def silu(x: torch.Tensor) -> torch.Tensor:
    """x * sigmoid(x), Llama's gate."""
    return x / exp(-x).add_(1.0)


GELU_CUBIC, GELU_SCALE = 0.044715, math.sqrt(2.0 / math.pi)


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELU's tanh approximation, 0.5 x (1 + tanh(u)) = x * sigmoid(2u), Gemma's gate."""
    u = (x + (x * x * x) * GELU_CUBIC) * GELU_SCALE
    return x / exp(u * -2.0).add_(1.0)


def tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh(x) = 1 - 2 / (1 + e^{2x})."""
    return 1.0 - 2.0 / (exp(x * 2.0) + 1.0)


def log(x: torch.Tensor) -> torch.Tensor:
    """Natural log of positive float64 ``x``: ln m + e ln 2 with m in [sqrt(1/2), sqrt(2)),
    ln m = 2 atanh(z) summed as a series (|z| < 0.172, 30 terms are far past float64)."""
    mantissa, exponent = torch.frexp(x)  # x = mantissa * 2^exponent, mantissa in [0.5, 1)
    low = mantissa < math.sqrt(0.5)
    mantissa = torch.where(low, mantissa * 2.0, mantissa)
    exponent = (exponent - low.to(exponent.dtype)).to(x.dtype)
    z = (mantissa - 1.0) / (mantissa + 1.0)
    z2 = z * z
    series = torch.full_like(z, 1.0 / 61)
    for n in range(59, 0, -2):
        series = series * z2 + 1.0 / n
    return (z * series) * 2.0 + exponent * LN2


def sin_cos(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sin and cos of float64 ``x`` (|x| up to ~1e6): x = k pi/2 + r, Taylor series on r."""
    k = torch.round(x * (2.0 / math.pi))
    r = x
    for part in PI_PARTS:
        r = r - k * part
    r2 = r * r
    sin_r, cos_r = torch.full_like(r, 1.0 / math.factorial(23)), torch.full_like(r, 1.0 / math.factorial(22))
    for n in range(21, 0, -2):
        sin_r = sin_r * r2 * -1.0 + 1.0 / math.factorial(n)
        cos_r = cos_r * r2 * -1.0 + 1.0 / math.factorial(n - 1)
    sin_r = sin_r * r
    quadrant = torch.remainder(k, 4.0)
    sin = torch.where(quadrant == 0, sin_r, torch.where(quadrant == 1, cos_r, torch.where(quadrant == 2, -sin_r, -cos_r)))
    cos = torch.where(quadrant == 0, cos_r, torch.where(quadrant == 1, -sin_r, torch.where(quadrant == 2, -cos_r, sin_r)))
    return sin, cos


def mean_square(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x``² over the last dim (float32 in, float64 [..., 1] out), the same in any order.

    Each row is scaled by a power of two that puts its largest value in [2^19, 2^20) and rounded
    to integers; their squares (< 2^40) then sum exactly in float64 for rows of up to 8,192.
    """
    width = x.shape[-1]
    integers, shift = _row_integers(x)
    squares = (integers * integers).sum(-1, keepdim=True)
    return squares * power_of_two(shift * -2, torch.float64) / width


def row_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Sum of ``a`` * ``b`` over the last dim (float32 in, float64 [..., 1] out), the same in any
    order: each row of each rounded to integers as in :func:`mean_square`."""
    a_integers, a_shift = _row_integers(a)
    b_integers, b_shift = _row_integers(b)
    products = (a_integers * b_integers).sum(-1, keepdim=True)
    return products * power_of_two((a_shift + b_shift) * -1, torch.float64)


def _row_integers(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row of float32 ``x`` times 2^shift, rounded (float64 integers below 2^20, whose
    products sum exactly in float64 for rows of up to 8,192), and the shift [..., 1]."""
    assert x.shape[-1] <= 8192, "rows this wide could sum past 2^53"
    largest = x.abs().amax(-1, keepdim=True)
    _, exponent = torch.frexp(largest)  # largest < 2^exponent
    shift = 20 - exponent.clamp(-100, 100)
    return torch.round(x * power_of_two(shift, torch.float32)).double(), shift


def sqrt(x: torch.Tensor) -> torch.Tensor:
    """IEEE's correctly rounded square root. Not ``torch.sqrt``: torch 2.13's CPU kernel misses
    the correctly rounded result in about 0.7 % of float32 and float64 values (SLEEF-style, not
    the instruction), while numpy's is the instruction's."""
    return torch.from_numpy(np.sqrt(x.detach().contiguous().numpy()))


def rms_factor(x: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm's 1 / sqrt(mean(x²) + eps) per row, float32 [..., 1], exactly rounded steps."""
    return (1.0 / sqrt(mean_square(x) + eps)).float()


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """(x / rms(x)) * weight, float32."""
    return (x * rms_factor(x, eps)).mul_(weight)


def quantize_rows(x: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row quantization of float ``x`` to integers in [-levels, levels].

    Returns (integer values, still as ``x``'s float dtype; step [..., 1] float32) with
    x ≈ values * step. The row's largest magnitude becomes ``levels``.
    """
    largest = x.abs().amax(-1, keepdim=True)
    largest = torch.where(largest > 0, largest, torch.ones_like(largest))
    values = (x * (levels / largest)).round_().clamp_(-levels, levels)
    return values, largest / levels
