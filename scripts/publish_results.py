"""Produce the project's published bench results from ../shared/corpus/ (docs/bench/).

Runs ``alphazip bench`` over every corpus file (text and binary), or the files given, with every
token coder (the byte back-ends on ranks, and the arithmetic coders) at the contexts and k
given, and writes docs/bench/results.{md,csv,json} and the plots, headed by the command,
commit, date and machine that produced them. docs/results.md discusses the figures.

    python scripts/publish_results.py                       # every corpus file (hours on 2 cores)
    python scripts/publish_results.py ../shared/corpus/{alice29.txt,asyoulik.txt,html,urls.10K}  # the texts
    python scripts/publish_results.py --quick               # a smoke run of the same pipeline
    python scripts/publish_results.py --render --out docs/bench   # re-render a saved run
"""

import argparse
import json
import sys
from pathlib import Path

from alphazip import bench, bench_output
from alphazip.api import Settings
from alphazip.cli import _quiet_libraries, progress_bar
from alphazip.coding import coder_names

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="default: every file of ../shared/corpus/")
    parser.add_argument("--contexts", default="1024")
    parser.add_argument("--top-k", default="65535")
    parser.add_argument("--backends", default=",".join(coder_names()))
    parser.add_argument("--batch", type=int, default=Settings.batch)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--render", action="store_true", help="re-render OUT/results.json; run nothing")
    args = parser.parse_args()
    _quiet_libraries()
    files = args.files or sorted(p for p in CORPUS.iterdir() if p.is_file() and p.name != "README.md")
    plan = bench.Plan(backends=tuple(args.backends.split(",")), contexts=tuple(map(int, args.contexts.split(","))),
                      top_ks=tuple(map(int, args.top_k.split(","))), batch=args.batch, quick=args.quick)
    if args.render:  # formatting changed: re-render a saved run's figures, measure nothing
        rows, about = bench_output.load(args.out / "results.json")
    else:
        with progress_bar("benching the corpus", quiet=False) as progress:
            rows = bench.run(files, plan, progress)
        about = {"command": "python scripts/publish_results.py " + " ".join(sys.argv[1:]), "plan": plan.__dict__,
                 **bench.machine()}
    bench_output.save(rows, args.out, about)
    table = bench_output.markdown(rows)
    (args.out / "results.md").write_text(f"# Bench results\n\n```\n{json.dumps(about, indent=1)}\n```\n{table}")
    print(table)
    failed = bench.failures(rows)
    if failed:
        print(f"{len(failed)} setting(s) FAILED", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
