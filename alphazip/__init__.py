"""alphazip: lossless compression with a language model as the predictor.

>>> blob = alphazip.compress(data, backend="brotli")
>>> assert alphazip.decompress(blob) == data
"""

from .api import Compressor, Decompressor, Settings, compress, decompress
from .report import describe
from .errors import (AlphazipError, BadArchiveError, ChecksumError, MemoryLimitError, ModelMismatchError,
                     ModelNotFoundError, UnsupportedFormatError)

__version__ = "0.1.0"
__all__ = [
    "AlphazipError", "BadArchiveError", "ChecksumError", "Compressor", "Decompressor", "MemoryLimitError",
    "ModelMismatchError", "ModelNotFoundError", "Settings", "UnsupportedFormatError", "compress", "decompress", "describe",
]
