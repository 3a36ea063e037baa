"""The exceptions alphazip raises. Every failure a user can cause is one of these."""


class AlphazipError(Exception):
    """Base class: a clear, one-line reason why alphazip could not do what was asked."""


class BadArchiveError(AlphazipError):
    """The input is not an alphazip archive, or it is corrupt, truncated or has trailing junk."""


class UnsupportedFormatError(BadArchiveError):
    """The archive was written by a format version or a setting this build does not know."""


class ModelMismatchError(AlphazipError):
    """The archive needs a different model (or tokenizer, dtype, engine) than the one given."""


class ModelNotFoundError(AlphazipError):
    """A model was named that is neither known, cached, nor a readable local path."""


class ChecksumError(BadArchiveError):
    """Decoded data does not match the checksum recorded when it was packed."""


class MemoryLimitError(AlphazipError):
    """Unpacking an archive would need more memory than the limit allows."""
