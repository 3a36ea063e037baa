"""Hostile archives must give the original bytes or one of our errors, in bounded time and memory.

The harness (alphazip/fuzz) decodes each case in a worker process under a time limit and an
address-space limit and classifies the outcome; "wrong", "other", "hang", "memory" and "crash"
are holes in the reader. The committed corpus (tests/data/fuzz-corpus: inputs atheris found,
and failures the generator found, minimized) is replayed first; then generated cases with fixed
seeds: 1,500 in the default run, 10,000 in the run marked slow.
"""

import os
import random
from pathlib import Path

import pytest

from alphazip.fuzz import KINDS, Pool, Summary, make_case, outcome
from alphazip.fuzz.bombs import huffman_zeros
from alphazip.fuzz.forgery import fix_crcs, frame_record, split, write_version_2
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
    for seed in seeds.v2:
        header, bodies, end = split(seed.blob)
        assert write_version_2(header, [frame_record(body) for body in bodies], end) == seed.blob, seed.name


def test_fixing_crcs_restores_a_valid_archive(seeds):
    for seed in seeds.all:
        damaged = bytearray(seed.blob)
        damaged[-1] ^= 0xFF  # the archive's CRC
        assert fix_crcs(bytes(damaged)) == seed.blob, seed.name


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
    # A valid archive whose output the forger said no output may match: "wrong".
    assert outcome.run(outcome.Case("t", "", seed.blob, ()), 0, model, seconds, limit).outcome == "wrong"
    other = outcome.run(outcome.Case("t", "", seed.blob, (seed.original,)), 0, model, seconds, limit)
    assert other.peak_kb > 0 and other.growth_kb >= 0


def test_time_limit_raises_hang():
    with pytest.raises(outcome.Hang):
        with outcome.time_limit(0.05):
            while True:
                pass

