"""The kinds of hostile archive, and the one function that makes case number ``index``.

A case is a function of (seed, index) alone, so a run is reproducible whatever the number of
workers, and any one case can be made again from its number. Most kinds forge archives with
valid CRCs, since a CRC stops only noise: those reach the parts of the reader that act on what
an archive says (header values, tables, counts, payloads).
"""

import random
from collections.abc import Callable
from dataclasses import dataclass

from .. import container
from ..container import Archive
from . import format3, forgery, lies
from .headers import hostile_fields, raw_header
from .mutations import mutate
from .outcome import Case
from .seeds import Seeds


@dataclass(frozen=True)
class Kind:
    make: Callable[[random.Random, Seeds], Case]
    weight: int  # share of cases, out of the weights of the kinds asked for
    about: str


def valid(rng: random.Random, seeds: Seeds) -> Case:
    seed = rng.choice(seeds.all)
    return Case("valid", f"valid {seed.name}", seed.blob, (seed.original,), override=rng.random() < 0.8,
                original=seed.original)


def mutated(rng: random.Random, seeds: Seeds) -> Case:
    """Blind mutations of a valid archive; most of them with the CRCs made valid again (in
    format 3, half the time with each frame's CRC of its decoded bytes made that of its piece)."""
    seed, other = rng.choice(seeds.all), rng.choice(seeds.all)
    count = rng.choice((1, 1, 1, 2, 3, 5))
    roll = rng.random()
    if roll < 0.4:
        blob, names = mutate(rng, seed.blob, other.blob, count)
        label = "+".join(names)
    elif roll < 0.7:
        blob, label = _mutated_inside(rng, seed, other, count)
    else:
        blob, names = mutate(rng, seed.blob, other.blob, count)
        decoded = seed.pieces if rng.random() < 0.5 else None
        blob, label = forgery.fix_crcs(blob, decoded), f"fixed-CRC{'s' if decoded else ''} " + "+".join(names)
    right = (seed.original, other.original) if "splice" in label or "append" in label else (seed.original,)
    if label.endswith("append") and not label.startswith("re-CRC"):
        right = ()  # junk after a whole archive: any output means it was ignored
    return Case("mutate", f"mutate {label} on {seed.name}", blob, right, original=seed.original)


def _mutated_inside(rng: random.Random, seed, other, count: int) -> tuple[bytes, str]:
    """Mutate the header (JSON or compact), a frame body or the end record, then make the CRCs
    valid (format 3: each frame's CRC of its decoded bytes stays the true one)."""
    if seed.version == 1:
        content, names = mutate(rng, seed.blob[:-4], other.blob[:-4], count)
        return forgery.with_crc(content), "re-CRC " + "+".join(names)
    parts = forgery.split(seed.blob)
    target = rng.choice(["header", "end"] + ["body"] * 3 * bool(parts.bodies))
    if target == "header":
        donor = forgery.split(other.blob).header if other.version == seed.version else b"{}"
        parts.header, names = mutate(rng, parts.header, donor, count)
    elif target == "end":
        parts.end, names = mutate(rng, parts.end, b"", count)
    else:
        at = rng.randrange(len(parts.bodies))
        parts.bodies[at], names = mutate(rng, parts.bodies[at], rng.choice(parts.bodies), count)
        target = f"body {at}"
    return parts.write(), f"re-CRC {target} " + "+".join(names)


def hostile_header(rng: random.Random, seeds: Seeds) -> Case:
    """A valid format-2 archive under a header with hostile values or JSON no writer makes
    (format 3's compact headers: the "v3" kind)."""
    seed = rng.choice(seeds.v2)
    parts = forgery.split(seed.blob)
    fields = forgery.header_fields(seed.archive.header)
    parts.header, label = hostile_fields(rng, fields) if rng.random() < 0.75 else raw_header(rng, fields)
    parts.header = forgery.header_text(parts.header)
    names_model = "model" in label  # model=..., model_fingerprint=...: also resolve it without --model
    override = rng.random() < (0.5 if names_model else 0.85)
    return Case("header", f"{label} on {seed.name}", parts.write(), (seed.original,), override=override,
                original=seed.original)


def lying_frames(rng: random.Random, seeds: Seeds) -> Case:
    """Frames, tables or the trailer edited to lie (or to say odd but true things), in format 2
    or 3; CRCs valid. A lie the format cannot hold leaves the seed as it was: still right."""
    seed = rng.choice([s for s in seeds.framed if s.archive.frames])
    draft = lies.Draft.of(seed)
    label, right = lies.FRAME_LIES[rng.choice(sorted(lies.FRAME_LIES))](rng, draft, seeds)
    blob = draft.write()
    if blob == seed.blob:
        right, label = (seed.original,), f"{label} (not in the bytes)"
    return Case("frame", f"{label} on {seed.name}", blob, right, original=seed.original)


def byte_lies(rng: random.Random, seeds: Seeds) -> Case:
    seed = rng.choice(seeds.v2)
    blob, label, right = lies.byte_lie(rng, seed)
    return Case("varint", f"{label} on {seed.name}", blob, right, original=seed.original)


def bombs(rng: random.Random, seeds: Seeds) -> Case:
    """A stream replaced by a compression bomb, in format 2 or 3; or, as a control, an honest
    frame of 1 MiB of zeros whose payload is just as small (it must decode)."""
    seed = rng.choice([s for s in seeds.framed if _base_name(s).startswith(("model-", "raw-")) and len(s.pieces) == 1])
    draft = lies.Draft.of(seed)
    roll = rng.random()
    if roll < 0.25:
        label, right = lies.honest_zeros(rng, draft, seeds)
    elif roll < 0.4 and _base_name(seed) in ("model-brotli", "model-zstd"):  # the cheap ones to make 1 GiB of
        label, right = lies.frame_at_limits(rng, draft, seeds)
    elif roll < 0.4 and _base_name(seed) in ("raw-brotli", "raw-zstd"):
        label, right = lies.raw_at_limit(rng, draft, seeds)
    else:
        label, right = lies.bomb_stream(rng, draft, seeds)
    return Case("bomb", f"{label} on {seed.name}", draft.write(), right, original=seed.original)


def _base_name(seed) -> str:
    """A seed's name without its format's prefix: "v2-model-zstd" -> "model-zstd"."""
    return seed.name.removeprefix("v2-").removeprefix("v1-")


def version_1(rng: random.Random, seeds: Seeds) -> Case:
    seed = rng.choice(seeds.single)
    blob, label, right = lies.version_1_lie(rng, seed)
    return Case("v1", f"{label} on {seed.name}", blob, right, override=rng.random() < 0.9, original=seed.original)


def version_3(rng: random.Random, seeds: Seeds) -> Case:
    """A format-3 archive under a hostile compact header, or whose records and trailer lie."""
    seed = rng.choice(seeds.v3)
    override = rng.random() < 0.9
    if rng.random() < 0.45:
        blob, label, right, override = format3.hostile_header(rng, seed)
    else:
        blob, label, right = format3.record_lie(rng, seed)
    return Case("v3", f"{label} on {seed.name}", blob, right, override=override, original=seed.original)


def mixed(rng: random.Random, seeds: Seeds) -> Case:
    """Frames of several seeds under one header, trailer to match, in format 2 or 3: consistent
    when they share the header's back-end and engine (then it must decode), else refused."""
    base = rng.choice([s for s in seeds.framed if _base_name(s).startswith("model-")])
    backend, engine = base.archive.header.backend, base.archive.header.engine
    pool = [(frame, piece) for s in seeds.framed if s.version == base.version
            for frame, piece in zip(s.archive.frames, s.pieces) if s.archive.header.backend == backend
            or rng.random() < 0.05]
    chosen = rng.choices(pool, k=rng.choice((1, 2, 3, 5)))
    data = b"".join(piece for _, piece in chosen)
    archive = Archive(base.archive.header, [frame for frame, _ in chosen], *container.original_identity(data))
    label = f"{len(chosen)} frames ({', '.join(f.mode for f, _ in chosen)}) under {backend}/{engine}, v{base.version}"
    return Case("mixed", label, forgery.write_archive(archive, base.version), (data,), override=rng.random() < 0.9,
                original=data)


def reader_only(rng: random.Random, seeds: Seeds) -> Case:
    """Any other kind's archive, only read and described (what ``alphazip info`` does)."""
    kind = rng.choice(["mutate", "header", "frame", "varint", "v1", "v3"])
    case = KINDS[kind].make(rng, seeds)
    return Case("read", f"read {case.name}", case.blob, (), reader_only=True)


KINDS = {
    "valid": Kind(valid, 2, "valid seed archives, as they are (must decode exactly)"),
    "mutate": Kind(mutated, 26, "blind mutations: bit flips, bytes, truncation, splices, junk, repeats"),
    "header": Kind(hostile_header, 12, "hostile header values and JSON (format 2), CRCs valid"),
    "frame": Kind(lying_frames, 16, "lying frame sizes, chunk tables, CRCs, streams, frame lists (formats 2, 3)"),
    "varint": Kind(byte_lies, 8, "lying counts, lengths, tags and varints past 64 bits (format 2)"),
    "bomb": Kind(bombs, 1, "compression bombs in every back-end (formats 2, 3)"),
    "v1": Kind(version_1, 8, "format 1 archives: hostile headers, lying counts and sizes"),
    "v3": Kind(version_3, 20, "format 3 archives: hostile compact headers, lying records and trailers"),
    "mixed": Kind(mixed, 5, "frames of several archives under one header (formats 2, 3)"),
    "read": Kind(reader_only, 2, "any of the above through container.read and describe only"),
}


def make_case(index: int, seed: int, seeds: Seeds, kinds: list[str] | None = None) -> Case:
    """Case number ``index`` of the run seeded ``seed``, drawn from ``kinds`` (default: all)."""
    rng = random.Random(f"{seed}/{index}")
    names = kinds or list(KINDS)
    kind = rng.choices(names, weights=[KINDS[name].weight for name in names])[0]
    case = KINDS[kind].make(rng, seeds)
    case.kind = kind
    return case
