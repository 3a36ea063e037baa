"""Attention's backward pass in exact arithmetic, for the engine that learns attention as it codes.

For the positions of one chunk that a learning step takes (``learning``), from the gradient at
attention's output, the gradients at the queries, keys and values as the ``qkv`` projection made
them (before RoPE). The softmax is recomputed from the int8 queries the forward pass used and
the int8 cache; keys and values of earlier steps are data (their positions learned then), as in
truncated backpropagation, so keys and values get gradients at this step's positions only.

Every reduction is exact, so the bits depend on nothing but the inputs:

- products multiply integers: a float operand is quantized per row to 15 bits and split into
  int8 halves (the other is the cache's int8 keys or values, or is quantized likewise), and the
  halves' products are exact in float32 pieces (``exact_f32_matmul``);
- the softmax's denominator is a sum of integers (``exact._exact_sum``), the row sums the
  softmax's gradient needs an exact dot product (``exactmath.row_dot``);
- everything else is elementwise, exactly rounded IEEE operations in a fixed order, and a
  query head group's keys and values sum the group inside the integer products.
"""

import torch

from . import exactmath as xm
from . import native
from .exact import SOFTMAX_UNIT, ExactCache, _exact_sum, keys_by_dimension, values_by_position
from .intmm import ACTIVATION_LEVELS, exact_f32_matmul

LN2_F32 = float(torch.tensor(xm.LN2, dtype=torch.float32))  # scores carry log2 e; its inverse, as float32


def attention_backward(engine, cache: ExactCache, index: int, row: int, positions: torch.Tensor,
                       queries: torch.Tensor, query_scale: torch.Tensor, attended: torch.Tensor,
                       gradient: torch.Tensor) -> torch.Tensor:
    """Layer ``index``'s attention for one chunk (row ``row`` of ``cache``) at ``positions`` [n]
    (ascending): from the int8 ``queries`` [n, H, D] and their steps ``query_scale`` [n, H] as the
    forward pass made them (times the score factor), its output ``attended`` [n, H D] and the
    gradient there [n, H D], the gradient at the projected ``qkv`` [n, (H + 2 KV) D]."""
    c = engine.config
    count, kv_heads, dim = len(positions), c.kv_heads, c.head_dim
    group = c.heads // kv_heads
    span = int(positions[-1]) + 1
    span += span % 2  # values are cached two positions to a pair

    def by_head(x: torch.Tensor) -> torch.Tensor:  # [n, H D] -> [KV, G n, D], rows (g, i)
        return x.reshape(count, kv_heads, group, dim).permute(1, 2, 0, 3).reshape(kv_heads, group * count, dim)

    q = by_head(queries).float()
    q_scale = query_scale.reshape(count, kv_heads, group).permute(1, 2, 0).reshape(kv_heads, group * count, 1)
    keys = keys_by_dimension(cache.keys[index][row:row + 1, :, :, :span])[0].float()  # [KV, D, S]
    key_steps = cache.key_steps[index][row, :, None, :span]  # [KV, 1, S]
    values = values_by_position(cache.values[index][row:row + 1, :, :span // 2])[0].float()  # [KV, S, D]
    value_steps = cache.value_steps[index][row, :, None, :span]

    probabilities = _softmax(exact_f32_matmul(q, keys).mul_(key_steps).mul_(q_scale), positions, group,
                             engine._constants)
    out_gradient = by_head(gradient)
    # The softmax's gradient: p (dL/dp - sum_j p_j dL/dp_j), the sum being the gradient's dot
    # product with attention's output.
    probability_gradient = _rows_times(out_gradient, values.transpose(1, 2)).mul_(value_steps)  # [KV, G n, S]
    probability_gradient.sub_(xm.row_dot(out_gradient, by_head(attended)).float())
    score_gradient = probability_gradient.mul_(probabilities)  # at the natural-log scores

    query_gradient = _rows_times(score_gradient * key_steps, keys.transpose(1, 2)).mul_(c.score_scale)
    at_positions = score_gradient[:, :, positions].transpose(1, 2)  # [KV, n (keys), G n (queries)]
    key_gradient = _rows_times(at_positions.mul_((q_scale * LN2_F32).transpose(1, 2)), q)
    value_gradient = _float_product(probabilities[:, :, positions].transpose(1, 2), out_gradient)

    cos, sin = engine._rope_rows(index, 0, span)
    cos, sin = cos[positions], sin[positions]
    query_gradient = _unrotate(query_gradient.reshape(kv_heads, group, count, dim), cos, sin)
    key_gradient = _unrotate(key_gradient, cos, sin)
    return torch.cat([query_gradient.permute(2, 0, 1, 3).reshape(count, -1),
                      key_gradient.transpose(0, 1).reshape(count, -1),
                      value_gradient.transpose(0, 1).reshape(count, -1)], dim=1)


def _softmax(scores: torch.Tensor, positions: torch.Tensor, group: int, constants: torch.Tensor) -> torch.Tensor:
    """Softmax of base-2 ``scores`` [KV, G n, S] in place, each row (g, i) over the keys up to
    ``positions`` [n] (0 beyond): exp2 from exactmath, the denominator counted in units of 2^-20
    as the forward pass does; by the compiled kernel where built (``constants``: the engine's)."""
    if native.available():
        return native.probabilities(scores, (positions + 1).repeat(scores.shape[0] * group), constants)
    visible = (torch.arange(scores.shape[-1])[None, :] <= positions[:, None]).repeat(group, 1)  # [G n, S]
    scores.masked_fill_(~visible, -torch.inf)
    e = xm.exp2_(scores.sub_(scores.amax(-1, keepdim=True))).mul_(visible)
    denominator = _exact_sum(torch.round(e * SOFTMAX_UNIT)) / SOFTMAX_UNIT
    return e.div_(denominator.float())


def _halves(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x`` [..., M, K] quantized per row to 15 bits: highs and lows (value = 256 high + low,
    both of magnitude <= 128, as float32) and the rows' steps [..., M, 1]."""
    values, step = xm.quantize_rows(x, ACTIVATION_LEVELS)
    high = (values + 128.0).mul_(1.0 / 256).floor_()
    return high, values.sub_(high * 256.0), step


def _rows_times(x: torch.Tensor, integers: torch.Tensor) -> torch.Tensor:
    """``x`` [..., M, K] (float32) times ``integers`` [..., K, N] (int8 values as float32), exactly:
    x quantized per row to 15-bit halves."""
    return _halves_times(_halves(x), integers)


def _halves_times(halves: tuple[torch.Tensor, torch.Tensor, torch.Tensor], integers: torch.Tensor) -> torch.Tensor:
    """Rows as :func:`_halves` gives them times ``integers`` [..., K, N], exactly."""
    high, low, step = halves
    products = exact_f32_matmul(high, integers).mul_(256.0).add_(exact_f32_matmul(low, integers))
    return products.float().mul_(step)


def _float_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a`` [..., M, K] times ``b`` [..., K, N], both float32: ``b`` quantized per row to 15-bit
    halves, its steps folded into ``a``'s columns, then ``a`` quantized once, as :func:`_rows_times`."""
    high, low, step = _halves(b)
    scaled = _halves(a * step.transpose(-1, -2))
    return _halves_times(scaled, high).mul_(256.0).add_(_halves_times(scaled, low))


def _unrotate(gradient: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE's transpose: the gradient [..., n, D] at rotated rows -> at the rows before rotation
    (``engine._rotate`` computes x cos + (-x2, x1) sin; its transpose takes g sin to (y2, -y1))."""
    half = gradient.shape[-1] // 2
    turned = gradient * sin
    return (gradient * cos).add_(torch.cat([turned[..., half:], -turned[..., :half]], dim=-1))
