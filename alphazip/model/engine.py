"""Our own Llama forward pass whose logits depend only on each sequence's own tokens.

The float results of a library
forward pass change with how work is batched: BLAS picks another summation order when a
thread's share of rows is small, oneDNN has a separate one-row path. Here every matrix product
runs with its row count padded to a multiple of ``ROW_MULTIPLE`` with zero rows, and the
residual stream and norms stay in float32; only matrix-product inputs are cast to the compute
dtype. A query row attends over the keys up to the end of its block of ``KEY_BLOCK`` positions
(later ones masked with -inf), a length fixed by its position alone. Prefill and stepping then
run the same reductions per row, so a full pass and token-by-token stepping give the same bits.
"""

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

ROW_MULTIPLE = 8
KEY_BLOCK = 64  # attention reads keys up to the end of the query's block of 64 positions
PROBE_LENGTH = 24  # tokens per row of the guard's fixed probe input
ENGINE_NAME = "alphazip-llama-2"  # recorded in headers; bump when the arithmetic changes
# Logit values one packing call may return (268 MB in fp32): the default model's 16 chunks x 64
# tokens fit; Gemma 3 (262,144 ids) gets 256 rows a call, where its LM head product runs about
# 1.7 x faster per multiply-add than at 128 (packing 20 KB: 77-88 s -> 67 s, measured here).
LOGIT_BUDGET = 64 * 2**20


def supports(config) -> bool:
    """Whether :class:`LlamaEngine` computes ``config``'s model as transformers does: a Llama with
    plain RoPE (Llama 3's scaled RoPE is not done here), no biases and a SiLU gate."""
    rope = getattr(config, "rope_parameters", None) or {}
    return (config.model_type == "llama" and getattr(config, "hidden_act", "silu") == "silu"
            and not getattr(config, "attention_bias", False) and not getattr(config, "mlp_bias", False)
            and rope.get("rope_type", "default") == "default")


def matmul(rows: torch.Tensor, weight_t: torch.Tensor) -> torch.Tensor:
    """``rows @ weight_t`` over the last two dims, the row count padded to ``ROW_MULTIPLE``."""
    count = rows.shape[-2]
    padded = -count % ROW_MULTIPLE
    if padded:
        rows = F.pad(rows, (0, 0, 0, padded))
    return torch.matmul(rows, weight_t)[..., :count, :]


def linear(x: torch.Tensor, weight_t: torch.Tensor) -> torch.Tensor:
    """``x @ weight_t`` for ``x`` [B, T, in]: every row of the batch in one padded product.

    Padding the flattened B*T rows (not each sequence's T) keeps stepping at one row per
    sequence, instead of eight.
    """
    batch, count, width = x.shape
    return matmul(x.reshape(batch * count, width), weight_t).view(batch, count, -1)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Llama's RMSNorm in float32, one row at a time."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


@dataclass
class KVCache:
    """Keys and values of every layer for ``batch`` sequences of at most ``length`` tokens."""

    keys: list[torch.Tensor]  # per layer [batch, kv_heads, length, head_dim]
    values: list[torch.Tensor]


class LlamaEngine:
    """A batch-invariant forward pass over a transformers Llama model's weights."""

    def __init__(self, hf_model, dtype: torch.dtype):
        config = hf_model.config
        self.dtype = dtype
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.eps = config.rms_norm_eps
        inner = hf_model.model
        self.embed = inner.embed_tokens.weight.detach().float()
        self.final_norm = inner.norm.weight.detach().float()
        self.head_t = hf_model.lm_head.weight.detach().to(dtype).contiguous().t()
        self.layers = [self._layer(layer) for layer in inner.layers]
        rope = getattr(config, "rope_parameters", None) or {"rope_theta": config.rope_theta}
        # Gemma keeps one RoPE base per layer type instead (see gemma.py).
        self.inv_freq = self._inverse_frequencies(rope["rope_theta"]) if "rope_theta" in rope else None
        self.score_divisor = math.sqrt(self.head_dim)  # scores are divided by it before the softmax

    @property
    def logits_width(self) -> int:
        return self.head_t.shape[1]

    def _inverse_frequencies(self, theta: float) -> torch.Tensor:
        return 1.0 / (theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float64) / self.head_dim))

    def _layer(self, layer) -> dict:
        attention, mlp = layer.self_attn, layer.mlp

        def t(linear):  # a transposed view: oneDNN is about twice as fast on it as on a transposed copy
            return linear.weight.detach().to(self.dtype).contiguous().t()

        return {"norm1": layer.input_layernorm.weight.detach().float(),
                "norm2": layer.post_attention_layernorm.weight.detach().float(),
                "q": t(attention.q_proj), "k": t(attention.k_proj), "v": t(attention.v_proj), "o": t(attention.o_proj),
                "gate": t(mlp.gate_proj), "up": t(mlp.up_proj), "down": t(mlp.down_proj)}

    def new_cache(self, batch: int, length: int) -> KVCache:
        shape = (batch, self.kv_heads, -(-length // KEY_BLOCK) * KEY_BLOCK, self.head_dim)
        return KVCache([torch.zeros(shape, dtype=self.dtype) for _ in self.layers],
                       [torch.zeros(shape, dtype=self.dtype) for _ in self.layers])

    @torch.inference_mode()
    def forward(self, tokens: torch.Tensor, start: int, cache: KVCache, features: list | None = None
                ) -> torch.Tensor:
        """Logits [batch, T, vocab] (float32) for ``tokens`` [batch, T] at positions start..start+T-1;
        the head's input [batch, T, hidden] (float32) is appended to ``features`` if given."""
        count = tokens.shape[1]
        x = self.embed[tokens]  # [B, T, hidden], float32 residual stream
        rope = self._rope(start, count)
        blocks = _key_blocks(start, count)
        for index, w in enumerate(self.layers):
            h = rms_norm(x, w["norm1"], self.eps).to(self.dtype)
            x = x + linear(self._self_attention(h, w, cache, index, start, rope, blocks), w["o"]).float()
            h = rms_norm(x, w["norm2"], self.eps).to(self.dtype)
            hidden = F.silu(linear(h, w["gate"]).float()) * linear(h, w["up"]).float()
            x = x + linear(hidden.to(self.dtype), w["down"]).float()
        x = rms_norm(x, self.final_norm, self.eps).to(self.dtype)
        if features is not None:
            features.append(x.float())
        return linear(x, self.head_t).float()

    def _norm_heads(self, q: torch.Tensor, k: torch.Tensor, w: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return q, k  # Llama has no per-head norms (Gemma does)

    def _heads(self, projected: torch.Tensor, heads: int) -> torch.Tensor:
        batch, count, _ = projected.shape
        return projected.float().view(batch, count, heads, self.head_dim).transpose(1, 2)  # [B, heads, T, D]

    def _self_attention(self, h, w: dict, cache: KVCache, index: int, start: int, rope, blocks) -> torch.Tensor:
        """Layer ``index``'s attention for the normed input ``h`` [B, T, hidden] at ``start``, its keys and
        values written to the cache; [B, T, heads * D], before the output projection."""
        batch, count, _ = h.shape
        q = self._heads(linear(h, w["q"]), self.heads)
        k = self._heads(linear(h, w["k"]), self.kv_heads)
        v = self._heads(linear(h, w["v"]), self.kv_heads)
        q, k = self._norm_heads(q, k, w)
        cos, sin = rope
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        cache.keys[index][:, :, start:start + count] = k.to(self.dtype)
        cache.values[index][:, :, start:start + count] = v.to(self.dtype)
        q = q.to(self.dtype)
        attended = torch.cat([self._attend(q[:, :, first - start:stop - start], cache.keys[index][:, :, low:span],
                                           cache.values[index][:, :, low:span], mask)
                              for first, stop, low, span, mask in blocks], dim=2)  # [B, heads, T, D]
        return attended.transpose(1, 2).reshape(batch, count, self.heads * self.head_dim)

    def _attend(self, q, keys, values, tail_mask) -> torch.Tensor:
        """Grouped-query attention of ``q`` [B, heads, T, D] over ``keys``/``values`` [B, kv_heads, S, D].

        The query heads that share a key head are stacked as rows of one product against that
        head's keys (stepping pads ``group`` rows to 8, not each head's single row); the cache
        is never copied. ``tail_mask`` [T, M] is added to the last M keys' scores: M is
        ``KEY_BLOCK`` for causal attention, the whole span for a sliding window.
        """
        batch, _, count, _ = q.shape
        group = self.heads // self.kv_heads
        rows = q.reshape(batch, self.kv_heads, group * count, self.head_dim)  # head-major, then position
        scores = matmul(rows, keys.transpose(-1, -2)).float()
        # In place, and the mask only over the last key block (the keys before it are all visible):
        # the same bits as dividing and masking whole copies, at a third of the memory traffic.
        scores.div_(self.score_divisor)
        scores[..., -tail_mask.shape[-1]:] += tail_mask.repeat(group, 1)
        weights = torch.softmax(scores, dim=-1).to(self.dtype)
        return matmul(weights, values).reshape(batch, self.heads, count, self.head_dim)

    def _rope(self, start: int, count: int, inv_freq: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        inv_freq = self.inv_freq if inv_freq is None else inv_freq
        angles = torch.arange(start, start + count, dtype=torch.float64)[:, None] * inv_freq[None, :]
        angles = torch.cat([angles, angles], dim=-1)
        return angles.cos().float(), angles.sin().float()


def _key_blocks(start: int, count: int, window: int | None = None) -> list[tuple[int, int, int, int, torch.Tensor]]:
    """(first, stop, low, span, tail mask) for the rows at positions first..stop-1 of each key block.

    Those rows attend over keys low..span-1. The tail mask [rows, KEY_BLOCK] covers the last
    ``KEY_BLOCK`` keys of the span, the only ones a row may not see (0 where visible, -inf after
    the row's position).

    A row at position p attends over exactly the keys 0 .. end of p's block (masked beyond p):
    the reduction length is a function of the position alone, whichever call computes the row,
    so the full pass and stepping sum the same terms in the same order (a sum's bits change with
    its length even when the extra terms are zero, measured: docs/engine.md).

    With a sliding ``window`` a row also may not see keys ``window`` or more positions back: the
    span then starts at the first key block any row of the block can see (a function of the
    block alone, so still of the position alone), and the mask covers all of it.
    """
    blocks = []
    for first in range(start, start + count):
        if first == start or first % KEY_BLOCK == 0:
            block = first // KEY_BLOCK
            stop = min(start + count, (block + 1) * KEY_BLOCK)
            span = (block + 1) * KEY_BLOCK
            low = max(0, (block * KEY_BLOCK - window + 1) // KEY_BLOCK * KEY_BLOCK) if window else 0
            positions = torch.arange(first, stop)[:, None]
            keys = torch.arange(low if window else span - KEY_BLOCK, span)[None, :]
            visible = (keys <= positions) & (keys > positions - window) if window else keys <= positions
            blocks.append((first, stop, low, span, torch.where(visible, 0.0, -math.inf)))
    return blocks


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class EngineStepper:
    """Advances ``batch`` sequences through the engine: one token per :meth:`step`, or many per :meth:`advance`.

    Since the engine is batch- and path-invariant, packing may advance whole segments while
    unpacking steps token by token, each with any batch: the logits are the same bits.
    """

    def __init__(self, engine, model_inputs, batch: int, length: int):
        self.engine = engine
        self.model_inputs = model_inputs
        self.cache = engine.new_cache(batch, max(length, 1))
        self.position = 0
        self.features: torch.Tensor | None = None  # the head's input of the last call, [B, T, hidden]
        # Tokens per :meth:`advance` when packing: one whole key block, so that each call's rows
        # share one attention span (64 ran 1.19 x faster than 32, fp32, measured here); a power
        # of two fewer where a large vocabulary (Gemma 3's 262,144) would outgrow LOGIT_BUDGET.
        rows = max(1, LOGIT_BUDGET // (max(batch, 1) * engine.logits_width))
        self.segment = min(KEY_BLOCK, 1 << (rows.bit_length() - 1))

    def step(self, token_ids) -> torch.Tensor:
        """Feed one token per sequence ([B]); next-token logits [B, V] as float32."""
        return self.advance(np.asarray(token_ids, dtype=np.int64)[:, None])[:, 0]

    def advance(self, token_ids: np.ndarray, trace: list | None = None) -> torch.Tensor:
        """Feed ``T`` tokens per sequence ([B, T]); logits after each, [B, T, V] float32; what
        learning needs goes to ``trace`` if given (exact engines only)."""
        inputs = torch.from_numpy(self.model_inputs(np.asarray(token_ids, dtype=np.int64)))
        features = []
        more = {} if trace is None else {"trace": trace}
        logits = self.engine.forward(inputs, self.position, self.cache, features, **more)
        self.features = features[0]
        self.position += inputs.shape[1]
        return logits


def probe_fingerprint(engine: LlamaEngine, vocab_size: int) -> str:
    """sha256 of the engine's logits on a fixed input: equal only where the kernels agree bit for bit."""
    ids = (torch.arange(2 * PROBE_LENGTH, dtype=torch.int64) * 7919 % vocab_size).view(2, PROBE_LENGTH)
    logits = engine.forward(ids, 0, engine.new_cache(2, PROBE_LENGTH))
    return hashlib.sha256(logits.contiguous().numpy().tobytes()).hexdigest()
