"""The exact engine: Llama and Gemma 3 forward passes whose logits are the same bits on every CPU.

Every operation that decides a bit is exact by construction (see ``exactmath`` for the rules):

- linear layers: int8 weights per output channel, activations quantized per row to 15 bits,
  products summed as integers (``intmm``);
- attention: queries, keys and values quantized per (token, head) to int8 values; scores are
  exact integers (float32 products of integers, partial sums below 2^24); the softmax uses
  our own ``exp``, its denominator is a sum of integers, and the weighted sum of values is
  again an exact integer product of 14-bit weights and int8 values;
- norms: sums of squares of integers; RoPE and the gates: tables and polynomials built from
  exactly rounded operations.

The result depends on nothing but the weights and the tokens: not the batch, the thread count,
the call's length (full pass or single steps) or the CPU's instruction set. The KV cache holds
int8 keys and values in a pair layout (keys: two dimensions side by side; values: two positions
side by side), each pair one int16 multiply-add lane in the compiled kernel, and one float32 step each. The compiled kernel (``native``) computes attention's bits in one pass.
"""

import hashlib
import math
from dataclasses import dataclass

import torch

from . import exactmath as xm
from . import native
from .engine import KEY_BLOCK, _key_blocks, _rotate
from .intmm import ACTIVATION_LEVELS, QuantLinear, exact_f32_matmul, packed_path

EXACT_ENGINE_NAME = "alphazip-exact-1"  # recorded in headers; bump when any arithmetic changes
PROBE_LENGTH = 24
VALUE_WEIGHT_LEVELS = 128 * 128 - 1  # attention weights as 14-bit integers: 128 high + low, both in [0, 127]
SOFTMAX_UNIT = 2.0 ** 20  # the softmax denominator counts exp() values in units of 2^-20, exactly
SLIDING = "sliding_attention"


@dataclass(frozen=True)
class ExactConfig:
    """What the forward pass reads from a model's config: Llama's choices, or Gemma 3's."""

    heads: int
    kv_heads: int
    head_dim: int
    eps: float  # added to the mean square in every RMSNorm
    rope_thetas: tuple[float, ...]  # RoPE base per layer
    windows: tuple[int | None, ...]  # sliding-window length per layer, None for full attention
    score_scale: float  # attention scores are multiplied by it (1/sqrt(head_dim) for Llama)
    gate: str  # "silu" (Llama) or "gelu_tanh" (Gemma)
    gemma: bool  # Gemma's extras: scaled embeddings, 1 + w norms, head norms, norms after each block
    softcap: float | None = None  # Gemma: logits = cap * tanh(logits / cap)

    @classmethod
    def from_hf(cls, config) -> "ExactConfig":
        layers = config.num_hidden_layers
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        rope = getattr(config, "rope_parameters", None) or {"rope_theta": config.rope_theta}
        if config.model_type == "llama":
            return cls(heads, config.num_key_value_heads, head_dim, config.rms_norm_eps,
                       (float(rope["rope_theta"]),) * layers, (None,) * layers, 1.0 / math.sqrt(head_dim),
                       "silu", gemma=False)
        kinds = list(config.layer_types)
        return cls(heads, config.num_key_value_heads, head_dim, config.rms_norm_eps,
                   tuple(float(rope[kind]["rope_theta"]) for kind in kinds),
                   tuple(config.sliding_window if kind == SLIDING else None for kind in kinds),
                   config.query_pre_attn_scalar ** -0.5, "gelu_tanh", gemma=True,
                   softcap=getattr(config, "final_logit_softcapping", None))


@dataclass
class ExactCache:
    """Per layer, int8 keys [batch, kv_heads, head_dim / 2, length, 2] (dimensions 2p and 2p + 1 side
    by side) and values [batch, kv_heads, length / 2, head_dim, 2] (positions 2i and 2i + 1 side by
    side), and their steps ([batch, kv_heads, length], float32). ``keys_by_dimension`` and
    ``values_by_position`` give the plain matrices."""

    keys: list[torch.Tensor]
    key_steps: list[torch.Tensor]
    values: list[torch.Tensor]
    value_steps: list[torch.Tensor]


class _Layer:
    """One decoder layer's weights: quantized products, float32 norm weights."""

    PRODUCTS = ("qkv", "o", "gate_up", "down")
    NORMS = {False: ("norm1", "norm2"), True: ("norm1", "post_attention", "norm2", "post_mlp", "q_norm", "k_norm")}

    def __init__(self, layer, gemma: bool):
        attention, mlp = layer.self_attn, layer.mlp
        self.qkv = QuantLinear(torch.cat([attention.q_proj.weight, attention.k_proj.weight, attention.v_proj.weight]))
        self.o = QuantLinear(attention.o_proj.weight)
        self.gate_up = QuantLinear(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]))
        self.down = QuantLinear(mlp.down_proj.weight)
        norms = {"norm1": layer.input_layernorm, "norm2": layer.post_attention_layernorm}
        if gemma:  # Gemma's post_attention_layernorm comes after attention; pre_feedforward before the MLP
            norms = {"norm1": layer.input_layernorm, "post_attention": layer.post_attention_layernorm,
                     "norm2": layer.pre_feedforward_layernorm, "post_mlp": layer.post_feedforward_layernorm,
                     "q_norm": attention.q_norm, "k_norm": attention.k_norm}
        offset = 1.0 if gemma else 0.0  # Gemma scales by 1 + w
        for name, norm in norms.items():
            setattr(self, name, norm.weight.detach().float() + offset)

    def pointers(self):
        """Where the one-call layer (native.llama_layer) reads its weights, made on first use."""
        if getattr(self, "_pointers", None) is None:
            self._held = [self.norm1.contiguous(), self.norm2.contiguous()]
            for product in (self.qkv, self.o, self.gate_up, self.down):
                self._held += [product._packed(), product.scale.contiguous()]
            self._pointers = native.layer_weights(self._held)
        return self._pointers

    def state(self, prefix: str, gemma: bool) -> dict[str, torch.Tensor]:
        """Its tensors as computed (quantized weights, scales, norms), named under ``prefix``."""
        tensors = {f"{prefix}{name}": getattr(self, name) for name in self.NORMS[gemma]}
        for name in self.PRODUCTS:
            tensors |= getattr(self, name).state(f"{prefix}{name}.")
        return tensors

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], prefix: str, gemma: bool) -> "_Layer":
        layer = cls.__new__(cls)
        for name in cls.NORMS[gemma]:
            setattr(layer, name, state[f"{prefix}{name}"])
        for name in cls.PRODUCTS:
            setattr(layer, name, QuantLinear.from_state(state, f"{prefix}{name}."))
        return layer


class ExactEngine:
    """A forward pass over a transformers Llama or Gemma 3 model whose logits are exact everywhere."""

    def __init__(self, hf_model):
        self.config = ExactConfig.from_hf(hf_model.config)
        inner = hf_model.model
        self.embed = inner.embed_tokens.weight.detach().float()
        self.layers = [_Layer(layer, self.config.gemma) for layer in inner.layers]
        self.final_norm = inner.norm.weight.detach().float() + (1.0 if self.config.gemma else 0.0)
        self.head = QuantLinear(hf_model.lm_head.weight)
        self._prepare()

    def state(self) -> dict[str, torch.Tensor]:
        """Every tensor the forward pass reads, as computed from the model's weights: saved, they
        rebuild the same engine (:meth:`from_state`) without loading or quantizing the model again."""
        tensors = {"embed": self.embed, "final_norm": self.final_norm, **self.head.state("head.")}
        for index, layer in enumerate(self.layers):
            tensors |= layer.state(f"layers.{index}.", self.config.gemma)
        return tensors

    @classmethod
    def from_state(cls, config: ExactConfig, layers: int, state: dict[str, torch.Tensor]) -> "ExactEngine":
        engine = cls.__new__(cls)
        engine.config, engine.embed, engine.final_norm = config, state["embed"], state["final_norm"]
        engine.layers = [_Layer.from_state(state, f"layers.{index}.", config.gemma) for index in range(layers)]
        engine.head = QuantLinear.from_state(state, "head.")
        engine._prepare()
        return engine

    def _prepare(self) -> None:
        self.embed_scale = self.embed.shape[1] ** 0.5 if self.config.gemma else None  # sqrt(hidden size)
        self._ropes: dict[float, tuple[torch.Tensor, torch.Tensor]] = {}
        # The compiled kernel's float32 constants, the very values the torch path uses.
        self._constants = torch.tensor([SOFTMAX_UNIT, VALUE_WEIGHT_LEVELS, *xm.exp2_coefficients(torch.float32)],
                                       dtype=torch.float32)
        self._gate_constants = torch.tensor([xm.LOG2E, xm.GELU_CUBIC, xm.GELU_SCALE, *xm.exp2_coefficients(torch.float32)],
                                            dtype=torch.float32)
        # The queries' steps are multiplied by this float32 value (torch converts the Python float so).
        self._score_factor = float(torch.tensor(self.config.score_scale * xm.LOG2E, dtype=torch.float32))

    @property
    def logits_width(self) -> int:
        return self.head.out_features

    def new_cache(self, batch: int, length: int) -> ExactCache:
        c = self.config
        length = -(-length // KEY_BLOCK) * KEY_BLOCK  # whole key blocks

        def per_layer(shape, dtype):
            return [torch.zeros(shape, dtype=dtype) for _ in self.layers]

        return ExactCache(per_layer((batch, c.kv_heads, c.head_dim // 2, length, 2), torch.int8),
                          per_layer((batch, c.kv_heads, length), torch.float32),
                          per_layer((batch, c.kv_heads, length // 2, c.head_dim, 2), torch.int8),
                          per_layer((batch, c.kv_heads, length), torch.float32))

    @torch.inference_mode()
    def forward(self, tokens: torch.Tensor, start: int, cache: ExactCache, features: list | None = None,
                trace: list | None = None) -> torch.Tensor:
        """Logits [batch, T, vocab] (float32) for ``tokens`` [batch, T] at positions start..start+T-1;
        the head's input [batch, T, hidden] (float32, as exact as the logits) is appended to
        ``features`` if given; what learning needs (``learning``) to ``trace``: per block its
        attention's output, the residual stream after it, the MLP's gate and up, the residual
        stream before it and attention's int8 queries with their steps; then the last residual
        stream, ``cache`` and ``start``."""
        c = self.config
        x = self.embed[tokens]  # [B, T, hidden], float32 residual stream
        if self.embed_scale:
            x = x * self.embed_scale
        one_call = self._layers_in_one_call(tokens.shape[1]) and trace is None
        for index, layer in enumerate(self.layers):
            if one_call:
                self._layer_in_one_call(x, layer, cache, index, start)
                continue
            queries = [] if trace is not None else None
            attended = self._attention(layer.qkv(_rms_norm(x, layer.norm1, c.eps)), layer, cache, index, start,
                                       queries)
            out = layer.o(attended)
            before = x
            x = x + (_rms_norm(out, layer.post_attention, c.eps) if c.gemma else out)
            gate_up = layer.gate_up(_rms_norm(x, layer.norm2, c.eps))
            if trace is not None:
                trace.append((attended, x, gate_up, before, *queries))
            out = layer.down(self._gate(gate_up))
            x = x + (_rms_norm(out, layer.post_mlp, c.eps) if c.gemma else out)
        if trace is not None:
            trace.append((x, cache, start))
        normed = _rms_norm(x, self.final_norm, c.eps)
        if features is not None:
            features.append(normed)
        logits = self.head(normed)
        if c.softcap:
            logits = xm.tanh(logits / c.softcap) * c.softcap
        return logits

    def _layers_in_one_call(self, count: int) -> bool:
        """Whether a step's layers run as one compiled call each (native.llama_layer): Llama's layers
        where the products run on packed weights (AMX tiles or VNNI). Only steps (one position)
        take it: there the per-call costs weigh as much as the kernels, while a packing call's
        hundreds of rows amortize them (and its layer-sized scratch, allocated per call in C, costs
        more than torch's)."""
        c = self.config
        return (count == 1 and packed_path() is not None and not c.gemma
                and c.head_dim <= native.ROPE_MAX_DIM)

    def _layer_in_one_call(self, x: torch.Tensor, layer: _Layer, cache: ExactCache, index: int, start: int) -> None:
        """Layer ``index`` on the residual stream ``x`` [B, T, hidden] in place: the bits of the loop's
        body in :meth:`forward`, in one compiled call."""
        c = self.config
        cos, sin = self._rope_rows(index, start, x.shape[1])
        shape = (c.heads, c.kv_heads, c.head_dim, layer.gate_up.out_features // 2)
        native.llama_layer(x, layer.pointers(), shape, start, c.windows[index], c.eps, ACTIVATION_LEVELS,
                           self._score_factor, cos, sin,
                           (cache.keys[index], cache.key_steps[index], cache.values[index], cache.value_steps[index]),
                           self._constants, self._gate_constants)

    def _gate(self, gate_up: torch.Tensor) -> torch.Tensor:
        """The MLP's activation on gate and up side by side [..., 2 I]: silu(gate) * up (Llama) or
        gelu_tanh(gate) * up (Gemma)."""
        if native.available():
            return native.gate_rows(self.config.gate, gate_up, self._gate_constants)
        gate, up = gate_up.split(gate_up.shape[-1] // 2, dim=-1)
        return (xm.silu(gate) if self.config.gate == "silu" else xm.gelu_tanh(gate)) * up

    def _attention(self, qkv: torch.Tensor, layer: _Layer, cache: ExactCache, index: int, start: int,
                   queries: list | None = None) -> torch.Tensor:
        """Layer ``index``'s attention for projected ``qkv`` [B, T, (H + 2 KV) D] at ``start``; its keys
        and values go to the cache. Returns [B, T, H D], before the output projection; the int8
        queries [B, T, H, D] and their steps [B, T, H] (times the score factor) go to ``queries``
        if given."""
        c = self.config
        batch, count, _ = qkv.shape
        cos, sin = self._rope_rows(index, start, count)
        group = c.heads // c.kv_heads
        if native.available() and c.head_dim <= native.ROPE_MAX_DIM:
            if c.gemma:  # the per-head norms, on qkv's own layout (a norm works row by row)
                qkv = self._norm_heads(qkv, layer)
            q, q_scale = native.rope_quantize(qkv, c.heads, c.kv_heads, cos, sin, self._score_factor, start,
                                              cache.keys[index], cache.key_steps[index], cache.values[index],
                                              cache.value_steps[index])
            rows = q.view(batch, c.kv_heads, group, count, c.head_dim)
            row_scale = q_scale.view(batch, c.kv_heads, group, count)
        else:
            rows, row_scale = self._attention_inputs(qkv, layer, cache, index, start, cos, sin)
        if queries is not None:
            queries += [rows.permute(0, 3, 1, 2, 4).reshape(batch, count, c.heads, c.head_dim),
                        row_scale.permute(0, 3, 1, 2).reshape(batch, count, c.heads)]
        if native.available():
            out = native.attend(rows.contiguous(), row_scale.contiguous(), start, c.windows[index], cache.keys[index],
                                cache.key_steps[index], cache.values[index], cache.value_steps[index], self._constants)
        else:
            out = torch.cat([self._attend_block(rows[:, :, :, first - start:last - start],
                                                row_scale[:, :, :, first - start:last - start], cache, index, low, span, mask)
                             for first, last, low, span, mask in _key_blocks(start, count, c.windows[index])], dim=3)
        return out.reshape(batch, c.heads, count, c.head_dim).transpose(1, 2).reshape(batch, count, -1)

    def _attention_inputs(self, qkv: torch.Tensor, layer: _Layer, cache: ExactCache, index: int, start: int,
                          cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What ``native.rope_quantize`` computes, in torch: keys and values into the cache, and the
        int8 queries [B, KV, group, T, D] with their steps times the score factor [B, KV, group, T]."""
        c = self.config
        batch, count, _ = qkv.shape
        q, k, v = (part.reshape(batch, count, -1, c.head_dim).transpose(1, 2)  # [B, heads, T, D]
                   for part in qkv.split([c.heads * c.head_dim, c.kv_heads * c.head_dim, c.kv_heads * c.head_dim], -1))
        if c.gemma:
            q, k = _rms_norm(q, layer.q_norm, c.eps), _rms_norm(k, layer.k_norm, c.eps)
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        _store(cache, index, start, k, v)
        integers, step = xm.quantize_rows(q, 127)
        group = c.heads // c.kv_heads
        rows = integers.to(torch.int8).reshape(batch, c.kv_heads, group, count, c.head_dim)
        row_scale = (step * (c.score_scale * xm.LOG2E)).reshape(batch, c.kv_heads, group, count)
        return rows, row_scale

    def _norm_heads(self, qkv: torch.Tensor, layer: _Layer) -> torch.Tensor:
        """Gemma's per-head RMSNorm of the queries and keys, in place in ``qkv`` [B, T, (H + 2 KV) D]."""
        c = self.config
        batch, count, _ = qkv.shape
        q_width, k_width = c.heads * c.head_dim, c.kv_heads * c.head_dim
        q, k = qkv[..., :q_width], qkv[..., q_width:q_width + k_width]
        qkv[..., :q_width] = _rms_norm(q.reshape(batch, count, c.heads, c.head_dim), layer.q_norm, c.eps).view(q.shape)
        qkv[..., q_width:q_width + k_width] = _rms_norm(k.reshape(batch, count, c.kv_heads, c.head_dim), layer.k_norm,
                                                         c.eps).view(k.shape)
        return qkv

    def _attend_block(self, rows, row_scale, cache: ExactCache, index: int, low: int, span: int,
                      tail_mask: torch.Tensor) -> torch.Tensor:
        """Attention of int8 query ``rows`` [B, KV, group, n, D] (scores scaled by ``row_scale``
        [B, KV, group, n], which includes log2 e) over the cached keys low..span-1, the last ones
        masked by ``tail_mask`` [n, M]; [B, KV, group, n, D]. The compiled kernel computes the same
        bits. Most steps work in place: fresh tensors of this size cost page faults."""
        batch, kv_heads, group, count, dim = rows.shape
        flat = rows.reshape(batch, kv_heads, group * count, dim)
        keys = keys_by_dimension(cache.keys[index][:, :, :, low:span])
        values = values_by_position(cache.values[index][:, :, low // 2:span // 2])
        scores = exact_f32_matmul(flat, keys)  # integers, [B, KV, group n, S]
        scores.mul_(cache.key_steps[index][:, :, None, low:span]).mul_(row_scale.reshape(batch, kv_heads, -1, 1))
        scores[..., -tail_mask.shape[-1]:].add_(tail_mask.repeat(group, 1))
        e = xm.exp2_(scores.sub_(scores.amax(-1, keepdim=True)))  # in (0, 1]; masked keys round to 0 below
        denominator = _exact_sum(torch.round(e * SOFTMAX_UNIT))  # exp() in units of 2^-20
        weights = e.mul_(cache.value_steps[index][:, :, None, low:span])
        top = weights.amax(-1, keepdim=True)
        top = torch.where(top > 0, top, torch.ones_like(top))
        levels = weights.mul_(torch.reciprocal(top).mul_(VALUE_WEIGHT_LEVELS)).round_()  # integers 0 .. 16383
        high = torch.floor(levels * (1.0 / 128))
        low_part = levels.sub_(high * 128.0)
        combined = exact_f32_matmul(high, values).double().mul_(128.0).add_(exact_f32_matmul(low_part, values).double())
        factor = (top.double() / VALUE_WEIGHT_LEVELS) / (denominator / SOFTMAX_UNIT)
        return combined.mul_(factor).float().reshape(batch, kv_heads, group, count, dim)

    def _rope_rows(self, index: int, start: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin [count, D] of layer ``index``'s RoPE at positions start..start+count-1."""
        sin, cos = self._rope(self.config.rope_thetas[index], start + count)
        return cos[start:start + count], sin[start:start + count]

    def _rope(self, theta: float, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """sin and cos [positions, D] for RoPE base ``theta``, at least ``length`` positions (grown
        in whole key blocks): a table computed by exactly rounded float64 operations."""
        table = self._ropes.get(theta)
        if table is None or len(table[0]) < length:
            dim = self.config.head_dim
            exponents = torch.arange(0, dim, 2, dtype=torch.float64) / dim
            inverse = xm.exp(exponents * -xm.log(torch.tensor(theta, dtype=torch.float64)))
            positions = torch.arange(-(-length // KEY_BLOCK) * KEY_BLOCK, dtype=torch.float64)
            sin, cos = xm.sin_cos(positions[:, None] * inverse[None, :])
            table = torch.cat([sin, sin], -1).float(), torch.cat([cos, cos], -1).float()
            self._ropes[theta] = table
        return table


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm: the compiled kernel where built, else exactmath's torch operations (the same bits)."""
    return native.rms_norm(x, weight, eps) if native.available() else xm.rms_norm(x, weight, eps)


def _store(cache: ExactCache, index: int, start: int, keys: torch.Tensor, values: torch.Tensor) -> None:
    """Layer ``index``'s keys and values [B, KV, T, D] of positions start.., quantized into the cache."""
    batch, kv_heads, count, dim = keys.shape
    stop = start + count
    integers, step = xm.quantize_rows(keys, 127)
    cache.keys[index][:, :, :, start:stop] = integers.reshape(batch, kv_heads, count, dim // 2, 2).transpose(2, 3)
    cache.key_steps[index][:, :, start:stop] = step[..., 0]
    integers, step = xm.quantize_rows(values, 127)
    positions = torch.arange(start, stop)
    for parity in (0, 1):  # position p is pair p // 2, side p % 2
        chosen = positions % 2 == parity
        cache.values[index][..., parity][:, :, positions[chosen] // 2] = integers[:, :, chosen].to(torch.int8)
    cache.value_steps[index][:, :, start:stop] = step[..., 0]


def keys_by_dimension(keys: torch.Tensor) -> torch.Tensor:
    """Cached keys [B, KV, D/2, S, 2] as [B, KV, D, S]."""
    batch, kv_heads, half, length, _ = keys.shape
    return keys.transpose(-1, -2).reshape(batch, kv_heads, 2 * half, length)


def values_by_position(values: torch.Tensor) -> torch.Tensor:
    """Cached values [B, KV, S/2, D, 2] as [B, KV, S, D]."""
    batch, kv_heads, half, dim, _ = values.shape
    return values.transpose(-1, -2).reshape(batch, kv_heads, 2 * half, dim)


def _exact_sum(units: torch.Tensor) -> torch.Tensor:
    """Sum over the last dim of integers below 2^20 (float32, up to 8,192 a row), exactly, as float64:
    split into halves below 2^10, whose sums stay below 2^24 in any order."""
    high = torch.floor(units * (1.0 / 1024))
    low = units.sub_(high * 1024.0)
    return high.sum(-1, keepdim=True).double().mul_(1024.0).add_(low.sum(-1, keepdim=True).double())


def probe_fingerprint(engine: ExactEngine, vocab_size: int, first_token: int) -> str:
    """sha256 of the engine's logits on a fixed input that starts from ``first_token``: the same on
    every machine unless the model, the tokenizer's start token or this code changed."""
    ids = (torch.arange(2 * PROBE_LENGTH, dtype=torch.int64) * 7919 % vocab_size).view(2, PROBE_LENGTH)
    ids[:, 0] = first_token
    logits = engine.forward(ids, 0, engine.new_cache(2, PROBE_LENGTH))
    return hashlib.sha256(logits.contiguous().numpy().tobytes()).hexdigest()
