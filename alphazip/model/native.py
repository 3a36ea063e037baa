"""The exact engine's optional compiled kernels (``_attention.c``, ``_intmm.c``, ``_rows.c``, ``_learning.c``), loaded with ctypes.

Each computes what the torch path computes, bit for bit, in one pass instead of a dozen:
attention per query row over the int8 cache, a linear layer's activation quantization and its
output scaling, RMSNorm, RoPE with the attention inputs' quantization, the MLP's gate, the coder's frequencies, and the int8 matrix product for CPUs
where ``torch._int_mm`` is not exact. Where they were not built (no C compiler at install time),
:func:`available` is False and the torch path runs; ``ALPHAZIP_NATIVE=0`` turns them off (the
tests compare the two).
"""

import ctypes
import os
from pathlib import Path

import torch

_FOLDER = Path(__file__).parent
KERNEL_EXP2_TERMS = 7  # EXP2_TERMS in _attention.c


_INT, _LONG, _FLOAT, _POINTER = ctypes.c_int, ctypes.c_long, ctypes.c_float, ctypes.c_void_p
_SIGNATURES = {
    "alphazip_attend": [_INT] * 8 + [_POINTER] * 8 + [_INT] * 2,
    "alphazip_quantize_split": [_INT, _INT, _POINTER, _FLOAT, _POINTER, _POINTER, _INT],
    "alphazip_dequantize": [_INT, _INT] + [_POINTER] * 4 + [_LONG, _INT],
    "alphazip_frequencies": [_LONG, _INT] + [_POINTER] * 8 + [_INT],
    "alphazip_frequency_find": [_LONG, _INT] + [_POINTER] * 9,
    "alphazip_frequency_at": [_LONG, _INT] + [_POINTER] * 8,
    "alphazip_bias_learn": [_LONG, _INT] + [_POINTER] * 4 + [_FLOAT, _POINTER, _POINTER, _INT],
    "alphazip_bias_add": [_LONG, _INT] + [_POINTER] * 6 + [_INT],
    "alphazip_bias_facts": [_LONG, _INT] + [_POINTER] * 5 + [_FLOAT] + [_POINTER] * 5 + [_INT],
    "alphazip_int_matmul": [_INT] * 3 + [_POINTER] * 3 + [_LONG, _INT],
    "alphazip_tokens_at": [_LONG, _INT, _POINTER, _POINTER, _POINTER, _INT],
    "alphazip_rms_norm": [_LONG, _INT, _POINTER, _POINTER, ctypes.c_double, _POINTER, _INT],
    "alphazip_rope_quantize": [_INT] * 7 + [_POINTER] * 3 + [_FLOAT] + [_POINTER] * 6 + [_INT],
    "alphazip_amx_pack": [_INT, _INT, _POINTER, _POINTER],
    "alphazip_ranks": [_LONG, _INT, _POINTER, _POINTER, _POINTER, _INT],
    "alphazip_packed_linear": [_INT] * 4 + [_POINTER] * 5 + [_INT],
    "alphazip_packed_linear_rows": [_INT] * 4 + [_POINTER, _FLOAT] + [_POINTER] * 3 + [_INT],
    "alphazip_gate_rows": [_LONG, _INT, _INT, _POINTER, _POINTER, _POINTER, _INT],
    "alphazip_loss_gradient": [_LONG, _INT] + [_POINTER] * 5 + [_INT],
    "alphazip_gate_backward": [_LONG, _INT] + [_POINTER] * 4 + [_INT],
    "alphazip_quantize_columns": [_INT, _INT, _POINTER, _FLOAT, _POINTER, _POINTER, _INT],
    "alphazip_adam_step": [_INT, _INT] + [_POINTER] * 9 + [_INT],
    "alphazip_probabilities": [_LONG, _INT] + [_POINTER] * 3 + [_INT],
    "alphazip_llama_layer": [_INT] * 10 + [ctypes.c_double, _FLOAT, _FLOAT] + [_POINTER] * 10 + [_INT, _INT],
}


# The kernels' variant follows torch's own instruction-set choice, which ATEN_CPU_CAPABILITY
# lowers: so the settings that make torch act as another CPU exercise the kernels' variants too.
_ISA_LEVELS = {"DEFAULT": 0, "AVX2": 1, "AVX512": 3}  # 3: AVX-512 with VNNI where the CPU has it, else 2


def _load() -> tuple[ctypes.CDLL | None, int | None]:
    """The built library and the variant it selected (0 baseline x86-64, 1 AVX2, 2 AVX-512, 3 AVX-512 VNNI)."""
    if os.environ.get("ALPHAZIP_NATIVE") == "0":
        return None, None
    for path in sorted(_FOLDER.glob("_attention*.so")):
        try:
            library = ctypes.CDLL(str(path))
            for name, arguments in _SIGNATURES.items():
                function = getattr(library, name)
                function.restype, function.argtypes = None, arguments
            library.alphazip_int_matmul.restype = library.alphazip_attend.restype = _INT
            library.alphazip_packed_linear.restype = library.alphazip_amx_available.restype = _INT
            library.alphazip_packed_linear_rows.restype = library.alphazip_llama_layer.restype = _INT
            library.alphazip_probabilities.restype = _INT
            library.alphazip_amx_packed_size.restype, library.alphazip_amx_packed_size.argtypes = _LONG, [_INT, _INT]
            library.alphazip_select_isa.restype, library.alphazip_select_isa.argtypes = _INT, [_INT]
        except (OSError, AttributeError):
            continue
        return library, library.alphazip_select_isa(_ISA_LEVELS.get(torch.backends.cpu.get_cpu_capability(), 0))
    return None, None


_LIBRARY, _ISA = _load()


def available() -> bool:
    """Whether the compiled kernels are in use in this process."""
    return _LIBRARY is not None


def variant() -> str:
    """Which of the kernels' builds runs here: "x86-64", "AVX2", "AVX-512", "AVX-512 VNNI", or "torch" (not built)."""
    return "torch" if _LIBRARY is None else ("x86-64", "AVX2", "AVX-512", "AVX-512 VNNI")[_ISA]


def _pointer(tensor: torch.Tensor) -> int:
    assert tensor.is_contiguous()
    return tensor.data_ptr()


def attend(q: torch.Tensor, row_scale: torch.Tensor, start: int, window: int | None, keys: torch.Tensor,
           key_steps: torch.Tensor, values: torch.Tensor, value_steps: torch.Tensor,
           constants: torch.Tensor) -> torch.Tensor:
    """Attention output [B, KV, group, T, D] float32 for int8 queries ``q`` [B, KV, group, T, D]
    at positions start.., over the int8 cache in its pair layout: ``keys`` [B, KV, D/2, L, 2],
    ``values`` [B, KV, L/2, D, 2], steps [B, KV, L] (D even, L a multiple of 64)."""
    batch, kv_heads, group, count, dim = q.shape
    out = torch.empty(q.shape, dtype=torch.float32)
    terms = len(constants) - 3  # unit, levels, then c_0 .. c_terms
    if terms != KERNEL_EXP2_TERMS:  # the kernel would refuse and leave ``out`` unwritten
        raise ValueError(f"the kernel's exp2 polynomial has {KERNEL_EXP2_TERMS} terms, not {terms}")
    length = keys.shape[3]
    if dim % 2 or length % 64:
        raise ValueError(f"the kernel needs an even head dimension and whole key blocks, not {dim} and {length}")
    status = _LIBRARY.alphazip_attend(batch, kv_heads, group, count, dim, length, start, window or 0, _pointer(q),
                                      _pointer(row_scale), _pointer(keys), _pointer(key_steps), _pointer(values),
                                      _pointer(value_steps), _pointer(out), _pointer(constants), terms,
                                      torch.get_num_threads())
    if status != 0:
        raise MemoryError("out of memory in the attention kernel")
    return out


def quantize_split(x: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` [M, K] float32 quantized per row to +-``levels`` and split into int8 halves [2M, K]
    (highs, then lows), and the steps [M, 1]: what ``QuantLinear`` does in torch."""
    rows, width = x.shape
    halves = torch.empty((2 * rows, width), dtype=torch.int8)
    steps = torch.empty((rows, 1), dtype=torch.float32)
    _LIBRARY.alphazip_quantize_split(rows, width, _pointer(x), float(levels), _pointer(halves), _pointer(steps),
                                     torch.get_num_threads())
    return halves, steps


def dequantize(products: torch.Tensor, scale: torch.Tensor, steps: torch.Tensor, out: torch.Tensor) -> None:
    """The halves' int32 products [2M, N] combined and scaled per column and row into ``out``
    [M, N] float32, whose rows may be further apart (a block of a wider output's columns)."""
    rows, cols = products.shape[0] // 2, products.shape[1]
    assert out.shape == (rows, cols) and out.stride(1) == 1 and products.is_contiguous()
    _LIBRARY.alphazip_dequantize(rows, cols, _pointer(products), _pointer(scale), _pointer(steps), out.data_ptr(),
                                 out.stride(0), torch.get_num_threads())


INT_MATMUL_DEPTH = 2**31 // 2**14 - 1  # int8 products summed in int32 lanes stay exact up to this depth


def int_matmul(a: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Exact ``a @ weight.T`` as int32 for int8 ``a`` [M, K] and ``weight`` [N, K] (both contiguous,
    K <= INT_MATMUL_DEPTH): what ``torch._int_mm`` computes where it is exact (_intmm.c)."""
    rows, depth = a.shape
    out = torch.empty((rows, len(weight)), dtype=torch.int32)
    if rows and len(weight):
        status = _LIBRARY.alphazip_int_matmul(rows, len(weight), depth, _pointer(a), _pointer(weight), _pointer(out),
                                              out.stride(0), torch.get_num_threads())
        if status != 0:
            raise MemoryError("out of memory in the integer matrix product")
    return out


_AMX: bool | None = None  # whether AMX tiles are usable here, found on first ask


def amx_available() -> bool:
    """Whether AMX tiles multiply here: the CPU has AMX-INT8, the kernel lets us use it, and the
    instruction-set setting is AVX-512 (so that acting as another CPU also leaves them out)."""
    global _AMX
    if _AMX is None:
        _AMX = _LIBRARY is not None and _ISA >= 2 and bool(_LIBRARY.alphazip_amx_available())
    return _AMX


AMX, VNNI = "AMX tiles", "AVX-512 VNNI"
_PRODUCT_IDS = {VNNI: 1, AMX: 2}  # PACKED_VNNI, PACKED_AMX in _layer.c: passed with every call
_PACKED: str | None | bool = False  # the packed product in use (False: not chosen yet)


def packed_product() -> str | None:
    """What multiplies the packed weights here (:func:`packed_linear`, the one-call layer): AMX tiles,
    else AVX-512 VNNI (the same packing: a tile row is VPDPBUSD's operand), else None; only
    where the instruction-set setting allows it."""
    global _PACKED
    if _PACKED is False:
        select_packed(AMX if amx_available() else VNNI if _ISA == 3 else None)
    return _PACKED


def select_packed(product: str | None) -> None:
    """Multiply packed weights with ``product`` (AMX or VNNI, where the CPU has it; tests compare them)."""
    global _PACKED
    _PACKED = product


def _product_id() -> int:
    product = packed_product()
    if product is None:
        raise RuntimeError("no packed product on this CPU")
    return _PRODUCT_IDS[product]


def amx_pack(weight: torch.Tensor) -> torch.Tensor:
    """int8 weight rows [N, K] in the AMX tiles' layout (_amx.c), for :func:`packed_linear`."""
    rows, depth = weight.shape
    weight = weight.contiguous()  # held until the call returns
    packed = torch.empty(_LIBRARY.alphazip_amx_packed_size(rows, depth), dtype=torch.int8)
    _LIBRARY.alphazip_amx_pack(rows, depth, _pointer(weight), _pointer(packed))
    return packed


def packed_linear(halves: torch.Tensor, packed: torch.Tensor, scale: torch.Tensor, steps: torch.Tensor,
                  columns: int) -> torch.Tensor:
    """A quantized linear layer's output [M, columns] float32 from its int8 ``halves`` [2M, K] (highs,
    then lows) and steps [M, 1], the packed weights and their scales: the bits of
    :func:`dequantize` after the halves' products, in one call on :func:`packed_product`."""
    rows, depth = halves.shape[0] // 2, halves.shape[1]
    assert halves.is_contiguous() and scale.is_contiguous() and steps.is_contiguous()
    out = torch.empty((rows, columns), dtype=torch.float32)
    if rows and columns:
        status = _LIBRARY.alphazip_packed_linear(_product_id(), rows, columns, depth, _pointer(halves),
                                                 _pointer(packed), _pointer(scale), _pointer(steps), _pointer(out),
                                                 torch.get_num_threads())
        if status != 0:
            raise MemoryError("out of memory in a packed linear layer")
    return out


def packed_linear_rows(x: torch.Tensor, levels: int, packed: torch.Tensor, scale: torch.Tensor,
                       columns: int) -> torch.Tensor:
    """:func:`packed_linear` of float32 rows ``x`` [M, K] quantized and split as :func:`quantize_split`
    does, in one call."""
    rows, depth = x.shape
    x = x.contiguous()  # held until the call returns
    out = torch.empty((rows, columns), dtype=torch.float32)
    if rows and columns:
        status = _LIBRARY.alphazip_packed_linear_rows(_product_id(), rows, columns, depth, x.data_ptr(), float(levels),
                                                      packed.data_ptr(), _pointer(scale), out.data_ptr(),
                                                      torch.get_num_threads())
        if status != 0:
            raise MemoryError("out of memory in a packed linear layer")
    return out


def layer_weights(tensors: list[torch.Tensor]) -> ctypes.Array:
    """The pointers :func:`llama_layer` reads a layer's weights from (norm1, norm2, then each product's
    packed weights and scales: qkv, o, gate_up, down); the caller keeps ``tensors`` alive."""
    assert all(tensor.is_contiguous() for tensor in tensors)
    return (ctypes.c_void_p * len(tensors))(*(tensor.data_ptr() for tensor in tensors))


def llama_layer(x: torch.Tensor, weights: ctypes.Array, shape: tuple[int, ...], start: int, window: int | None,
                eps: float, levels: int, score_factor: float, cos: torch.Tensor, sin: torch.Tensor,
                cache_layer: tuple[torch.Tensor, ...], attend_constants: torch.Tensor,
                gate_constants: torch.Tensor) -> None:
    """One Llama decoder layer on the residual stream ``x`` [B, T, hidden] (float32, contiguous,
    updated in place) at positions start..start+T-1, its products on :func:`packed_product` (_layer.c): the
    bits of exact.py's layer, in one call. ``shape``: heads, kv_heads, head_dim, intermediate."""
    batch, count, hidden = x.shape
    heads, kv_heads, dim, intermediate = shape
    keys, key_steps, values, value_steps = cache_layer
    if len(attend_constants) - 3 != KERNEL_EXP2_TERMS:
        raise ValueError(f"the kernel's exp2 polynomial has {KERNEL_EXP2_TERMS} terms, not {len(attend_constants) - 3}")
    status = _LIBRARY.alphazip_llama_layer(
        batch, count, hidden, heads, kv_heads, dim, intermediate, keys.shape[3], start, window or 0, float(eps),
        float(levels), score_factor, weights, _pointer(cos), _pointer(sin), _pointer(keys), _pointer(key_steps),
        _pointer(values), _pointer(value_steps), _pointer(attend_constants), _pointer(gate_constants), _pointer(x),
        _product_id(), torch.get_num_threads())
    if status != 0:
        raise MemoryError("out of memory in a decoder layer")


def ranks(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """What ``ranks.ranks_of`` computes for float32 ``logits`` [R, V] and int64 ``tokens`` [R], in one pass a row."""
    logits, tokens = logits.contiguous(), tokens.contiguous()  # held until the call returns
    out = torch.empty(len(tokens), dtype=torch.int64)
    _LIBRARY.alphazip_ranks(len(tokens), logits.shape[1], _pointer(logits), _pointer(tokens), _pointer(out),
                            torch.get_num_threads())
    return out


def tokens_at(logits: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
    """What ``ranks.tokens_at`` computes for float32 ``logits`` [R, V] and int64 ``ranks`` [R] (each
    below V; -1 where not): the token holding each rank, by counting passes over its row."""
    logits, ranks = logits.contiguous(), ranks.contiguous()  # held until the call returns
    out = torch.empty(len(ranks), dtype=torch.int64)
    _LIBRARY.alphazip_tokens_at(len(ranks), logits.shape[1], _pointer(logits), _pointer(ranks), _pointer(out),
                                torch.get_num_threads())
    return out


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``exactmath.rms_norm`` over the last dim of float32 ``x``, in one pass per row."""
    x, weight = x.contiguous(), weight.contiguous()  # held until the call returns
    out = torch.empty_like(x)
    width = x.shape[-1]
    _LIBRARY.alphazip_rms_norm(x.numel() // width if width else 0, width, _pointer(x), _pointer(weight),
                               float(eps), _pointer(out), torch.get_num_threads())
    return out


ROPE_MAX_DIM = 1024  # head dimensions the kernel's row buffer holds (_rows.c)


def rope_quantize(qkv: torch.Tensor, heads: int, kv_heads: int, cos: torch.Tensor, sin: torch.Tensor,
                  score_factor: float, start: int, keys: torch.Tensor, key_steps: torch.Tensor, values: torch.Tensor,
                  value_steps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries and keys of ``qkv`` [B, T, (H + 2 KV) D] rotated by ``cos``/``sin`` [T, D], every row
    quantized to int8; keys and values stored into the cache at positions start.. (its pair layout:
    ``keys`` [B, KV, D/2, L, 2], ``values`` [B, KV, L/2, D, 2], steps [B, KV, L]). Returns the queries [B, H, T, D] and their steps
    times ``score_factor`` [B, H, T]: what exact.py's torch path computes."""
    batch, count, _ = qkv.shape
    dim = keys.shape[2] * 2
    qkv, cos, sin = qkv.contiguous(), cos.contiguous(), sin.contiguous()  # held until the call returns
    q = torch.empty((batch, heads, count, dim), dtype=torch.int8)
    q_scale = torch.empty((batch, heads, count), dtype=torch.float32)
    _LIBRARY.alphazip_rope_quantize(batch, count, heads, kv_heads, dim, keys.shape[3], start, _pointer(qkv),
                                    _pointer(cos), _pointer(sin), score_factor, _pointer(q),
                                    _pointer(q_scale), _pointer(keys), _pointer(key_steps), _pointer(values),
                                    _pointer(value_steps), torch.get_num_threads())
    return q, q_scale


def gate_rows(kind: str, gate_up: torch.Tensor, constants: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up or gelu_tanh(gate) * up, elementwise as exactmath computes them, on rows
    holding gate and up side by side (the gate/up product's output): [..., 2 W] -> [..., W]."""
    gate_up = gate_up.contiguous()  # held until the call returns
    width = gate_up.shape[-1] // 2
    out = torch.empty((*gate_up.shape[:-1], width), dtype=torch.float32)
    _LIBRARY.alphazip_gate_rows(out.numel() // width if width else 0, width, 0 if kind == "silu" else 1,
                                gate_up.data_ptr(), out.data_ptr(), _pointer(constants), torch.get_num_threads())
    return out


FREQUENCY_BLOCK = 512  # in _attention.c


def frequency_facts(logits: torch.Tensor, tokens: torch.Tensor, constants: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """What ``coding.frequencies`` computes for ``logits`` [R, V] float32 and ``tokens`` [R] int64
    (each < V): the frequencies before each token, its own, and the row's total, [R] int64 each."""
    rows, width = logits.shape
    cums, freqs, totals = (torch.empty(rows, dtype=torch.int64) for _ in range(3))
    _LIBRARY.alphazip_frequencies(rows, width, _pointer(logits), _pointer(tokens), _pointer(cums), _pointer(freqs),
                                  _pointer(totals), None, None, _pointer(constants), torch.get_num_threads())
    return cums, freqs, totals


def frequency_blocks(logits: torch.Tensor, constants: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each row's total [R], largest logit [R] and frequency sums per FREQUENCY_BLOCK ids [R, blocks]."""
    rows, width = logits.shape
    totals, tops = torch.empty(rows, dtype=torch.int64), torch.empty(rows, dtype=torch.float32)
    blocks = torch.empty((rows, -(-width // FREQUENCY_BLOCK)), dtype=torch.int64)
    _LIBRARY.alphazip_frequencies(rows, width, _pointer(logits), None, None, None, _pointer(totals), _pointer(tops),
                                  _pointer(blocks), _pointer(constants), torch.get_num_threads())
    return totals, tops, blocks


def frequency_find(logits: torch.Tensor, tops: torch.Tensor, blocks: torch.Tensor, rows: torch.Tensor,
                   targets: torch.Tensor, constants: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """For each query: the token of row ``rows[q]`` whose span holds ``targets[q]`` (V for the
    escape), its cumulative frequency and its own."""
    width, count = logits.shape[1], len(rows)
    tokens, cums, freqs = (torch.empty(count, dtype=torch.int64) for _ in range(3))
    _LIBRARY.alphazip_frequency_find(count, width, _pointer(logits), _pointer(tops), _pointer(blocks), _pointer(rows),
                                     _pointer(targets), _pointer(tokens), _pointer(cums), _pointer(freqs),
                                     _pointer(constants))
    return tokens, cums, freqs


def bias_add(logits: torch.Tensor, logit_rows: torch.Tensor, bias: torch.Tensor,
             which: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``logit_rows`` of ``logits`` [N, V] plus rows ``which`` of ``bias`` [chunks, V], [R, V],
    and each sum's argmax [R] (the first largest)."""
    rows, width = len(logit_rows), logits.shape[-1]
    out, first = torch.empty((rows, width), dtype=torch.float32), torch.empty(rows, dtype=torch.int64)
    _LIBRARY.alphazip_bias_add(rows, width, _pointer(logits), _pointer(logit_rows), _pointer(bias), _pointer(which),
                               _pointer(out), _pointer(first), torch.get_num_threads())
    return out, first


def bias_facts(logits: torch.Tensor, logit_rows: torch.Tensor, bias: torch.Tensor, which: torch.Tensor,
               tokens: torch.Tensor, rate: float, constants: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Packing's step in one call: ``bias_add``'s rows, ``frequency_facts`` of ``tokens`` under them
    (of id 0 for a token >= V) and their argmax, then ``bias_learn`` on ``bias`` in place.
    Returns cums, freqs, totals and argmaxes, [R] int64 each."""
    rows, width = len(logit_rows), logits.shape[-1]
    cums, freqs, totals, first = (torch.empty(rows, dtype=torch.int64) for _ in range(4))
    _LIBRARY.alphazip_bias_facts(rows, width, _pointer(logits), _pointer(logit_rows), _pointer(bias), _pointer(which),
                                 _pointer(tokens), rate, _pointer(cums), _pointer(freqs), _pointer(totals),
                                 _pointer(first), _pointer(constants), torch.get_num_threads())
    if rows and int(totals[0]) < 0:
        raise MemoryError("no memory for a row of the coder's bias")
    return cums, freqs, totals, first


def bias_learn(biased: torch.Tensor, totals: torch.Tensor, which: torch.Tensor, tokens: torch.Tensor, rate: float,
               bias: torch.Tensor, constants: torch.Tensor) -> None:
    """``coding.bias``'s learning step in place on ``bias`` [chunks, V]: row ``which[r]`` from
    ``tokens[r]`` (< V) under ``biased`` [R, V] float32, whose frequencies total ``totals[r]``."""
    rows, width = biased.shape
    _LIBRARY.alphazip_bias_learn(rows, width, _pointer(biased), _pointer(totals), _pointer(which), _pointer(tokens),
                                 rate, _pointer(bias), _pointer(constants), torch.get_num_threads())


def frequency_at(logits: torch.Tensor, tops: torch.Tensor, blocks: torch.Tensor, rows: torch.Tensor,
                 ids: torch.Tensor, constants: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query: row ``rows[q]``'s cumulative frequency before ``ids[q]`` (< V) and its own."""
    width, count = logits.shape[1], len(rows)
    cums, freqs = torch.empty(count, dtype=torch.int64), torch.empty(count, dtype=torch.int64)
    _LIBRARY.alphazip_frequency_at(count, width, _pointer(logits), _pointer(tops), _pointer(blocks), _pointer(rows),
                                   _pointer(ids), _pointer(cums), _pointer(freqs), _pointer(constants))
    return cums, freqs


def adam_step(products: torch.Tensor, row_steps: torch.Tensor, col_steps: torch.Tensor, constants: torch.Tensor,
              master: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One Adam step of ``master`` [out, in] (and its moments, in place) from a gradient's int32
    outer-product sums and steps; the int8 weights [out, in] and scales [out] requantized from it:
    the bits of ``learning._Adam``'s torch path."""
    rows, cols = master.shape
    weight = torch.empty((rows, cols), dtype=torch.int8)
    scale = torch.empty(rows, dtype=torch.float32)
    _LIBRARY.alphazip_adam_step(rows, cols, _pointer(products), _pointer(row_steps), _pointer(col_steps),
                                _pointer(constants), _pointer(master), _pointer(first), _pointer(second),
                                _pointer(weight), _pointer(scale), torch.get_num_threads())
    return weight, scale


def loss_gradient(logits: torch.Tensor, targets: torch.Tensor, scale: torch.Tensor, constants: torch.Tensor
                  ) -> torch.Tensor:
    """(softmax - one-hot) of ``logits`` [R, V] at ``targets`` [R] times ``scale`` [V], float32 [R, V],
    the softmax from the coder's integer frequencies (``constants`` as for them): the bits of
    ``learning``'s torch path."""
    rows, width = logits.shape
    out = torch.empty((rows, width), dtype=torch.float32)
    _LIBRARY.alphazip_loss_gradient(rows, width, _pointer(logits), _pointer(targets), _pointer(scale), _pointer(out),
                                    _pointer(constants), torch.get_num_threads())
    return out


def gate_backward(gate_up: torch.Tensor, gradient: torch.Tensor, constants: torch.Tensor) -> torch.Tensor:
    """The gradient [R, 2 I] at SiLU's gate and up side by side from ``gradient`` [R, I] at
    silu(gate) * up: the bits of ``learning``'s torch path."""
    rows, width = gradient.shape
    gate_up, gradient = gate_up.contiguous(), gradient.contiguous()  # held until the call returns
    out = torch.empty((rows, 2 * width), dtype=torch.float32)
    _LIBRARY.alphazip_gate_backward(rows, width, gate_up.data_ptr(), gradient.data_ptr(), out.data_ptr(),
                                    _pointer(constants), torch.get_num_threads())
    return out


def probabilities(scores: torch.Tensor, visible: torch.Tensor, constants: torch.Tensor) -> torch.Tensor:
    """Learning's softmax of base-2 ``scores`` [..., S] in place, each row over its first
    ``visible`` [rows] (int32) keys, 0 beyond: the bits of ``attention_backward``'s torch path."""
    width = scores.shape[-1]
    if len(constants) - 3 != KERNEL_EXP2_TERMS:
        raise ValueError(f"the kernel's exp2 polynomial has {KERNEL_EXP2_TERMS} terms, not {len(constants) - 3}")
    visible = visible.to(torch.int32).contiguous()  # held until the call returns
    if _LIBRARY.alphazip_probabilities(scores.numel() // width, width, _pointer(scores), visible.data_ptr(),
                                       _pointer(constants), torch.get_num_threads()):
        raise MemoryError("out of memory in the probabilities kernel")
    return scores


def quantize_columns(x: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``exactmath.quantize_rows(x.T, levels)`` as int8 [C, R] and steps [C] for ``x`` [R, C]
    (levels <= 127), without making the transpose."""
    rows, cols = x.shape
    x = x.contiguous()  # held until the call returns
    out = torch.empty((cols, rows), dtype=torch.int8)
    steps = torch.empty(cols, dtype=torch.float32)
    _LIBRARY.alphazip_quantize_columns(rows, cols, x.data_ptr(), float(levels), out.data_ptr(), steps.data_ptr(),
                                       torch.get_num_threads())
    return out, steps
