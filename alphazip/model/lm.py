"""A causal LM behind one narrow interface: advance a batch of sequences one token at a time.

Nothing outside this package knows about transformers, KV caches or devices. The fingerprint
names everything the logits depend on that a file could change: weights, config, tokenizer.
"""

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .. import recall
from ..errors import ModelNotFoundError
from ..tokenize import ByteTokenizer
from . import engine_cache, exact, gemma, resolved
from .engine import ENGINE_NAME, EngineStepper, LlamaEngine, probe_fingerprint
from .engine import supports as llama_supports
from .exact import EXACT_ENGINE_NAME, ExactEngine
from .learning import EVERY as LEARNING_EVERY
from .learning import LEARNING_ENGINES, Learner
from .registry import BUILTIN_MODELS, FINGERPRINT_MEMO, cache_root, file_sha256, pull, remember_fingerprints

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
TRANSFORMERS_ENGINE = "transformers-static-step"  # lockstep stepping through transformers, static KV cache
# Our batch-invariant engines by the name archives record, each built as engine(hf_model, dtype).
# Only the exact one gives the same bits on every CPU; the float ones still decode their old archives.
INVARIANT_ENGINES = {EXACT_ENGINE_NAME: lambda hf_model, dtype: ExactEngine(hf_model),
                     **{name: lambda hf_model, dtype: ExactEngine(hf_model) for name in LEARNING_ENGINES},  # their forward pass
                     ENGINE_NAME: LlamaEngine, gemma.GEMMA3_ENGINE_NAME: gemma.Gemma3Engine}
EXACT_ENGINES = (EXACT_ENGINE_NAME, *LEARNING_ENGINES)
ENGINES = (*INVARIANT_ENGINES, TRANSFORMERS_ENGINE)  # every name an archive may record


def native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX-512 BF16, AMX): there bf16 is faster than
    fp32; elsewhere (AVX2) torch emulates it about 8 x slower (measured, docs/engine.md)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class LanguageModel:
    """A loaded causal LM with its byte-exact tokenizer and identity."""

    def __init__(self, config, tokenizer: ByteTokenizer, name: str, weights_digest: str, dtype: str,
                 load_network: Callable[[], torch.nn.Module], keep_engine: bool = False):
        self.config = config
        self.tokenizer = tokenizer
        self.name = name
        self.dtype = dtype
        self.bos_id = _start_token(config, tokenizer)
        # Identity of what decoding depends on, independent of where the files sit. Archives
        # record the first; the second, over fewer config fields, is what older archives record.
        self.fingerprint = _identity(weights_digest, tokenizer, _config_identity(config, LOGIT_FIELDS))
        self.fingerprints = (self.fingerprint,
                             _identity(weights_digest, tokenizer, _config_identity(config, LEGACY_FIELDS)))
        # The network's float weights are loaded only when something needs them: the exact engine
        # of a model on disk comes from its cached quantized weights (``engine_cache``).
        self._load_network, self._network = load_network, None
        self._keep_engine = keep_engine
        self._invariant_engines: dict[str, LlamaEngine] = {}  # built on first use
        self._probes: dict[str, str] = {}

    @property
    def hf(self) -> torch.nn.Module:
        """The transformers network (loaded on first use)."""
        if self._network is None:
            self._network = self._load_network().eval()
        return self._network

    @classmethod
    def from_hf(cls, hf_model, hf_tokenizer, name: str, dtype: str = "float32") -> "LanguageModel":
        """Wrap an in-memory model (tests build tiny ones); its weights are hashed as loaded."""
        digest = hashlib.sha256()
        for key, tensor in sorted(hf_model.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().to(torch.float32).contiguous().numpy().tobytes())
        network = hf_model.to(DTYPES[dtype])
        return cls(hf_model.config, ByteTokenizer.from_hf(hf_tokenizer), name, digest.hexdigest(), dtype, lambda: network)

    @classmethod
    def load(cls, spec: str, dtype: str = "float32", log=lambda message: None) -> "LanguageModel":
        """Load a built-in model by name (fetching it on first use) or a local HF folder."""
        folder = resolve(spec, log)
        config, tokenizer = resolved.load(folder, LOGIT_FIELDS)  # transformers only on a folder's first load
        model = cls(config, tokenizer, spec, weights_digest(folder), dtype, lambda: _network(folder, dtype), keep_engine=True)
        if spec in BUILTIN_MODELS:
            _remember_fingerprint(folder, model.fingerprint)
        else:
            remember_fingerprints(folder, model.fingerprints)
        return model

    @property
    def logits_size(self) -> int:
        """Width of the logits the model returns (may exceed the tokenizer's vocabulary)."""
        return self.config.vocab_size

    @property
    def engines(self) -> tuple[str, ...]:
        """Inference paths this model runs on, preferred first.

        Llama and Gemma 3 models run on the exact engine (the same bits on every CPU, any batch
        and thread count); the float engines and the transformers lockstep path remain for the
        archives that name them. Other models run only on the latter.
        """
        config = self.config
        if llama_supports(config):
            return EXACT_ENGINE_NAME, *LEARNING_ENGINES, ENGINE_NAME, TRANSFORMERS_ENGINE
        if gemma.supports(config):
            return EXACT_ENGINE_NAME, gemma.GEMMA3_ENGINE_NAME, TRANSFORMERS_ENGINE
        if config.model_type == "llama":
            # A Llama variant our engine does not compute exactly (biases, scaled RoPE) packs on
            # transformers; ours still decodes what it packed before this check existed.
            return TRANSFORMERS_ENGINE, ENGINE_NAME
        return (TRANSFORMERS_ENGINE,)

    def decoding_memory(self, engine: str, length: int) -> int:
        """Bytes that decoding one chunk of ``length`` tokens allocates (a batch: that many times
        as much): its KV cache, one step's logits and activations with their temporaries (the
        ``ac`` coder's bias over the vocabulary and the biased logits among them) and its states
        in ``ac``'s recall; where the model learns, also what a learning step keeps of each of its
        positions (the float master weights and moments, about 12 bytes a learned weight, come once
        per group on top)."""
        config = self.config
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        per_key = 2 * head_dim  # a key and a value
        # The exact engine keeps them as int8 with a float32 scale each; the others in their dtype.
        per_key = per_key + 8 if self.exact(engine) else per_key * DTYPES[self.dtype].itemsize
        cache = config.num_hidden_layers * config.num_key_value_heads * per_key * -(-length // 64) * 64
        step = 10 * 4 * (config.vocab_size + config.intermediate_size + config.hidden_size)
        learning = 0
        if self.learns(engine):  # per position: attention's output, the residual, gate and up, per layer
            kept = (2 * config.hidden_size + 2 * config.intermediate_size) * config.num_hidden_layers
            if LEARNING_ENGINES[engine].head:  # and the head's input and the loss gradient at the logits
                kept += config.hidden_size + config.vocab_size
            if LEARNING_ENGINES[engine].attention:  # the residual before attention, the queries and steps
                kept += (config.hidden_size + config.hidden_size // 4 + config.num_attention_heads) * config.num_hidden_layers
            learning = min(length, LEARNING_EVERY) * kept * 4
        return cache + step + length * recall.BYTES_PER_POSITION + learning

    def invariant(self, engine: str) -> bool:
        """Whether ``engine``'s logits are independent of batching, path and thread count."""
        return engine in INVARIANT_ENGINES

    @staticmethod
    def exact(engine: str) -> bool:
        """Whether ``engine``'s logits are also independent of the CPU and the libraries' kernels."""
        return engine in EXACT_ENGINES

    def stepper(self, batch_size: int, length: int, engine: str = TRANSFORMERS_ENGINE, learner: Learner | None = None):
        """A fresh state for ``batch_size`` sequences of at most ``length`` tokens on ``engine``
        (on ``learner``'s engine where given)."""
        if learner is not None:
            return EngineStepper(learner.engine, self.tokenizer.model_inputs, batch_size, length)
        if self.invariant(engine):
            return EngineStepper(self._engine(engine), self.tokenizer.model_inputs, batch_size, length)
        return Stepper(self, batch_size, length)

    @staticmethod
    def learns(engine: str) -> bool:
        """Whether ``engine`` learns from the text as it codes (``learning``)."""
        return engine in LEARNING_ENGINES

    @staticmethod
    def learns_head(engine: str) -> bool:
        """Whether ``engine``'s model also learns its output embedding as it codes."""
        return engine in LEARNING_ENGINES and LEARNING_ENGINES[engine].head

    def learner(self, engine: str) -> Learner | None:
        """A fresh learner for one group of chunks where ``engine`` learns as it codes, else None."""
        if not self.learns(engine):
            return None
        return Learner(self._engine(EXACT_ENGINE_NAME), self.hf, LEARNING_ENGINES[engine])

    def probe(self, engine: str) -> str:
        """Fingerprint of ``engine``'s logits on a fixed input ("" for engines without one)."""
        if not self.invariant(engine):
            return ""
        if self.learns(engine):  # its forward pass: learning starts from the same logits
            return self.probe(EXACT_ENGINE_NAME)
        built = self._engine(engine)  # an exact engine loaded from its cache comes with its probe, checked
        if engine not in self._probes:
            if self.exact(engine):
                probe = exact.probe_fingerprint(built, self.tokenizer.vocab_size, self.bos_id)
            else:
                probe = probe_fingerprint(built, self.tokenizer.vocab_size)
            self._probes[engine] = probe
        return self._probes[engine]

    def _engine(self, name: str):
        if self.learns(name):  # the exact engine's forward pass; learning copies it (``learner``)
            name = EXACT_ENGINE_NAME
        if name not in self._invariant_engines:
            if name == EXACT_ENGINE_NAME and self._keep_engine:
                engine, self._probes[name] = engine_cache.load_or_build(self)
            else:
                engine = INVARIANT_ENGINES[name](self.hf, DTYPES[self.dtype])
            self._invariant_engines[name] = engine
        return self._invariant_engines[name]


class Stepper:
    """Advances ``batch_size`` sequences one token per :meth:`step` over a preallocated KV cache.

    A static cache, not a growing one: appending to a dynamic cache copies it every step, which
    made 1,024-token chunks a third slower (63 vs 96 tokens/s, fp32, batch 16, measured here).
    """

    segment = 1  # tokens per :meth:`advance`: lockstep, since batching changes the logits here

    def __init__(self, model: LanguageModel, batch_size: int, length: int):
        from transformers import StaticCache

        self.model = model
        self.batch_size = batch_size
        self._cache = StaticCache(config=model.hf.config, max_cache_len=max(length, 1))
        self._position = 0

    @torch.inference_mode()
    def step(self, token_ids: np.ndarray) -> torch.Tensor:
        """Feed one token per sequence (shape [B]); return next-token logits [B, V] as float32."""
        inputs = torch.from_numpy(self.model.tokenizer.model_inputs(np.asarray(token_ids, dtype=np.int64)))
        out = self.model.hf(input_ids=inputs[:, None], cache=self._cache, use_cache=True,
                            cache_position=torch.tensor([self._position]))
        self._position += 1
        return out.logits[:, -1, :].float()

    def advance(self, token_ids: np.ndarray) -> torch.Tensor:
        """:meth:`step` for ``token_ids`` [B, 1]: lockstep allows one token per call."""
        if token_ids.shape[1] != 1:
            raise ValueError("the transformers path must step one token at a time")
        return self.step(token_ids[:, 0])[:, None]


def _network(folder: Path, dtype: str) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype=DTYPES[dtype])


def resolve(spec: str, log=lambda message: None) -> Path:
    """The folder holding model ``spec``: a built-in name (pulled if needed) or a local folder."""
    if spec in BUILTIN_MODELS:
        return pull(spec, log)
    path = Path(spec).expanduser()
    if (path / "config.json").is_file():
        return path
    if path.suffix == ".gguf":
        raise ModelNotFoundError(f"{spec}: load GGUF files through a built-in model name, or convert it to a folder first")
    known = ", ".join(BUILTIN_MODELS)
    raise ModelNotFoundError(f"model {spec!r} is neither a built-in model ({known}) nor a folder with config.json")


def weights_digest(folder: Path) -> str:
    """sha256 over the folder's weight files, memoized by (path, size, mtime) in the cache."""
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    if not files:
        raise ModelNotFoundError(f"{folder} holds no weights (*.safetensors or *.bin)")
    memo_path = cache_root() / "digests.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        key = f"{file.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        if key not in memo:
            memo[key] = file_sha256(file)
        digest.update(memo[key].encode())
    _write_memo(memo_path, memo)
    return digest.hexdigest()


def _remember_fingerprint(folder: Path, fingerprint: str) -> None:
    """Write a built-in model's fingerprint beside it, for ``alphazip models`` to show."""
    memo = folder / FINGERPRINT_MEMO
    try:
        if not memo.is_file() or memo.read_text().strip() != fingerprint:
            memo.write_text(fingerprint + "\n")
    except OSError:
        pass  # a read-only cache only loses the listing's fingerprint


def _write_memo(path: Path, memo: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(memo))
        temporary.replace(path)
    except OSError:
        pass  # a read-only cache only costs a re-hash next time


# Config fields the fingerprint covers. A list, not the whole config: a new transformers release
# adds fields with defaults, which must not orphan every archive; but every field that the forward
# pass of an engine reads is here, so that an edited config is refused before anything is decoded.
LEGACY_FIELDS = ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads", "intermediate_size", "rms_norm_eps", "rope_parameters", "rope_theta",
                 "tie_word_embeddings")
LOGIT_FIELDS = (*LEGACY_FIELDS, "bos_token_id", "head_dim", "hidden_act", "hidden_activation", "attention_bias",
                "mlp_bias", "rope_scaling", "rope_local_base_freq", "sliding_window", "layer_types",
                "query_pre_attn_scalar", "final_logit_softcapping", "attn_logit_softcapping",
                "use_bidirectional_attention", "partial_rotary_factor")


def _config_identity(config, fields: tuple[str, ...]) -> dict:
    identity = {key: getattr(config, key, None) for key in fields}
    if fields is not LEGACY_FIELDS:
        identity["fields"] = "logits-1"  # names this list: a longer one later gives other digests
    return identity


def _identity(weights_digest: str, tokenizer: ByteTokenizer, config: dict) -> str:
    identity = {"weights": weights_digest, "tokenizer": tokenizer.fingerprint, "config": config}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def _start_token(config, tokenizer: ByteTokenizer) -> int:
    """The id every chunk starts from: the config's BOS, else the tokenizer's, else 0."""
    if isinstance(config.bos_token_id, int):
        return config.bos_token_id  # the usual case: the transformers tokenizer is not loaded
    for candidate in (tokenizer.hf.bos_token_id, tokenizer.hf.eos_token_id):
        if isinstance(candidate, int):
            return candidate
    return 0
