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
from . import forgery, lies
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
    return Case("valid", f"valid {seed.name}", seed.blob, (seed.original,), override=rng.random() < 0.8)


def mutated(rng: random.Random, seeds: Seeds) -> Case:
    """Blind mutations of a valid archive; most of them with the CRCs made valid again."""
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
        blob, label = forgery.fix_crcs(blob), "fixed-CRC " + "+".join(names)
    right = (seed.original, other.original) if "splice" in label or "append" in label else (seed.original,)
    if label.endswith("append") and not label.startswith("re-CRC"):
        right = ()  # junk after a whole archive: any output means it was ignored
    return Case("mutate", f"mutate {label} on {seed.name}", blob, right)


def _mutated_inside(rng: random.Random, seed, other, count: int) -> tuple[bytes, str]:
    """Mutate the header JSON, a frame body or the end record, then make the CRCs valid."""
    if seed.version == 1:
        content, names = mutate(rng, seed.blob[:-4], other.blob[:-4], count)
        return forgery.with_crc(content), "re-CRC " + "+".join(names)
    header, bodies, end = forgery.split(seed.blob)
    target = rng.choice(["header", "end"] + ["body"] * 3 * bool(bodies))
    if target == "header":
        header, names = mutate(rng, header, forgery.split(other.blob)[0] if other.version == 2 else b"{}", count)
    elif target == "end":
        end, names = mutate(rng, end, b"", count)
    else:
        at = rng.randrange(len(bodies))
        bodies[at], names = mutate(rng, bodies[at], rng.choice(bodies), count)
        target = f"body {at}"
    records = [forgery.frame_record(body) for body in bodies]
    return forgery.write_version_2(header, records, end), f"re-CRC {target} " + "+".join(names)


def hostile_header(rng: random.Random, seeds: Seeds) -> Case:
    """A valid archive under a header with hostile values or JSON no writer makes."""
    seed = rng.choice(seeds.v2)
    _, bodies, end = forgery.split(seed.blob)
    fields = forgery.header_fields(seed.archive.header)
    text, label = hostile_fields(rng, fields) if rng.random() < 0.75 else raw_header(rng, fields)
    blob = forgery.write_version_2(text, [forgery.frame_record(body) for body in bodies], end)
    names_model = "model" in label  # model=..., model_fingerprint=...: also resolve it without --model
    override = rng.random() < (0.5 if names_model else 0.85)
    return Case("header", f"{label} on {seed.name}", blob, (seed.original,), override=override)


def lying_frames(rng: random.Random, seeds: Seeds) -> Case:
    """Frames, tables or the trailer edited to lie (or to say odd but true things); CRCs valid."""
    seed = rng.choice([s for s in seeds.v2 if s.archive.frames])
    draft = lies.Draft.of(seed)
    label, right = lies.FRAME_LIES[rng.choice(sorted(lies.FRAME_LIES))](rng, draft, seeds)
    return Case("frame", f"{label} on {seed.name}", forgery.write_archive(draft.archive), right)


def byte_lies(rng: random.Random, seeds: Seeds) -> Case:
    seed = rng.choice(seeds.v2)
    blob, label, right = lies.byte_lie(rng, seed)
    return Case("varint", f"{label} on {seed.name}", blob, right)


def bombs(rng: random.Random, seeds: Seeds) -> Case:
    """A stream replaced by a compression bomb; or, as a control, an honest frame of 1 MiB of
    zeros whose payload is just as small (it must decode)."""
    seed = rng.choice([s for s in seeds.v2 if s.name.startswith(("model-", "raw-")) and len(s.pieces) == 1])
    draft = lies.Draft.of(seed)
    roll = rng.random()
    if roll < 0.25:
        label, right = lies.honest_zeros(rng, draft, seeds)
    elif roll < 0.4 and seed.name in ("model-brotli", "model-zstd"):  # the cheap ones to make 1 GiB of
        label, right = lies.frame_at_limits(rng, draft, seeds)
    else:
        label, right = lies.bomb_stream(rng, draft, seeds)
    return Case("bomb", f"{label} on {seed.name}", forgery.write_archive(draft.archive), right)


def version_1(rng: random.Random, seeds: Seeds) -> Case:
    seed = rng.choice(seeds.single)
    blob, label, right = lies.version_1_lie(rng, seed)
    return Case("v1", f"{label} on {seed.name}", blob, right, override=rng.random() < 0.9)


def mixed(rng: random.Random, seeds: Seeds) -> Case:
    """Frames of several seeds under one header, trailer to match: consistent when they share the
    header's back-end and engine (then it must decode), else refused."""
    base = rng.choice([s for s in seeds.v2 if s.name.startswith("model-")])
    backend, engine = base.archive.header.backend, base.archive.header.engine
    pool = [(frame, piece) for s in seeds.v2 for frame, piece in zip(s.archive.frames, s.pieces)
            if s.archive.header.backend == backend or rng.random() < 0.05]
    chosen = rng.choices(pool, k=rng.choice((1, 2, 3, 5)))
    data = b"".join(piece for _, piece in chosen)
    archive = Archive(base.archive.header, [frame for frame, _ in chosen], *container.original_identity(data))
    label = f"{len(chosen)} frames ({', '.join(f.mode for f, _ in chosen)}) under {backend}/{engine}"
    return Case("mixed", label, forgery.write_archive(archive), (data,), override=rng.random() < 0.9)


def reader_only(rng: random.Random, seeds: Seeds) -> Case:
    """Any other kind's archive, only read and described (what ``alphazip info`` does)."""
    kind = rng.choice(["mutate", "header", "frame", "varint", "v1"])
    case = KINDS[kind].make(rng, seeds)
    return Case("read", f"read {case.name}", case.blob, (), reader_only=True)


KINDS = {
    "valid": Kind(valid, 2, "valid seed archives, as they are (must decode exactly)"),
    "mutate": Kind(mutated, 28, "blind mutations: bit flips, bytes, truncation, splices, junk, repeats"),
    "header": Kind(hostile_header, 20, "hostile header values and JSON, CRCs valid"),
    "frame": Kind(lying_frames, 18, "lying frame sizes, chunk tables, CRCs, streams, frame lists"),
    "varint": Kind(byte_lies, 10, "lying counts, lengths, tags and varints past 64 bits"),
    "bomb": Kind(bombs, 1, "compression bombs in every back-end"),
    "v1": Kind(version_1, 11, "format 1 archives: hostile headers, lying counts and sizes"),
    "mixed": Kind(mixed, 6, "frames of several archives under one header"),
    "read": Kind(reader_only, 4, "any of the above through container.read and describe only"),
}


def make_case(index: int, seed: int, seeds: Seeds, kinds: list[str] | None = None) -> Case:
    """Case number ``index`` of the run seeded ``seed``, drawn from ``kinds`` (default: all)."""
    rng = random.Random(f"{seed}/{index}")
    names = kinds or list(KINDS)
    kind = rng.choices(names, weights=[KINDS[name].weight for name in names])[0]
    case = KINDS[kind].make(rng, seeds)
    case.kind = kind
    return case
