"""What transformers makes of a model folder, recorded so that later processes need not import it.

Reading a folder's config and tokenizer through transformers costs a process about 2 s of
imports, on every start. What alphazip reads of them is small: the config fields the logits
depend on (``lm.LOGIT_FIELDS``, which are also all the engines read), and the tokenizer, which
for most folders is tokenizer.json exactly as the ``tokenizers`` library loads it. The first
load of a folder goes through transformers and records both; later loads read the record.

A record is named by the sha256 of every file transformers reads here and by its version, so an
edited file or another transformers release is resolved afresh: the config fields, and so the
model's fingerprint, are always those transformers gives. A tokenizer that transformers builds
otherwise than tokenizer.json says (another serialization) is recorded as such and keeps being
loaded through transformers.
"""

import hashlib
import json
import os
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

from ..tokenize import ByteTokenizer
from .registry import cache_root, file_sha256

# The files AutoConfig and AutoTokenizer read from a folder (the weights are hashed apart).
READ_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
              "added_tokens.json", "tokenizer.model", "vocab.json", "merges.txt")


class RecordedConfig(SimpleNamespace):
    """A model config's recorded fields; ``getattr(config, name, None)`` reads it as it read
    transformers' config, where a field the model lacks is absent or None alike."""


def load(folder: Path, fields: tuple[str, ...]):
    """(config, ByteTokenizer) of the model in ``folder``: from its record if there is one,
    else through transformers, recording ``fields`` of the config for next time."""
    path = record_path(folder)
    record = _read(path, fields)
    if record is not None:
        config = RecordedConfig(**record["config"])
        if record["tokenizer_file"]:
            return config, _file_tokenizer(folder)
        return config, ByteTokenizer.from_hf(_hf_tokenizer(folder))
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder)
    hf_tokenizer = _hf_tokenizer(folder)
    _write(path, config, fields, hf_tokenizer, folder)
    return config, ByteTokenizer.from_hf(hf_tokenizer)


def record_path(folder: Path) -> Path:
    """Where the record of ``folder`` as it is now, under this transformers, is kept."""
    digest = hashlib.sha256(f"transformers {metadata.version('transformers')}\n".encode())
    for name in READ_FILES:
        file = folder / name
        digest.update(f"{name} {file_sha256(file) if file.is_file() else '-'}\n".encode())
    return cache_root() / "resolved" / f"{digest.hexdigest()[:32]}.json"


def _file_tokenizer(folder: Path) -> ByteTokenizer:
    from tokenizers import Tokenizer

    return ByteTokenizer(Tokenizer.from_file(str(folder / "tokenizer.json")), lambda: _hf_tokenizer(folder))


def _hf_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def _read(path: Path, fields: tuple[str, ...]) -> dict | None:
    try:
        record = json.loads(path.read_text())
        config = record["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(config, dict) or set(config) != set(fields) or not isinstance(record.get("tokenizer_file"), bool):
        return None
    return record


def _write(path: Path, config, fields: tuple[str, ...], hf_tokenizer, folder: Path) -> None:
    """Record the config's ``fields`` where JSON keeps them as they are (else record nothing:
    this folder keeps loading through transformers), and whether the tokenizer is its file."""
    values = {name: getattr(config, name, None) for name in fields}
    try:
        if json.loads(json.dumps(values)) != values:
            return  # tuples and the like would come back as other types
    except (TypeError, ValueError):
        return
    from tokenizers import Tokenizer

    file = folder / "tokenizer.json"
    same = file.is_file() and Tokenizer.from_file(str(file)).to_str() == hf_tokenizer.backend_tokenizer.to_str()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps({"transformers": metadata.version("transformers"), "folder": str(folder),
                                         "config": values, "tokenizer_file": same}, indent=1))
        temporary.replace(path)
    except OSError:
        pass  # a read-only cache: every load goes through transformers
