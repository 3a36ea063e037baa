"""Coverage-guided fuzzing of the archive reader with atheris (libFuzzer for Python).

    pip install atheris
    python scripts/fuzz_atheris.py --seconds 300                 # explore; new inputs in --work
    python scripts/fuzz_atheris.py --merge                       # minimize them into the corpus

Each input is read by ``container.read``, described (``alphazip info``) and decoded by
``Decompressor(model=<tiny model>)``, under a time limit and an address-space limit. Our errors
are the expected answer; anything else, a hang, or an output other than a seed's original is a
failure: its input is saved under ``--failures`` (one per signature) and fuzzing goes on, so one
hole does not hide the next. The search starts from valid archives of every back-end, in
formats 3, 2 and 1.
``tests/data/fuzz-corpus`` keeps the minimized corpus; tests/test_fuzz.py replays it.
"""

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import atheris
import torch

# The reader's code, not the model's: instrumented inference would be too slow to search with.
with atheris.instrument_imports(include=["alphazip"], exclude=["alphazip.fuzz", "alphazip.model"]):
    from alphazip import container
    from alphazip.api import Decompressor, describe
    from alphazip.errors import AlphazipError

from alphazip.fuzz import forgery
from alphazip.fuzz.outcome import Hang, limit_address_space, time_limit, where_raised
from alphazip.fuzz.runner import REPO
from alphazip.fuzz.seeds import ORIGINALS, TINY_MODEL, build_seeds

CORPUS = REPO / "tests" / "data" / "fuzz-corpus"
MAX_LEN = 4096  # the largest seed is 1.5 KB; longer inputs only slow the search


class WrongOutput(Exception):
    """An input decoded, without error, to bytes no seed holds."""


class Target:
    """The function atheris calls with each input, and the failures it has seen."""

    def __init__(self, seconds: float, failures: Path):
        self.seconds, self.failures = seconds, failures
        self.seen: set[str] = set()

    def __call__(self, data: bytes) -> None:
        try:
            with time_limit(self.seconds):
                self.check(data)
        except AlphazipError:
            pass
        except (Hang, Exception) as exc:  # noqa: BLE001 - every other exception is a finding
            self.record(data, exc)

    @staticmethod
    def check(data: bytes) -> None:
        try:
            container.read(data)
            describe(data)
        except AlphazipError:
            pass
        output = Decompressor(model=TINY_MODEL).decompress(data)
        if output not in ORIGINALS:
            raise WrongOutput(f"decoded {len(output)} bytes that no seed holds")

    def record(self, data: bytes, exc: BaseException) -> None:
        signature = f"{type(exc).__name__} at {where_raised(exc) or '-'}"
        if signature in self.seen:
            return
        self.seen.add(signature)
        name = f"{len(self.seen):03d}-{hashlib.sha1(data).hexdigest()[:12]}.az"
        (self.failures / name).write_bytes(data)
        print(f"\nFAILURE {signature}: {str(exc)[:200]} (saved as {self.failures / name})", flush=True)


def mutate(data: bytes, max_size: int, seed: int) -> bytes:
    """libFuzzer's own mutation, then (three times in four) the CRCs made right again: else
    nearly every input stops at the first CRC and the search never sees the code behind it."""
    data = atheris.Mutate(data, max_size)
    return forgery.fix_crcs(data) if seed % 4 else data


def main() -> int:
    args, libfuzzer = _parser().parse_known_args()
    for folder in (args.work, args.failures, args.corpus):
        folder.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # two threads' spin-waits on a busy machine turn 30 ms into seconds
    seeds = build_seeds(TINY_MODEL)
    for seed in seeds.all:  # valid archives of every back-end, mode and version to start from
        (args.work / f"seed-{seed.name}.az").write_bytes(seed.blob)
    target = Target(60.0, args.failures)
    for seed in seeds.all:  # warm the model up before the address space is measured
        target(seed.blob)
    target.seconds = args.time_limit
    limit_address_space(args.headroom << 20)
    flags = [f"-max_len={MAX_LEN}", "-rss_limit_mb=0", "-timeout=0", "-print_final_stats=1"]
    if args.merge:
        flags += ["-merge=1", str(args.corpus), str(args.work)]
    else:
        flags += [f"-max_total_time={args.seconds}", str(args.work), str(args.corpus)]
    if any(flag.startswith("-merge_inner") for flag in libfuzzer):
        flags = []  # a merge's inner run, started by libFuzzer with every flag it needs
    started = time.monotonic()
    # libFuzzer's merge runs this command again through the shell: name the interpreter too.
    command = f"{sys.executable} {Path(__file__).resolve()}"
    atheris.Setup([command, *flags, *libfuzzer], target, custom_mutator=mutate)
    try:
        atheris.Fuzz()
    finally:
        print(f"{len(target.seen)} failure signatures in {time.monotonic() - started:.0f} s", flush=True)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=180, help="how long to fuzz (default 180)")
    parser.add_argument("--time-limit", type=float, default=5.0, help="seconds per input (default 5)")
    parser.add_argument("--headroom", type=int, default=2048, help="MiB of address space beyond the warmed-up size")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "alphazip-atheris",
                        help="where the search keeps the inputs it finds")
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="the committed, minimized corpus")
    parser.add_argument("--failures", type=Path, default=Path("fuzz-failures-atheris"),
                        help="where failing inputs are saved")
    parser.add_argument("--merge", action="store_true", help="minimize --work into --corpus instead of fuzzing")
    return parser


if __name__ == "__main__":
    sys.exit(main())
