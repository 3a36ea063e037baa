"""Matrix products on integers, exact on every CPU, and linear layers built on them.

Integer sums do not depend on order, blocking, threads or instruction set, so a product of
int8 matrices accumulated in int32 is the same everywhere. Four ways compute it, the first
that is available and exact here being used:

- AMX tiles (``_amx.c``, Xeons since Sapphire Rapids): signed int8 products summed in int32 by
  TDPBSSD, on weights packed once into the tiles' layout; 2.4-3.7 x faster than ``torch._int_mm``
  at packing's shapes (whose oneDNN gemm runs on VNNI, not AMX). Used only where the
  instruction-set setting is AVX-512, so that acting as another CPU leaves it out. Where the CPU
  has AVX-512 VNNI but no AMX, the linear layers run on VNNI over the same packed weights
  (``_vnni.c``), which lets a step's layer run in one call there too (docs/exact-engine.md).
- ``torch._int_mm`` (oneDNN; VNNI or AMX where the CPU has them, 2.4 T int8 ops/s measured on
  an AMX Xeon). Where oneDNN lacks VNNI some builds overflow silently (pytorch issue 136746;
  oneDNN capped at SSE4.1 still does), so it is checked once per process against the float32
  pieces and used only if equal.
- the compiled kernel ``_intmm.c`` (int16 multiply-adds into int32, SSE2, AVX2 or AVX-512):
  several times faster than the float32 pieces where MKL is held to SSE.
- float32 products of the same integer values, the inner dimension cut into pieces of at most
  ``EXACT_F32_DEPTH``: every partial sum is an integer below 2^24, exactly representable, so
  any summation order gives the same value; the pieces are added in float64, also exactly.
  This holds even where a BLAS computes float32 products in bf16 or TF32, since int8 values
  are exact in those formats too. It needs nothing compiled.
"""

import os

import torch

from . import native
from .exactmath import quantize_rows

EXACT_F32_DEPTH = 1024  # 127 * 128 * 1024 < 2^24: inner-dimension piece whose float32 sums are exact
# Activations are quantized per row to 15 bits and split into two int8 halves, value = 256 hi + lo:
# int8 activations alone cost +0.95 % in bits on prose, 15 bits +0.13 % (docs/engine.md).
ACTIVATION_LEVELS = 127 * 256 + 127
# Output columns per integer product: a wide product's int32 result outgrows the caches (the
# default model's LM head, 2,048 x 49,152: 155 ms whole, 54 ms in blocks of 4,096; its 3,072-wide
# gate/up: 7.7 ms whole, 3.6 ms in blocks of 2,048; measured on the AMX Xeon).
COLUMN_BLOCK = 2048

def exact_f32_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for float tensors holding integers of magnitude <= 128 (batched dims allowed),
    as exact integers: float32 when one piece suffices, else float64."""
    depth = a.shape[-1]
    if depth <= EXACT_F32_DEPTH:
        return torch.matmul(a.float(), b.float())
    total = None
    for start in range(0, depth, EXACT_F32_DEPTH):
        stop = start + EXACT_F32_DEPTH
        piece = torch.matmul(a[..., start:stop].float(), b[..., start:stop, :].float()).double()
        total = piece if total is None else total + piece
    return total


def _fallback_int_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return exact_f32_matmul(a, b).to(torch.int32)


def _int_mm_agrees() -> bool:
    """Whether ``torch._int_mm`` gives the exact products here: extremes (overflow), odd shapes,
    transposed weights (the layout used) and random values, against the float32 path."""
    generator = torch.Generator().manual_seed(136746)
    cases = []
    for rows, depth, cols in ((1, 64, 8), (17, 1536, 24), (128, 576, 40)):
        a = torch.randint(-128, 128, (rows, depth), dtype=torch.int8, generator=generator)
        b = torch.randint(-127, 128, (cols, depth), dtype=torch.int8, generator=generator)
        cases += [(a, b), (torch.full_like(a, -128), torch.full_like(b, -127)), (torch.full_like(a, 127), torch.full_like(b, 127))]
    try:
        return all(torch.equal(torch._int_mm(a, b.t()), _fallback_int_mm(a, b.t())) for a, b in cases)
    except (RuntimeError, AttributeError):
        return False


AMX = "AMX tiles"
_PATH: str | None = None  # AMX, "torch._int_mm", "compiled kernel" or "float32 pieces", chosen once


def _choose_path() -> str:
    """The first exact path here; ALPHAZIP_INT_MM=int_mm, =kernel or =float32 passes over the faster
    ones (tests compare them)."""
    forced = os.environ.get("ALPHAZIP_INT_MM")
    if forced == "float32" or (forced == "kernel" and not native.available()):
        return "float32 pieces"
    if forced is None and native.amx_available():
        return AMX
    if forced != "kernel" and _int_mm_agrees():
        return "torch._int_mm"
    return "compiled kernel" if native.available() else "float32 pieces"


def _path() -> str:
    global _PATH
    if _PATH is None:
        _PATH = _choose_path()
    return _PATH


def int_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact ``a @ b`` of int8 matrices [M, K] x [K, N] as int32, by whichever path is exact here."""
    path = _path()
    if path in (AMX, "compiled kernel") and not native.available():  # turned off since (tests do)
        path = "float32 pieces"
    if path == "torch._int_mm":
        return torch._int_mm(a, b)
    # AMX multiplies packed weights (QuantLinear keeps them); a single product takes the compiled kernel.
    if path in (AMX, "compiled kernel") and a.shape[1] <= native.INT_MATMUL_DEPTH:
        return native.int_matmul(a.contiguous(), b.t().contiguous())  # b: a weight's transpose, its rows contiguous
    return _fallback_int_mm(a, b)


def int_mm_path() -> str:
    """Which integer product this process uses: AMX, "torch._int_mm", "compiled kernel" or "float32 pieces"."""
    return _path()


def packed_path() -> str | None:
    """What multiplies the linear layers' packed weights, and a step's one-call layer: AMX tiles or
    AVX-512 VNNI (``native.packed_product``); None where neither is here, or where ALPHAZIP_INT_MM
    forces a product (the tests' comparisons then take ``int_matmul`` and the layer-by-layer path)."""
    if not native.available() or os.environ.get("ALPHAZIP_INT_MM") is not None:
        return None
    return native.packed_product()


class QuantLinear:
    """A linear layer with int8 weights (per output channel) and 15-bit activations (per row).

    y ≈ x @ W.T: both sides quantized symmetrically, the product summed exactly as integers,
    the two activation halves combined and scaled by exactly rounded float32 operations.
    """

    def __init__(self, weight: torch.Tensor):
        w = weight.detach().double()  # [out, in]
        largest = w.abs().amax(1, keepdim=True)
        largest = torch.where(largest > 0, largest, torch.ones_like(largest))
        self.weight_t = torch.round(w * (127.0 / largest)).clamp(-127, 127).to(torch.int8).t()  # [in, out], a view
        self.scale = (largest / 127.0).float().view(-1)  # [out]
        self._amx_weight = None

    def state(self, prefix: str) -> dict[str, torch.Tensor]:
        """The quantized weights ([out, in], as stored) and their scales, named under ``prefix``."""
        return {f"{prefix}weight": self.weight_t.t(), f"{prefix}scale": self.scale}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], prefix: str) -> "QuantLinear":
        linear = cls.__new__(cls)
        linear.weight_t, linear.scale = state[f"{prefix}weight"].t(), state[f"{prefix}scale"]
        linear._amx_weight = None
        return linear

    @property
    def out_features(self) -> int:
        return self.weight_t.shape[1]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` [..., in] float32 -> [..., out] float32."""
        shape = x.shape
        rows = x.reshape(-1, shape[-1])
        if packed_path() is not None:  # quantized, multiplied and scaled in one call
            return native.packed_linear_rows(rows, ACTIVATION_LEVELS, self._packed(), self.scale,
                                             self.out_features).view(*shape[:-1], -1)
        out = torch.empty((len(rows), self.out_features), dtype=torch.float32)
        halves, step = self.halves(rows)
        if native.available():  # the same bits in two passes instead of a dozen
            for block in self._blocks():
                native.dequantize(int_matmul(halves, self.weight_t[:, block]), self.scale[block], step, out[:, block])
        else:
            for block in self._blocks():
                out[:, block] = self.combine(int_matmul(halves, self.weight_t[:, block]), self.scale[block], step)
        return out.view(*shape[:-1], -1)

    def _packed(self) -> torch.Tensor:
        """The weights in AMX tiles' layout, packed on first use: only processes that multiply packed
        weights (AMX or VNNI) pay its memory."""
        if self._amx_weight is None:
            self._amx_weight = native.amx_pack(self.weight_t.t())
        return self._amx_weight

    def _blocks(self) -> list[slice]:
        return [slice(start, start + COLUMN_BLOCK) for start in range(0, self.out_features, COLUMN_BLOCK)]

    @classmethod
    def halves(cls, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``rows`` [M, in] float32 quantized per row to 15 bits, as int8 halves [2M, in] (highs, then
        lows) and steps [M, 1]: by the compiled kernel where built, else in torch (the same bits)."""
        if native.available():
            return native.quantize_split(rows.contiguous(), ACTIVATION_LEVELS)
        return cls.split(*quantize_rows(rows, ACTIVATION_LEVELS))

    @staticmethod
    def split(values: torch.Tensor, step: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows quantized to integers ``values`` [M, in] (as float) -> int8 halves [2M, in] (highs,
        then lows: value = 256 high + low, every step exact), and ``step`` [M, 1] unchanged."""
        rows = len(values)
        high = (values + 128.0).mul_(1.0 / 256).floor_()
        halves = torch.empty((2 * rows, values.shape[1]), dtype=torch.int8)
        halves[:rows] = high
        halves[rows:] = values.sub_(high.mul_(256.0))
        return halves, step

    @staticmethod
    def combine(products: torch.Tensor, scale: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """The halves' int32 products [2M, N] -> float32 [M, N], scaled per column and row."""
        rows = len(products) // 2
        combined = products[:rows].mul(256.0).add_(products[rows:])  # int32 converted to float32, then summed
        return combined.mul_(scale).mul_(step)
