"""Gemma 3 on the invariant engine: the Llama pass with Gemma's extra norms, scaling and windows.

What differs from Llama, each as transformers' Gemma3ForCausalLM computes it: embeddings scaled
by sqrt(hidden size); RMSNorm weights used as ``1 + w``; RMSNorm on each query and key head
before RoPE; scores divided by sqrt(``query_pre_attn_scalar``); norms after attention and after
the MLP as well as before; a tanh-approximated GELU gate; and most layers attending over a
sliding window of recent keys, with their own RoPE base. A windowed row reads the key blocks
from the first one its block can see, masked: a span still fixed by its position alone.
"""

import math

import torch
import torch.nn.functional as F

from .engine import KVCache, LlamaEngine, _key_blocks, linear, rms_norm

GEMMA3_ENGINE_NAME = "alphazip-gemma3-1"  # recorded in headers; bump when the arithmetic changes
SLIDING = "sliding_attention"


def supports(config) -> bool:
    """Whether this engine computes ``config``'s model: Gemma 3 text with plain RoPE (the larger
    Gemma 3 models scale theirs) and no soft-capping inside attention; others stay on transformers."""
    ropes = (getattr(config, "rope_parameters", None) or {}).values()
    return (config.model_type == "gemma3_text" and not getattr(config, "attention_bias", False)
            and getattr(config, "hidden_activation", None) == "gelu_pytorch_tanh"
            and getattr(config, "attn_logit_softcapping", None) is None
            and not getattr(config, "use_bidirectional_attention", False)
            and all(isinstance(rope, dict) and rope.get("rope_type") == "default" for rope in ropes))


class Gemma3Engine(LlamaEngine):
    """A batch-invariant forward pass over a transformers Gemma 3 model's weights."""

    def __init__(self, hf_model, dtype: torch.dtype):
        super().__init__(hf_model, dtype)
        config = hf_model.config
        inner = hf_model.model
        # Scaled after the lookup, as transformers does: a scaled copy of the table would add 671 MB.
        self.embed_scale = torch.tensor(config.hidden_size ** 0.5, dtype=torch.float32)
        self.final_norm = 1.0 + inner.norm.weight.detach().float()
        self.score_divisor = math.sqrt(config.query_pre_attn_scalar)
        self.softcap = getattr(config, "final_logit_softcapping", None)
        self.layer_types = list(config.layer_types)
        self.window = config.sliding_window
        self.inv_freqs = {kind: self._inverse_frequencies(config.rope_parameters[kind]["rope_theta"])
                          for kind in set(self.layer_types)}

    def _layer(self, layer) -> dict:
        weights = super()._layer(layer)
        attention = layer.self_attn
        norms = {"norm1": layer.input_layernorm, "post_attention": layer.post_attention_layernorm,
                 "norm2": layer.pre_feedforward_layernorm, "post_mlp": layer.post_feedforward_layernorm,
                 "q_norm": attention.q_norm, "k_norm": attention.k_norm}
        return weights | {name: 1.0 + norm.weight.detach().float() for name, norm in norms.items()}

    def _norm_heads(self, q: torch.Tensor, k: torch.Tensor, w: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return rms_norm(q, w["q_norm"], self.eps), rms_norm(k, w["k_norm"], self.eps)

    @torch.inference_mode()
    def forward(self, tokens: torch.Tensor, start: int, cache: KVCache, features: list | None = None
                ) -> torch.Tensor:
        """Logits [batch, T, vocab] (float32) for ``tokens`` [batch, T] at positions start..start+T-1;
        the head's input [batch, T, hidden] (float32) is appended to ``features`` if given."""
        count = tokens.shape[1]
        x = self.embed[tokens] * self.embed_scale  # [B, T, hidden], float32 residual stream
        ropes = {kind: self._rope(start, count, inv_freq) for kind, inv_freq in self.inv_freqs.items()}
        blocks = {kind: _key_blocks(start, count, self.window if kind == SLIDING else None) for kind in self.inv_freqs}
        for index, (w, kind) in enumerate(zip(self.layers, self.layer_types)):
            h = rms_norm(x, w["norm1"], self.eps).to(self.dtype)
            attended = self._self_attention(h, w, cache, index, start, ropes[kind], blocks[kind])
            x = x + rms_norm(linear(attended, w["o"]).float(), w["post_attention"], self.eps)
            h = rms_norm(x, w["norm2"], self.eps).to(self.dtype)
            hidden = F.gelu(linear(h, w["gate"]).float(), approximate="tanh") * linear(h, w["up"]).float()
            x = x + rms_norm(linear(hidden.to(self.dtype), w["down"]).float(), w["post_mlp"], self.eps)
        x = rms_norm(x, self.final_norm, self.eps).to(self.dtype)
        if features is not None:
            features.append(x.float())
        logits = linear(x, self.head_t).float()
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits
