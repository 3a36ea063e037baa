"""Blind mutations of bytes: what noise, a bad disk or a careless tool does to an archive."""

import random
from collections.abc import Callable

_INTERESTING = (0x00, 0x01, 0x7F, 0x80, 0xFF)  # boundaries of u8, of varint groups, of signs


def flip_bit(rng: random.Random, data: bytes, other: bytes) -> bytes:
    if not data:
        return data
    at = rng.randrange(len(data))
    return data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1:]


def set_byte(rng: random.Random, data: bytes, other: bytes) -> bytes:
    if not data:
        return data
    at = rng.randrange(len(data))
    value = rng.choice(_INTERESTING) if rng.random() < 0.5 else rng.randrange(256)
    return data[:at] + bytes([value]) + data[at + 1:]


def truncate(rng: random.Random, data: bytes, other: bytes) -> bytes:
    return data[:rng.randrange(len(data))] if data else data


def splice(rng: random.Random, data: bytes, other: bytes) -> bytes:
    """The head of one archive and the tail of another."""
    return data[:rng.randrange(len(data) + 1)] + other[rng.randrange(len(other) + 1):]


def insert_junk(rng: random.Random, data: bytes, other: bytes) -> bytes:
    at = rng.randrange(len(data) + 1)
    return data[:at] + rng.randbytes(rng.choice((1, 4, 16, 300))) + data[at:]


def append_junk(rng: random.Random, data: bytes, other: bytes) -> bytes:
    return data + rng.choice((b"\x00", b"\x00" * 64, rng.randbytes(rng.randrange(1, 100)), other))


def repeat_section(rng: random.Random, data: bytes, other: bytes) -> bytes:
    start = rng.randrange(len(data) + 1)
    stop = rng.randrange(start, len(data) + 1)
    return data[:stop] + data[start:stop] * rng.choice((1, 2, 10)) + data[stop:]


def delete_section(rng: random.Random, data: bytes, other: bytes) -> bytes:
    start = rng.randrange(len(data) + 1)
    return data[:start] + data[rng.randrange(start, len(data) + 1):]


MUTATIONS: dict[str, Callable[[random.Random, bytes, bytes], bytes]] = {
    "flip": flip_bit, "set": set_byte, "truncate": truncate, "splice": splice, "insert": insert_junk,
    "append": append_junk, "repeat": repeat_section, "delete": delete_section,
}
_WEIGHTS = {"flip": 5, "set": 5, "truncate": 2, "splice": 2, "insert": 2, "append": 1, "repeat": 2, "delete": 2}


def mutate(rng: random.Random, data: bytes, other: bytes, count: int) -> tuple[bytes, list[str]]:
    """``data`` after ``count`` mutations drawn at random (``other`` is spliced or appended
    from); also the mutations' names, in order."""
    names = rng.choices(list(_WEIGHTS), weights=list(_WEIGHTS.values()), k=count)
    for name in names:
        data = MUTATIONS[name](rng, data, other)
    return data, names
