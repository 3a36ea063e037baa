"""Auto mode's policy: which data the model is run on at all.

Data that looks binary is packed raw without loading the model; a frame that the model codes
no smaller than raw bytes is stored raw (``Compressor``), so auto never loses to its back-end.
"""

BINARY_SHARE = 0.10  # share of bytes that are invalid UTF-8 or control characters above which data is binary
BINARY_WINDOW, BINARY_WINDOWS = 1 << 16, 16  # looks_binary reads at most 16 windows of 64 KiB


def looks_binary(data: bytes) -> bool:
    """True when over ``BINARY_SHARE`` of the bytes are invalid UTF-8 or control characters.

    Large inputs are judged on evenly spaced windows, so the check stays quick on 100 MB files.
    """
    if not data:
        return False
    sample = b"".join(data[start:start + BINARY_WINDOW] for start in _window_starts(len(data)))
    text = sample.decode("utf-8", "surrogateescape")
    odd = sum(1 for char in text if ord(char) < 32 and char not in "\t\n\r\f\v" or 0xDC80 <= ord(char) <= 0xDCFF)
    return odd > BINARY_SHARE * len(text)


def _window_starts(size: int) -> range:
    if size <= BINARY_WINDOW * BINARY_WINDOWS:
        return range(0, size, BINARY_WINDOW)
    return range(0, size - BINARY_WINDOW + 1, (size - BINARY_WINDOW) // (BINARY_WINDOWS - 1))
