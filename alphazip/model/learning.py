"""Learning from the text as it is coded ("dynamic evaluation"), exact on every CPU.

A group's chunks are coded in lockstep, so after every ``EVERY`` positions both sides know the
same tokens: the model then takes one Adam step on their loss, and what follows is coded by a
model that has read what came before. The decoder must learn the very same weights, bit for
bit, so the learning step keeps the exact engine's rules (``exactmath``):

- the gradient flows from the loss through the head, the final norm, each block's MLP and the
  residual stream, and what learns is every block's attention output projection and MLP;
  ``alphazip-exact-learn-2`` also learns the output embedding, untied from the input one;
  ``alphazip-exact-learn-1`` and ``-2`` cut attention's inputs from the graph, so there is no
  softmax to differentiate, while ``alphazip-exact-learn-3`` passes the gradient through
  attention within the step's positions (``attention_backward``) and learns ``qkv`` too;
  ``alphazip-exact-learn-4`` learns what ``-3`` does, with a step size that shrinks as the steps
  add up (:meth:`Learning.step_size`): large while the model has most to learn of the text,
  small once it has read much of it;
- every product is an integer product of quantized values (rows per position for the gradient
  passed down, channels over all positions for a weight's gradient), every reduction a sum of
  integers;
- Adam runs on float32 master weights (the model's own float weights at first) in exactly
  rounded elementwise operations in a fixed order, and the int8 weights are requantized from the
  masters after each step.

Rows are gathered as the positions are coded and are independent of the order and batch they
come in (every quantization is per row, or per channel over the whole set), so a decoder
stepping one position at a time learns what the encoder learned from whole segments.
"""

import copy
import math
from dataclasses import dataclass

import torch

from . import exactmath as xm
from . import native
from .attention_backward import attention_backward
from .exact import ExactCache, ExactEngine, _rms_norm
from .intmm import QuantLinear, int_matmul
from ..coding.frequencies import CONSTANTS, frequencies


@dataclass(frozen=True)
class Learning:
    """What an engine learns beyond every block's o and MLP, and how fast."""

    head: bool  # the output embedding, untied from the input one
    attention: bool  # attention's qkv, the gradient passing through attention
    rate: float = 1e-4  # Adam's step size at the first step
    decay: float = 0.0  # the step size at step t (from 0) is rate / (1 + decay t)

    def step_size(self, step: int) -> float:
        """Adam's step size at ``step``: exactly rounded double operations, the same everywhere."""
        return self.rate / (1.0 + self.decay * step)


# The learning engines by the name archives record (bump when learning's arithmetic changes);
# the newest first.
LEARNING_ENGINES = {"alphazip-exact-learn-4": Learning(head=True, attention=True, rate=1e-4, decay=0.01),
                    "alphazip-exact-learn-3": Learning(head=True, attention=True),
                    "alphazip-exact-learn-2": Learning(head=True, attention=False),
                    "alphazip-exact-learn-1": Learning(head=False, attention=False)}
LEARNING_ENGINE_NAME = next(iter(LEARNING_ENGINES))
TRACED = 3  # per block, the traced parts every engine reads: attention's output, the residual, gate and up
EVERY = 64  # positions of every chunk between learning steps: one key block
BETAS = (0.9, 0.999)
EPSILON = 1e-8
GRADIENT_LEVELS = 127  # a weight's gradient: int8 per channel on both sides of the outer product
MAX_ROWS = 2**31 // 2**14 - 1  # positions per step whose int8 outer products stay exact in int32


class Learner:
    """A copy of ``engine`` that learns from the positions it is shown (:meth:`observe`) at each
    :meth:`learn`; ``engine`` itself is left as it was."""

    def __init__(self, engine: ExactEngine, hf_model, learning: Learning | None = None):
        if engine.config.gemma or engine.config.gate != "silu":
            raise ValueError("learning as it codes is built for Llama models only")
        self.engine = copy.copy(engine)
        self.engine.layers = [copy.copy(layer) for layer in engine.layers]
        learning = learning or LEARNING_ENGINES[LEARNING_ENGINE_NAME]
        self.learning, self.steps = learning, 0
        self._optimizers = [{name: _Adam(weight) for name, weight in _float_weights(layer, learning.attention).items()}
                            for layer in hf_model.model.layers]
        self._head = _Adam(hf_model.lm_head.weight.detach().float().clone()) if learning.head else None
        self._head_rows: list[tuple[torch.Tensor, torch.Tensor]] = []  # (head's input, loss gradient at logits)
        self._unscaled = torch.ones_like(engine.head.scale)  # the loss gradient's kernel takes a scale per id
        self._rows: list[tuple[list, torch.Tensor]] = []  # (per-layer trace, gradient at the last residual)
        self._places: list[tuple[ExactCache, torch.Tensor, torch.Tensor]] = []  # (cache, its rows, positions)

    def observe(self, trace: list, logits: torch.Tensor, targets: torch.Tensor, scored: torch.Tensor) -> None:
        """The positions of one forward call (``trace`` as :meth:`ExactEngine.forward` filled it,
        ``logits`` [B, T, V], next tokens ``targets`` [B, T]) where ``scored`` [B, T] is True."""
        scored = scored.reshape(-1)
        if not scored.any():
            return
        every = bool(scored.all())  # then the rows as they are: no copies

        def pick(tensor: torch.Tensor) -> torch.Tensor:
            rows = tensor.reshape(-1, *tensor.shape[2:])
            return rows if every else rows[scored]

        kept = None if self.learning.attention else TRACED
        layers = [tuple(pick(part) for part in parts[:kept]) for parts in trace[:-1]]
        residual, cache, start = trace[-1]
        if self.learning.attention:
            batch, count = residual.shape[:2]
            self._places.append((cache, pick(torch.arange(batch).repeat_interleave(count)),
                                 pick(torch.arange(start, start + count).repeat(batch))))
        residual = pick(residual)
        targets = targets.reshape(-1) if every else targets.reshape(-1)[scored]
        normed = self._head_backward(pick(logits), targets, residual)
        self._rows.append((layers, _norm_backward(residual, self.engine.final_norm, self.engine.config.eps, normed)))

    def learn(self) -> None:
        """One Adam step on the mean loss of the positions observed since the last one."""
        if not self._rows:
            return
        rows, self._rows = self._rows, []
        gradient = torch.cat([residual for _, residual in rows])
        count = len(gradient)
        if count > MAX_ROWS:
            raise ValueError(f"{count} positions in one learning step, more than {MAX_ROWS}")
        mean, size = 1.0 / count, self.learning.step_size(self.steps)
        self.steps += 1
        if self._head is not None:
            self._learn_head(mean, size)
        chunks = _chunks(self._places) if self.learning.attention else None
        self._places = []
        for index in reversed(range(len(self.engine.layers))):
            parts = [torch.cat([layers[index][part] for layers, _ in rows]) for part in range(len(rows[0][0][index]))]
            gradient = self._layer_backward(index, parts, gradient, mean, size, chunks)

    def _learn_head(self, mean: float, size: float) -> None:
        """The output embedding's step, from the loss gradients at the logits and the head's inputs."""
        rows, self._head_rows = self._head_rows, []
        inputs = torch.cat([normed for normed, _ in rows])
        logit_gradient = torch.cat([gradient for _, gradient in rows])
        rows.clear()  # the per-observation pieces go before the step's own temporaries come
        self.engine.head = self._head.step(_weight_gradient(logit_gradient, inputs), mean, size)

    def _head_backward(self, logits: torch.Tensor, targets: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """The loss's gradient at the head's input, per row: (softmax - one-hot) through the head,
        the softmax from the arithmetic coder's integer frequencies (exact in any order); kept
        with the head's input (the normed ``residual``) when the head learns."""
        if native.available():
            gradient = native.loss_gradient(logits.contiguous(), targets.contiguous(), self._unscaled, CONSTANTS)
        else:
            counts = frequencies(logits)
            gradient = counts.double().div_(counts.sum(1, keepdim=True).double()).float()
            gradient[torch.arange(len(targets)), targets] -= 1.0
        if self._head is not None:
            self._head_rows.append((_rms_norm(residual, self.engine.final_norm, self.engine.config.eps), gradient))
        return _backward_product(gradient * self.engine.head.scale, self.engine.head, scaled=True)

    def _layer_backward(self, index: int, parts: list[torch.Tensor], gradient, mean, size, chunks) -> torch.Tensor:
        """Block ``index`` learns from ``gradient`` [R, hidden] at its output, ``parts`` its trace of
        the step's rows; returns the gradient at its input (through the MLP and the residual
        stream, and through attention where ``chunks`` (:func:`_chunks`) are given)."""
        layer, c = self.engine.layers[index], self.engine.config
        optimizers = self._optimizers[index]
        attended, middle, gate_up = parts[:TRACED]
        activated = self.engine._gate(gate_up)
        normed = _rms_norm(middle, layer.norm2, c.eps)
        down_gradient = _weight_gradient(gradient, activated)
        activation_gradient = _backward_product(gradient, layer.down)
        gate_up_gradient = _gate_backward(gate_up, activation_gradient, self.engine._gate_constants)
        gate_up_weight_gradient = _weight_gradient(gate_up_gradient, normed)
        middle_gradient = _norm_backward(middle, layer.norm2, c.eps, _backward_product(gate_up_gradient, layer.gate_up))
        middle_gradient.add_(gradient)
        steps = {"down": down_gradient, "gate_up": gate_up_weight_gradient,
                 "o": _weight_gradient(middle_gradient, attended)}
        input_gradient = middle_gradient
        if chunks is not None:
            before, queries, query_scale = parts[TRACED:]
            attended_gradient = _backward_product(middle_gradient, layer.o)
            qkv_gradient = torch.empty((len(before), layer.qkv.out_features))
            for cache, row, rows, positions in chunks:
                qkv_gradient[rows] = attention_backward(self.engine, cache, index, row, positions, queries[rows],
                                                        query_scale[rows], attended[rows], attended_gradient[rows])
            steps["qkv"] = _weight_gradient(qkv_gradient, _rms_norm(before, layer.norm1, c.eps))
            input_gradient = _norm_backward(before, layer.norm1, c.eps, _backward_product(qkv_gradient, layer.qkv))
            input_gradient.add_(middle_gradient)
        for name, weight_gradient in steps.items():
            setattr(layer, name, optimizers[name].step(weight_gradient, mean, size))
        layer._pointers = None  # the one-call layer reads the new weights
        return input_gradient


def _float_weights(layer, attention: bool) -> dict[str, torch.Tensor]:
    """A transformers Llama block's float weights [out, in] of the layers that learn, by their
    names in the exact engine: o and the MLP's, and qkv where ``attention`` learns."""
    attention_layer, mlp = layer.self_attn, layer.mlp
    weights = {"o": attention_layer.o_proj.weight, "gate_up": torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]),
               "down": mlp.down_proj.weight}
    if attention:
        weights["qkv"] = torch.cat([attention_layer.q_proj.weight, attention_layer.k_proj.weight,
                                    attention_layer.v_proj.weight])
    return {name: weight.detach().float().clone() for name, weight in weights.items()}


def _chunks(places: list[tuple[ExactCache, torch.Tensor, torch.Tensor]]
            ) -> list[tuple[ExactCache, int, torch.Tensor, torch.Tensor]]:
    """The step's rows by chunk, from what :meth:`Learner.observe` noted of each call (its cache,
    and each kept row's row in it and position): (cache, row, the rows' indices among the step's,
    their positions ascending) per chunk, whatever order and batch the rows came in."""
    found: dict[tuple[int, int], tuple[ExactCache, int, list, list]] = {}
    offset = 0
    for cache, rows, positions in places:
        for row in rows.unique().tolist():
            mine = rows == row
            entry = found.setdefault((id(cache), row), (cache, row, [], []))
            entry[2].append(mine.nonzero()[:, 0] + offset)
            entry[3].append(positions[mine])
        offset += len(rows)
    chunks = []
    for cache, row, indices, positions in found.values():
        positions = torch.cat(positions)
        order = positions.argsort()
        chunks.append((cache, row, torch.cat(indices)[order], positions[order]))
    return chunks


class _Adam:
    """Adam on one linear layer's float32 master weights, starting from the model's own float
    weights: their int8 roundings then follow small steps as often as the steps add up (master
    weights started on the int8 grid would stay there until the steps passed half a grid step)."""

    def __init__(self, master: torch.Tensor):
        self.master = master  # [out, in]
        self.first = torch.zeros_like(self.master)
        self.second = torch.zeros_like(self.master)
        self.powers = (1.0, 1.0)  # beta1^t, beta2^t: products of exactly rounded steps (no libm pow)

    def step(self, gradient: tuple[torch.Tensor, torch.Tensor, torch.Tensor], mean: float, size: float
             ) -> QuantLinear:
        """One step of ``size`` on the gradient (int32 outer-product sums [out, in], their row and
        column steps: see :func:`_weight_gradient`) averaged over ``mean`` = 1 / positions; the
        layer requantized from the masters."""
        beta1, beta2 = BETAS
        self.powers = (self.powers[0] * beta1, self.powers[1] * beta2)
        constants = torch.tensor([mean, beta1, 1.0 - beta1, beta2, 1.0 - beta2,
                                  1.0 / math.sqrt(1.0 - self.powers[1]),  # exactly rounded, as IEEE's sqrt is
                                  EPSILON, size / (1.0 - self.powers[0])], dtype=torch.float32)
        products, row_steps, col_steps = gradient
        if native.available():
            weight, scale = native.adam_step(products, row_steps, col_steps, constants, self.master, self.first,
                                             self.second)
        else:
            weight, scale = self._step(products, row_steps, col_steps, constants)
        return QuantLinear.from_state({"weight": weight, "scale": scale}, "")

    def _step(self, products, row_steps, col_steps, constants) -> tuple[torch.Tensor, torch.Tensor]:
        """What ``native.adam_step`` computes, in torch: the same operations in the same order."""
        mean, beta1, rest1, beta2, rest2, inverse_root, epsilon, size = constants
        g = products.float().mul_(row_steps[:, None]).mul_(col_steps[None, :]).mul_(mean)
        self.first.mul_(beta1).add_(g * rest1)
        self.second.mul_(beta2).add_(g.mul(g).mul_(rest2))
        denominator = xm.sqrt(self.second).mul_(inverse_root).add_(epsilon)
        self.master.sub_(self.first.div(denominator).mul_(size))
        top = self.master.abs().amax(1, keepdim=True)
        top = torch.where(top > 0, top, torch.ones_like(top))
        limit = torch.tensor(127.0)
        weight = torch.round(self.master * torch.div(limit, top)).clamp_(-127, 127).to(torch.int8)
        return weight, torch.div(top, limit).view(-1)


def _backward_product(gradient: torch.Tensor, linear: QuantLinear, scaled: bool = False) -> torch.Tensor:
    """``gradient`` [R, out] at a linear layer's output -> [R, in] at its input: gradient @ (scale W),
    the gradient (times the scales unless ``scaled``) quantized per row to 15 bits and multiplied
    by the int8 weights as integers."""
    if not scaled:
        gradient = gradient * linear.scale
    halves, step = QuantLinear.halves(gradient)
    products = int_matmul(halves, linear.weight_t.t())  # [2R, out] x [out, in]
    rows = len(products) // 2
    return products[:rows].mul(256.0).add_(products[rows:]).mul_(step)


def _weight_gradient(gradient: torch.Tensor, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """gradient [R, out] x inputs [R, in] summed over the rows, as int32 sums [out, in] and the
    steps of their rows [out] and columns [in]: both sides quantized to int8 per channel over all
    rows, multiplied as integers."""
    g, g_step = _quantize_channels(gradient)  # [out, R]
    a, a_step = _quantize_channels(inputs)  # [in, R]
    products = int_matmul(g, a.t())  # [out, R] x [R, in]
    return products.contiguous(), g_step, a_step


def _quantize_channels(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` [R, C] quantized to int8 per column over all rows, transposed: [C, R] and steps [C]."""
    if native.available():
        return native.quantize_columns(x, GRADIENT_LEVELS)
    values, step = xm.quantize_rows(x.t(), GRADIENT_LEVELS)
    return values.to(torch.int8).contiguous(), step.view(-1).contiguous()


def _gate_backward(gate_up: torch.Tensor, gradient: torch.Tensor, constants: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up's gradient [R, 2I] (gate's, then up's) from ``gradient`` [R, I] at its output
    (``constants``: the engine's gate constants, for the compiled kernel)."""
    if native.available():
        return native.gate_backward(gate_up, gradient, constants)
    gate, up = gate_up.split(gate_up.shape[-1] // 2, dim=-1)
    sigmoid = 1.0 / xm.exp(-gate).add_(1.0)
    slope = (1.0 - sigmoid).mul_(gate).add_(1.0).mul_(sigmoid)  # silu'(gate) = s (1 + gate (1 - s))
    return torch.cat([gradient * up * slope, gradient * (gate * sigmoid)], dim=-1)


def _norm_backward(x: torch.Tensor, weight: torch.Tensor, eps: float, gradient: torch.Tensor) -> torch.Tensor:
    """RMSNorm's input gradient: r u - x r^3 mean(x u), with u = gradient * weight, r = 1 / rms(x)."""
    r = xm.rms_factor(x, eps)
    u = gradient * weight
    r64 = r.double()
    coefficient = (r64 * r64 * r64 * xm.row_dot(x, u) / x.shape[-1]).float()
    return (u * r).sub_(x * coefficient)
