"""Fuzz the archive reader: decode thousands of hostile archives and classify every outcome.

    python scripts/fuzz_archives.py --cases 10000 --seed 1 --save-failures fuzz-failures
    python scripts/fuzz_archives.py --replay fuzz-failures/000123-header-other.az

Prints cases by kind and outcome, the slowest case, the largest peak RSS, and each distinct
failure once; exits 1 if any case decoded an archive that lies (lax), gave a wrong output,
another exception, a hang, ran out of memory or killed its worker. Seeds are archives of
formats 3 (what the writer makes), 2 and 1; the "v3" kind forges format 3's compact header and
records. Each case is a function of (seed, index): ``--only 123`` makes
case 123 of a run again. See alphazip/fuzz/__init__.py for how the harness is built.
"""

import argparse
import sys
import time
from pathlib import Path

from alphazip.fuzz import KINDS, Pool, Summary, make_case
from alphazip.fuzz.runner import Limits, Saver, load_case
from alphazip.fuzz.seeds import ORIGINALS, TINY_MODEL, build_seeds


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    limits = Limits(seconds=args.time_limit, headroom=args.headroom << 20, memory_limit=args.memory_limit << 20,
                    model=args.model)
    if args.replay:
        return replay(args.replay, limits)
    kinds = args.kinds.split(",") if args.kinds else None
    unknown = set(kinds or ()) - set(KINDS)
    if unknown:
        sys.exit(f"unknown kinds {', '.join(sorted(unknown))}; known: {', '.join(KINDS)}")
    started = time.monotonic()
    seeds = build_seeds(args.model)
    indices = [args.only] if args.only is not None else range(args.first, args.first + args.cases)
    cases = ((index, make_case(index, args.seed, seeds, kinds)) for index in indices)
    summary, saver = Summary(), Saver(args.save_failures) if args.save_failures else None
    with Pool(args.workers, limits, warmup=[seed.blob for seed in seeds.all]) as pool:
        print(f"{len(seeds.all)} seeds built, {args.workers} workers warming up", file=sys.stderr)
        for case, result in pool.run(cases):
            summary.add(result)
            if saver:
                saver.add(case, result)
            if args.verbose and result.outcome not in ("exact", "clean", "parsed"):
                print(f"case {result.index}: {result.outcome} {result.name}: {result.error[:200]}", file=sys.stderr)
            if summary.cases % 1000 == 0:
                print(f"{summary.cases} cases, {summary.failures} failures, {time.monotonic() - started:.0f} s",
                      file=sys.stderr)
        restarts = pool.restarts
    print(summary.report(time.monotonic() - started, saver.saved if saver else None))
    print(f"workers replaced: {restarts}")
    return 1 if summary.failures else 0


def replay(paths: list[Path], limits: Limits) -> int:
    """Run saved cases again (in one worker, under the same limits) and show what they do."""
    failed = 0
    with Pool(1, limits) as pool:
        for case, result in pool.run(enumerate(load_case(path, ORIGINALS) for path in paths)):
            print(f"{paths[result.index]}: {result.outcome} ({result.seconds:.2f} s) {case.name}")
            if result.error:
                print(result.trace or result.error)
            failed += result.outcome not in ("exact", "clean", "parsed")
    return 1 if failed else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000, help="how many cases (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="the run's seed: same seed, same cases")
    parser.add_argument("--first", type=int, default=0, help="index of the first case")
    parser.add_argument("--only", type=int, help="run only case number ONLY of the seed's run")
    parser.add_argument("--kinds", help=f"comma-separated subset of: {', '.join(KINDS)}")
    parser.add_argument("--time-limit", type=float, default=5.0, help="seconds per case (default 5)")
    parser.add_argument("--headroom", type=int, default=2048, help="MiB of address space per worker beyond its "
                        "warmed-up size (default 2048)")
    parser.add_argument("--memory-limit", type=int, default=1024, help="MiB the Decompressor is told it may use, "
                        "where it takes a limit (default 1024)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--model", default=TINY_MODEL, help="model for the seeds and --model (default: the tiny one)")
    parser.add_argument("--save-failures", type=Path, metavar="DIR", help="save failing cases here (3 per signature)")
    parser.add_argument("--replay", type=Path, nargs="+", metavar="FILE", help="run saved cases again")
    parser.add_argument("--verbose", action="store_true", help="print each failure as it happens")
    return parser


if __name__ == "__main__":
    sys.exit(main())
