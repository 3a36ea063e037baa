"""Which model an archive is decoded with, found by fingerprint and checked before any token.

The name an archive records is only shown, never loaded: a stranger's archive must not choose
a folder of this disk to load, nor anything to fetch but a verified built-in. The model is
found by its fingerprint among those loaded in this process, the built-in ones and the local
model folders, then its engine, fingerprint and probe are compared with the archive's.
"""

from pathlib import Path

from .container import Header
from .errors import AlphazipError, ModelMismatchError, ModelNotFoundError, UnsupportedFormatError
from .model import BUILTIN_MODELS, LanguageModel
from .model.lm import ENGINES
from .model.registry import PREFIX_HEX, builtin_with_fingerprint, find_by_fingerprint, fingerprint_matches, model_dirs
from .report import setup_difference


class ModelCache:
    """Loaded models by (spec, dtype), so that a process loads each model once."""

    def __init__(self):
        self._models: dict[tuple[str, str], LanguageModel] = {}

    def get(self, spec: str, dtype: str, log=lambda message: None) -> LanguageModel:
        key = (spec, dtype)
        if key not in self._models:
            self._models[key] = LanguageModel.load(spec, dtype, log)
        return self._models[key]

    def add(self, model: LanguageModel) -> None:
        """Register an already-built model (tests build tiny ones) under its name."""
        self._models[(model.name, model.dtype)] = model

    def find(self, fingerprint: str, dtype: str) -> str | None:
        """The spec of a loaded model with ``fingerprint`` (one in ``dtype`` first), if any."""
        matches = [key for key, model in self._models.items() if fingerprint_matches(fingerprint, model.fingerprints)]
        matches.sort(key=lambda key: key[1] != dtype)
        return matches[0][0] if matches else None


MODELS = ModelCache()


def model_spec(header: Header, models: ModelCache, override: str | None = None) -> str:
    """Which model to load for ``header``: ``override`` (``--model``) if given, else the one whose
    fingerprint the archive records, among ``models``, the built-in models and the local model
    folders (:func:`model_dirs`)."""
    if override is not None:
        folder = Path(override).expanduser()
        if override in BUILTIN_MODELS or (folder / "config.json").is_file() or not folder.is_dir():
            return override  # a model: check_model compares its fingerprint
        found = find_by_fingerprint(header.model_fingerprint, [folder])
        if found is None:
            raise ModelNotFoundError(f"no model in {override} has fingerprint {header.model_fingerprint[:12]}, "
                                     f"which the archive needs (it was packed with {model_name(header)})")
        return str(found)
    fingerprint = header.model_fingerprint
    found = models.find(fingerprint, header.dtype) or builtin_with_fingerprint(fingerprint)
    found = found or find_by_fingerprint(fingerprint)
    if found is not None:
        return str(found)
    places = ", ".join(map(str, model_dirs()))
    raise ModelNotFoundError(f"archive needs {model_name(header)} (fingerprint {fingerprint[:12]}), which is "
                             f"neither a built-in model nor in {places}; pass --model FOLDER")


def model_name(header: Header) -> str:
    """How errors name an archive's model: format 3 records names only for the built-ins."""
    return f"model {header.model!r}" if header.model else "a local model"


def check_engine_known(header: Header) -> None:
    if header.engine not in ENGINES:
        raise UnsupportedFormatError(f"archive needs inference engine {header.engine!r}, which this build lacks "
                                     f"(it has {', '.join(ENGINES)})")


def check_model(header: Header, model: LanguageModel) -> None:
    """``model`` runs the archive's engine and has its fingerprint and probe, or a one-line error."""
    if header.engine not in model.engines:
        raise ModelMismatchError(f"archive needs inference engine {header.engine!r}; "
                                 f"this build runs {model.name!r} on {', '.join(model.engines)}")
    if not fingerprint_matches(header.model_fingerprint, model.fingerprints):
        raise ModelMismatchError(
            f"archive was packed with {model_name(header)} (fingerprint {header.model_fingerprint[:12]}), "
            f"not {model.name!r} ({model.fingerprint[:12]})")
    if not _probe_matches(header.probe, model.probe(header.engine)):  # before anything is decoded or written
        if model.exact(header.engine):  # the same on every machine: the model or the code differs
            raise ModelMismatchError(
                f"engine {header.engine} gives other logits here than when the archive was packed (probe "
                f"fingerprint {model.probe(header.engine)[:12]}, archive {header.probe[:12]}): a changed model "
                f"file or a damaged archive")
        raise ModelMismatchError(
            f"this machine's kernels give other logits than the packing machine's (probe fingerprint "
            f"{model.probe(header.engine)[:12]}, archive {header.probe[:12]}){setup_difference(header)}")


def _probe_matches(recorded: str, probe: str) -> bool:
    """The archive's probe (whole, or its first 16 hex digits in a compact archive) against this
    machine's; engines without a probe have "" on both sides."""
    if not probe:
        return recorded == ""
    return len(recorded) in (PREFIX_HEX, len(probe)) and probe.startswith(recorded)


def engine_for(model: LanguageModel, choice: str) -> str:
    """The inference path ``choice`` names for ``model`` ("auto": the model's preferred one)."""
    if choice == "auto":
        if not model.exact(model.engines[0]):
            raise AlphazipError(f"the exact engine does not cover {model.name!r}, so its archives would decode only on "
                                f"this kind of machine; pass --engine {model.engines[0]} to pack it anyway")
        return model.engines[0]
    if choice not in model.engines:
        raise AlphazipError(f"engine {choice!r} does not run {model.name!r}; it runs on {', '.join(model.engines)}")
    return choice
