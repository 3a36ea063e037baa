"""The smallest chunk a small input is cut into: archive bytes against unpack time.

An input shorter than 8 full chunks is cut into 8 shorter ones, of at least ``MIN_CONTEXT``
tokens (alphazip/layout.py): shorter chunks unpack sooner (8 of them step side by side) but give
each token less context. For slices of 2, 4 and 8 KiB of each corpus text this packs and
unpacks with each candidate minimum, in one process with the model loaded once, and reports
the archive's bytes and the median wall time of pack and unpack.

    python scripts/measure_min_chunk.py [--minimums 64,128,256] [--sizes 2048,4096,8192]
        [--backend ac] [--repeat 3] [--json out.json]
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
TEXTS = ("alice29.txt", "asyoulik.txt", "html", "urls.10K")


def seconds(call, repeat: int):
    """The median wall time of ``repeat`` calls, and the last call's result."""
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minimums", default="64,128,256")
    parser.add_argument("--sizes", default="2048,4096,8192")
    parser.add_argument("--backend", default="ac")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from alphazip import Compressor, Decompressor, layout
    from alphazip.lookup import MODELS
    from alphazip.bench import cpu_model

    minimums = [int(value) for value in args.minimums.split(",")]
    rows = []
    print(f"cpu: {cpu_model()}, back-end {args.backend}, medians of {args.repeat}")
    print("| file | bytes | minimum | tokens | chunks | archive B | bits/byte | pack s | unpack s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in TEXTS:
        text = (CORPUS / name).read_bytes()
        for size in map(int, args.sizes.split(",")):
            data = text[:size]
            for minimum in minimums:
                layout.MIN_CONTEXT = minimum  # the rule chunk_length applies; what this script compares
                packer = Compressor(backend=args.backend)
                model = MODELS.get(packer.settings.model, packer.settings.dtype)
                chunks = packer.chunks_of(data, model)
                pack_s, blob = seconds(lambda: packer.compress(data), args.repeat)
                unpack_s, out = seconds(lambda: Decompressor().decompress(blob), args.repeat)
                if out != data:
                    raise SystemExit(f"{name} {size} B, minimum {minimum}: unpacked bytes differ")
                row = {"file": name, "bytes": size, "minimum": minimum, "tokens": int(sum(map(len, chunks))),
                       "chunks": len(chunks), "archive": len(blob), "bpb": 8 * len(blob) / size,
                       "pack_s": pack_s, "unpack_s": unpack_s}
                rows.append(row)
                print(f"| {name} | {size:,} | {minimum} | {row['tokens']:,} | {len(chunks)} | {len(blob):,} "
                      f"| {row['bpb']:.3f} | {pack_s:.2f} | {unpack_s:.2f} |", flush=True)
    print("\nper minimum, summed over the files: archive bytes, unpack seconds")
    for minimum in minimums:
        mine = [row for row in rows if row["minimum"] == minimum]
        print(f"  {minimum}: {sum(row['archive'] for row in mine):,} B, pack {sum(row['pack_s'] for row in mine):.1f} s, "
              f"unpack {sum(row['unpack_s'] for row in mine):.1f} s")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_model(), "backend": args.backend, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
