"""Hostile archive headers: values no writer would record, and JSON no writer would write.

The reader acts on the header before anything else (it picks the back-end, loads a model, sizes
buffers and thread pools from it), so each field gets the values that have broken readers
elsewhere: zero, negative, huge, the wrong type, paths that exist, names that almost match.
"""

import json
import random

from ..backends import backend_names

ENGINES = ("alphazip-exact-1", "alphazip-llama-2", "alphazip-gemma3-1", "transformers-static-step")
_WRONG_TYPES = (None, 5, 1.5, True, "x", [], {}, [1, 2], {"a": {"b": [1]}})
HOSTILE = {
    "top_k": (0, -1, 1, 2, 255, 299, 300, 1 << 20, (1 << 20) + 1, 10**12, 2**63, 2**64 + 1),
    "batch": (0, -1, 1, 10**6, 10**12, 2**63),
    "threads": (0, -1, 10**6, 2**40),
    "context": (0, -5, 1, 10**9, 2**63),
    "dtype": ("float16", "float64", "int8", "x", "", "bfloat16", "FLOAT32", "float32 "),
    "engine": ("x", "", "alphazip-exact-2", "ALPHAZIP-EXACT-1", *ENGINES),
    "probe": ("", "0" * 64, "x", "0" * 10_000),
    "model_fingerprint": ("", "ab", "0" * 64, "g" * 64, "x" * 10_000),
    "model": ("/", "tests/data/tiny-model", "tests/data", "../../etc", "", ".", "~", "/dev/zero", "/proc/self",
              "tests/data/tiny-model/config.json", "tiny\u0000model", "x" * 5_000),
    "backend": ("x", "", "../brotli", "Brotli", "base", "ByteBackend", *backend_names()),
    "mode": ("x", "", "raw", "model", "mixed", "RAW"),
    "versions": ({"torch": 5}, {"torch": {"a": [1]}}, {str(i): "x" for i in range(5_000)}, {"": ""}),
}


def hostile_value(rng: random.Random, key: str, current) -> object:
    """A hostile value for header field ``key`` whose present value is ``current``."""
    roll = rng.random()
    if roll < 0.2:
        return rng.choice(_WRONG_TYPES)
    if roll < 0.35 and isinstance(current, str) and current:
        return rng.choice((current[:12], current + "0", current.upper(), current[::-1], " " + current))
    return rng.choice(HOSTILE[key])


def hostile_fields(rng: random.Random, fields: dict) -> tuple[dict, str]:
    """``fields`` with one to three fields made hostile; also a label saying which."""
    fields = dict(fields)
    changed = []
    for key in rng.sample(sorted(HOSTILE), rng.choice((1, 1, 1, 2, 3))):
        fields[key] = hostile_value(rng, key, fields.get(key))
        changed.append(f"{key}={_short(fields[key])}")
    return fields, "header " + ", ".join(changed)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}...({len(text)} chars)"


def _dumps(fields: dict) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def _splice_value(fields: dict, key: str, raw: str) -> bytes:
    """The header's JSON with ``key``'s value replaced by the raw JSON text ``raw``."""
    marker = "\u0001marker\u0001"
    return _dumps(fields | {key: marker}).replace(json.dumps(marker).encode(), raw.encode())


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


# Header texts no writer makes, each a function of the true fields; a label names each.
RAW_HEADERS = {
    "unknown key": lambda f: _dumps(f | {"evil": 1}),
    "no backend": lambda f: _dumps({k: v for k, v in f.items() if k != "backend"}),
    "no mode": lambda f: _dumps({k: v for k, v in f.items() if k != "mode"}),
    "a list": lambda f: b"[]",
    "a string": lambda f: b'"model"',
    "a number": lambda f: b"5",
    "null": lambda f: b"null",
    "empty": lambda f: b"",
    "nested 100000 deep": lambda f: _splice_value(f, "versions", _deep(100_000)),
    "nested 900 deep": lambda f: _splice_value(f, "versions", _deep(900)),
    "invalid UTF-8": lambda f: _dumps(f | {"model": "\u0001"}).replace(b"\\u0001", b"\xff\xfe"),
    "lone surrogate": lambda f: _dumps(f | {"model": "\ud800"}),
    "NaN top_k": lambda f: _splice_value(f, "top_k", "NaN"),
    "Infinity batch": lambda f: _splice_value(f, "batch", "Infinity"),
    "1e999 threads": lambda f: _splice_value(f, "threads", "1e999"),
    "5000-digit top_k": lambda f: _splice_value(f, "top_k", "9" * 5_000),
    "-0 context": lambda f: _splice_value(f, "context", "-0"),
    "duplicate mode": lambda f: _dumps(f)[:-1] + b',"mode":"raw"}',
    "duplicate backend": lambda f: _dumps(f)[:-1] + b',"backend":"nope"}',
    "1 MB model name": lambda f: _dumps(f | {"model": "m" * (1 << 20)}),
    "byte-order mark": lambda f: b"\xef\xbb\xbf" + _dumps(f),
    "padded with spaces": lambda f: b"  \n" + _dumps(f) + b"\t ",  # still valid JSON: may decode
    "trailing comma": lambda f: _dumps(f)[:-1] + b",}",
    "two objects": lambda f: _dumps(f) + _dumps(f),
    "NUL after": lambda f: _dumps(f) + b"\x00",
}


def raw_header(rng: random.Random, fields: dict) -> tuple[bytes, str]:
    """A header text no writer makes, and a label saying which."""
    label = rng.choice(sorted(RAW_HEADERS))
    return RAW_HEADERS[label](fields), f"header {label}"
