"""The exact engine's arithmetic: accurate enough, and exact by construction where it must be."""

import math

import pytest
import torch
from conftest import kernel_build
from hypothesis import given, settings
from hypothesis import strategies as st

from alphazip.model import exactmath as xm
from alphazip.model import intmm, native
from alphazip.model.intmm import ACTIVATION_LEVELS


def test_exp_is_accurate_in_both_dtypes():
    x = torch.linspace(-80, 80, 100_001, dtype=torch.float64)
    assert float(((xm.exp(x) - torch.exp(x)) / torch.exp(x)).abs().max()) < 1e-14
    x32 = x.float()  # x log2(e) rounded to float32 costs up to |x| 2^-24 in relative error
    assert float(((xm.exp(x32) - torch.exp(x32)) / torch.exp(x32)).abs().max()) < 1e-5


def test_exp2_of_minus_infinity_is_negligible_and_of_zero_is_one():
    out = xm.exp2_(torch.tensor([-math.inf, 0.0, -200.0]))
    assert out[1] == 1.0 and out[0] < 1e-37 and out[2] < 1e-37


def test_gates_and_tanh_follow_torch():
    x = torch.linspace(-30, 30, 10_001)
    torch.testing.assert_close(xm.silu(x), torch.nn.functional.silu(x), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(xm.gelu_tanh(x), torch.nn.functional.gelu(x, approximate="tanh"), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(xm.tanh(x), torch.tanh(x), rtol=1e-5, atol=1e-6)


def test_log_and_sin_cos_are_accurate():
    x = torch.logspace(-5, 7, 1001, dtype=torch.float64)
    torch.testing.assert_close(xm.log(x), torch.log(x), rtol=1e-15, atol=0)
    angles = torch.linspace(0, 32768, 200_001, dtype=torch.float64)
    sin, cos = xm.sin_cos(angles)
    assert float((sin - torch.sin(angles)).abs().max()) < 1e-11
    assert float((cos - torch.cos(angles)).abs().max()) < 1e-11


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, width=32), min_size=1, max_size=300), st.randoms(use_true_random=False))
def test_mean_square_does_not_depend_on_order(values, rng):
    x = torch.tensor(values)
    shuffled = list(values)
    rng.shuffle(shuffled)
    assert torch.equal(xm.mean_square(x[None]), xm.mean_square(torch.tensor(shuffled)[None]))
    assert math.isclose(float(xm.mean_square(x[None])), float((x.double() ** 2).mean()), rel_tol=1e-5, abs_tol=1e-30)


def test_quantize_rows_keeps_the_largest_value_and_zero_rows():
    values, step = xm.quantize_rows(torch.tensor([[0.5, -2.0, 1.0], [0.0, 0.0, 0.0]]), 127)
    assert values[0].tolist() == [32.0, -127.0, 64.0] and values[1].tolist() == [0.0, 0.0, 0.0]
    assert float(step[0]) == pytest.approx(2.0 / 127)


@pytest.mark.parametrize(("rows", "depth", "cols"), [(1, 64, 8), (3, 1536, 40), (130, 2048, 16), (7, 577, 33)])
def test_every_integer_product_is_exact(rows, depth, cols):
    generator = torch.Generator().manual_seed(rows)
    a = torch.randint(-128, 128, (rows, depth), dtype=torch.int8, generator=generator)
    b = torch.randint(-127, 128, (cols, depth), dtype=torch.int8, generator=generator).t()
    for left, right in ((a, b), (torch.full_like(a, -128), torch.full_like(b, -128)), (torch.full_like(a, 127), torch.full_like(b, -127))):
        exact = (left.long() @ right.long()).to(torch.int32)
        assert torch.equal(intmm._fallback_int_mm(left, right), exact)
        assert torch.equal(intmm.int_matmul(left, right), exact)
        if native.available():
            assert torch.equal(native.int_matmul(left, right.t().contiguous()), exact)


@pytest.mark.skipif(not native.available(), reason="the compiled kernels were not built")
@pytest.mark.parametrize("level", [0, 1, 2])
def test_compiled_integer_product_is_exact_in_every_variant(level):
    """The SSE2, AVX2 and AVX-512 tiles, edge tiles and zero padding (depths not a multiple of 32)."""
    generator = torch.Generator().manual_seed(level)
    with kernel_build(level):
        for rows, depth, cols in ((1, 1, 1), (5, 33, 7), (9, 576, 130), (2, 1536, 64)):
            a = torch.randint(-128, 128, (rows, depth), dtype=torch.int8, generator=generator)
            w = torch.randint(-128, 128, (cols, depth), dtype=torch.int8, generator=generator)
            assert torch.equal(native.int_matmul(a, w), (a.long() @ w.long().t()).to(torch.int32))


def packed_products() -> list[str]:
    """The packed products this CPU runs: AMX tiles and/or AVX-512 VNNI (an AMX Xeon has both)."""
    if not native.available():
        return []
    return [native.AMX] * native.amx_available() + [native.VNNI] * (native.variant() == "AVX-512 VNNI")


@pytest.mark.parametrize("product", [native.AMX, native.VNNI])
def test_packed_linear_gives_the_exact_products_bits(product):
    """A linear layer in one call on packed weights (AMX tiles, or VNNI over the same packing)
    against int64 products then dequantize: whole and edge tiles (rows not a multiple of 16,
    depths not of 64 or 4, columns not of 32), random and extreme halves."""
    if product not in packed_products():
        pytest.skip(f"no {product} here")
    chosen = native.packed_product()  # this process's choice, put back after (the C side holds it too)
    native.select_packed(product)
    generator = torch.Generator().manual_seed(64)
    try:
        for rows, depth, cols in ((1, 1, 1), (1, 5, 3), (5, 33, 70), (17, 576, 70), (32, 576, 96), (40, 1536, 130),
                                  (20, 128, 4096), (3, 1538, 33)):
            halves = torch.randint(-128, 128, (2 * rows, depth), dtype=torch.int8, generator=generator)
            w = torch.randint(-127, 128, (cols, depth), dtype=torch.int8, generator=generator)
            scale, steps = torch.rand(cols, generator=generator), torch.rand(rows, 1, generator=generator)
            for left, right in ((halves, w), (torch.full_like(halves, -128), torch.full_like(w, -127)),
                                (torch.full_like(halves, 127), torch.full_like(w, 127))):
                expected = torch.empty(rows, cols)
                native.dequantize((left.long() @ right.long().t()).to(torch.int32), scale, steps, expected)
                assert torch.equal(native.packed_linear(left, native.amx_pack(right), scale, steps, cols), expected)
            x = torch.randn(rows, depth, generator=generator) * 3
            halves, steps = native.quantize_split(x, ACTIVATION_LEVELS)
            packed = native.amx_pack(w)
            assert torch.equal(native.packed_linear_rows(x, ACTIVATION_LEVELS, packed, scale, cols),
                               native.packed_linear(halves, packed, scale, steps, cols))
    finally:
        native.select_packed(chosen)


def test_int_mm_is_used_only_after_its_self_check(monkeypatch):
    monkeypatch.setattr(intmm, "_PATH", None)
    monkeypatch.setattr(native, "_AMX", False)  # a CPU without AMX
    monkeypatch.setattr(torch, "_int_mm", lambda a, b: (a.int() @ b.int()) + 1)  # an overflowing build
    a = torch.ones(4, 8, dtype=torch.int8)
    assert intmm.int_mm_path() == ("compiled kernel" if native.available() else "float32 pieces")
    assert torch.equal(intmm.int_matmul(a, a.t()), torch.full((4, 4), 8, dtype=torch.int32))


@pytest.mark.parametrize(("forced", "path"), [("float32", "float32 pieces"), ("kernel", "compiled kernel"),
                                              ("int_mm", "torch._int_mm")])
def test_the_integer_product_can_be_forced(monkeypatch, forced, path):
    if path == "compiled kernel" and not native.available():
        pytest.skip("the compiled kernels were not built")
    if forced == "int_mm" and not intmm._int_mm_agrees():  # passes over AMX only; not exact here
        path = "compiled kernel" if native.available() else "float32 pieces"
    monkeypatch.setattr(intmm, "_PATH", None)
    monkeypatch.setenv("ALPHAZIP_INT_MM", forced)
    assert intmm.int_mm_path() == path


def test_quant_linear_is_close_to_the_float_product():
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(96, 64, generator=generator)
    x = torch.randn(5, 64, generator=generator) * 3
    layer = intmm.QuantLinear(weight)
    expected = x @ weight.t()
    assert float((layer(x) - expected).abs().max()) < 0.03 * float(expected.abs().max())


@pytest.mark.skipif(not native.available(), reason="the compiled kernels were not built")
def test_compiled_linear_and_gates_give_the_torch_bits(monkeypatch):
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(37, 96, generator=generator) * torch.logspace(-3, 3, 37)[:, None]
    x[3] = 0.0  # a row of zeros
    gate = torch.linspace(-120, 120, 37 * 96).view(37, 96)
    layer = intmm.QuantLinear(torch.randn(50, 96, generator=generator))
    side_by_side = torch.cat([gate, x], dim=1)  # the gate/up product's layout
    compiled = [layer(x), *(native.gate_rows(kind, side_by_side, constants()) for kind in ("silu", "gelu_tanh"))]
    monkeypatch.setattr(native, "_LIBRARY", None)
    assert torch.equal(compiled[0], layer(x))
    assert torch.equal(compiled[1], xm.silu(gate) * x)
    assert torch.equal(compiled[2], xm.gelu_tanh(gate) * x)


def constants() -> torch.Tensor:
    return torch.tensor([xm.LOG2E, xm.GELU_CUBIC, xm.GELU_SCALE, *xm.exp2_coefficients(torch.float32)])


@pytest.mark.skipif(not native.available(), reason="the compiled kernels were not built")
@settings(max_examples=60, deadline=None)
@given(st.integers(1, 700), st.integers(1, 4), st.integers(-40, 40), st.integers(0, 2**31), st.sampled_from([1e-5, 1e-6]))
def test_compiled_rms_norm_gives_the_torch_bits(width, rows, magnitude, seed, eps):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, width, generator=generator) * 2.0 ** magnitude
    x[-1, : width // 2] = 0  # small and zero values beside large ones
    weight = torch.randn(width, generator=generator)
    assert torch.equal(native.rms_norm(x, weight, eps), xm.rms_norm(x, weight, eps))
    assert torch.equal(native.rms_norm(torch.zeros(1, width), weight, eps), xm.rms_norm(torch.zeros(1, width), weight, eps))
