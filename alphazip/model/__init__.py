"""Language models: loading, identity, and stepping a batch one token at a time.

The registry (names, fingerprints, the cache) imports nothing heavy; what needs torch and
transformers is imported on first use, so that reading an archive's header, or a raw archive,
starts in a fraction of a second.
"""

from .registry import BUILTIN_MODELS, DEFAULT_MODEL, is_cached, pull

__all__ = ["BUILTIN_MODELS", "DEFAULT_MODEL", "DTYPES", "LanguageModel", "Stepper", "is_cached", "pull"]


def __getattr__(name: str):
    if name in ("DTYPES", "LanguageModel", "Stepper"):
        from . import lm

        return getattr(lm, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
