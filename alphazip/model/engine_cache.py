"""The exact engine's quantized weights, kept on disk so that a process starts without the model.

Building the exact engine means loading the model's float32 weights through transformers and
quantizing every matrix; loading the tensors that produced takes a fraction of that, and the
float weights are then never loaded at all. A file is named by the engine and the model's
fingerprint (weights, tokenizer, config), and records the probe the freshly built engine gave.
The probe is computed again on every load (a forward pass of 48 tokens), and a file whose engine
disagrees is built anew: a damaged or stale file never decides a bit.
"""

import os
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from . import exact
from .registry import cache_root


def load_or_build(model) -> tuple["exact.ExactEngine", str]:
    """``model``'s exact engine and its probe: from the cache when it holds a sound one, else
    built from the network's weights and cached."""
    path = cached_path(model.fingerprint)
    loaded = _load(path, model)
    if loaded is not None:
        return loaded
    engine = exact.ExactEngine(model.hf)
    probe = _probe(engine, model)
    _save(path, engine, probe)
    return engine, probe


def cached_path(fingerprint: str) -> Path:
    return cache_root() / "engines" / f"{exact.EXACT_ENGINE_NAME}-{fingerprint[:32]}.safetensors"


def _load(path: Path, model) -> tuple["exact.ExactEngine", str] | None:
    try:
        with safe_open(path, framework="pt") as handle:
            metadata = handle.metadata()
            state = {name: handle.get_tensor(name) for name in handle.keys()}
        engine = exact.ExactEngine.from_state(exact.ExactConfig.from_hf(model.config), int(metadata["layers"]), state)
    except (OSError, ValueError, KeyError, TypeError, SafetensorError):
        return None
    probe = _probe(engine, model)
    return (engine, probe) if probe == metadata.get("probe") else None


def _save(path: Path, engine: "exact.ExactEngine", probe: str) -> None:
    """Write atomically (a half-written file is never read); a read-only cache only costs time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        state = {name: tensor.contiguous() for name, tensor in engine.state().items()}
        save_file(state, temporary, metadata={"probe": probe, "layers": str(len(engine.layers))})
        temporary.replace(path)
    except OSError:
        pass


def _probe(engine: "exact.ExactEngine", model) -> str:
    return exact.probe_fingerprint(engine, model.tokenizer.vocab_size, model.bos_id)
