"""Language models: loading, identity, and stepping a batch one token at a time."""

from .lm import DTYPES, LanguageModel, Stepper
from .registry import BUILTIN_MODELS, DEFAULT_MODEL, is_cached, pull

__all__ = ["BUILTIN_MODELS", "DEFAULT_MODEL", "DTYPES", "LanguageModel", "Stepper", "is_cached", "pull"]
