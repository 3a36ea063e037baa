"""Hostile archives must give the original bytes or one of our errors, in bounded time and memory.

The harness (alphazip/fuzz) decodes each case in a worker process under a time limit and an
address-space limit and classifies the outcome; "lax", "wrong", "other", "hang", "memory" and
"crash" are holes in the reader. The committed corpus (tests/data/fuzz-corpus: inputs atheris
found, and failures the generator found, minimized) is replayed first; then generated cases with
fixed seeds, of formats 1, 2 and 3: 1,500 in the default run, 10,000 in the run marked slow.
"""

import os
import random
from pathlib import Path

import pytest

from alphazip import compact, container
from alphazip.coding import coder_names
from alphazip.fuzz import KINDS, Pool, Summary, make_case, outcome
from alphazip.fuzz.bombs import huffman_zeros
from alphazip.fuzz.format3 import CompactHeader
from alphazip.fuzz.forgery import (compact_body, compact_record, compact_tag, compact_trailer, fix_crcs, frame_body,
                                   frame_record, header_fields, leb128, split, trailer, write_version_2,
                                   write_version_3)
from alphazip.fuzz.runner import Limits, load_case
from alphazip.fuzz.seeds import ORIGINALS, build_seeds

CORPUS = Path(__file__).parent / "data" / "fuzz-corpus"
WORKERS = int(os.environ.get("ALPHAZIP_FUZZ_WORKERS", "2"))


@pytest.fixture(scope="module")
def seeds(tiny):
    return build_seeds()


@pytest.fixture(scope="module")
def pool(seeds):
    with Pool(WORKERS, Limits(), warmup=[seed.blob for seed in seeds.all]) as pool:
        yield pool


def run(pool: Pool, cases) -> Summary:
    summary = Summary()
    for _, result in pool.run(cases):
        summary.add(result)
    return summary


def assert_no_holes(summary: Summary, note: str = "") -> None:
    failures = summary.failures  # a plain int: pytest then shows the report, not the Summary's repr
    assert failures == 0, f"{summary.report()}{note}"


def test_corpus_replays_without_holes(pool):
    paths = sorted(path for path in CORPUS.iterdir() if path.suffix != ".json")
    assert paths, "the committed fuzzing corpus is missing"
    summary = run(pool, enumerate(load_case(path, ORIGINALS) for path in paths))
    assert_no_holes(summary, "\n(replay a file with scripts/fuzz_archives.py --replay tests/data/fuzz-corpus/FILE)")


def test_generated_cases(pool, seeds):
    summary = run(pool, ((index, make_case(index, 0, seeds)) for index in range(1_500)))
    assert_no_holes(summary)


@pytest.mark.slow
def test_ten_thousand_generated_cases(pool, seeds):
    summary = run(pool, ((index, make_case(index, 1, seeds)) for index in range(10_000)))
    assert set(summary.counts) == set(KINDS)
    assert_no_holes(summary)


# The harness's own parts, checked in this process.

def test_hand_writer_matches_the_container_writer(seeds):
    for seed in seeds.framed:
        assert split(seed.blob).write() == seed.blob, seed.name
        archive = seed.archive
        if seed.version == 2:
            records = [frame_record(frame_body(frame)) for frame in archive.frames]
            by_hand = write_version_2(header_fields(archive.header), records,
                                      trailer(archive.original_size, archive.original_sha256))
        else:
            header = compact.header_bytes(archive.header)
            assert CompactHeader.parse(header).bytes() == header, seed.name
            records = [compact_record(compact_body(frame), frame.crc, tag=compact_tag(frame.mode))
                       for frame in archive.frames]
            end = compact_trailer(archive.original_size, archive.original_sha256, len(archive.frames) > 1)
            by_hand = write_version_3(header, records, end)
        assert by_hand == container.write(archive, seed.version) == seed.blob, seed.name


def test_seeds_cover_every_format(seeds):
    assert {seed.version for seed in seeds.all} == {1, 2, 3}
    assert {seed.archive.header.backend for seed in seeds.all} == set(coder_names())  # ac, ac-plain, rank-ac too
    assert len(seeds.v3) == len(seeds.v2) and all(seed.archive.frames or not seed.pieces for seed in seeds.v3)


def test_fixing_crcs_restores_a_valid_archive(seeds):
    for seed in seeds.all:
        damaged = bytearray(seed.blob)
        if seed.version == 3:  # no CRC at the end: the header's and every record's, both of them
            for at in _crc_offsets_v3(seed.blob):
                damaged[at] ^= 0xFF
            assert fix_crcs(bytes(damaged), seed.pieces) == seed.blob, seed.name
            kept = fix_crcs(bytes(damaged))  # the CRCs of decoded bytes stay as they were: still damaged
            assert kept != seed.blob or not seed.pieces, seed.name
        else:
            damaged[-1] ^= 0xFF  # the archive's CRC
            assert fix_crcs(bytes(damaged)) == seed.blob, seed.name


def _crc_offsets_v3(blob: bytes) -> list[int]:
    """A byte of the header's CRC-32 and of each record's two CRC-32s, in a format-3 archive."""
    parts = split(blob)
    at = 5 + len(leb128(len(parts.header))) + len(parts.header)
    offsets = [at]
    at += 4
    for body in parts.bodies:
        at += 1 + len(leb128(len(body))) + len(body)
        offsets += [at, at + 4]
        at += 8
    return offsets


def test_huffman_bomb_follows_the_coder():
    import numpy as np

    from alphazip.backends import get_backend

    for alphabet in (256, 300, 65536):
        for count in (1, 2, 8, 9, 100):
            expected = get_backend("huffman").encode(np.zeros(count, np.int64), alphabet)
            assert huffman_zeros(count, alphabet) == expected


def test_cases_are_reproducible(seeds):
    for index in random.Random(0).sample(range(100_000), 50):
        first, second = make_case(index, 7, seeds), make_case(index, 7, seeds)
        assert (first.kind, first.name, first.blob) == (second.kind, second.name, second.blob)


def test_outcomes_are_classified(seeds, tiny):
    seed = seeds.by_name["model-zstd"]
    model, seconds, limit = seeds.model, 60.0, 1 << 30
    assert outcome.run(outcome.Case("t", "", seed.blob, (seed.original,)), 0, model, seconds, limit).outcome == "exact"
    assert outcome.run(outcome.Case("t", "", b"junk", ()), 0, model, seconds, limit).outcome == "clean"
    # A valid archive whose output the forger said no output may match: "wrong"; "lax" where it is
    # the original the forger started from (a lie the reader let pass).
    assert outcome.run(outcome.Case("t", "", seed.blob, ()), 0, model, seconds, limit).outcome == "wrong"
    lax = outcome.Case("t", "", seed.blob, (), original=seed.original)
    assert outcome.run(lax, 0, model, seconds, limit).outcome == "lax"
    other = outcome.run(outcome.Case("t", "", seed.blob, (seed.original,)), 0, model, seconds, limit)
    assert other.peak_kb > 0 and other.growth_kb >= 0


def test_time_limit_raises_hang():
    with pytest.raises(outcome.Hang):
        with outcome.time_limit(0.05):
            while True:
                pass

