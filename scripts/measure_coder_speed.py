"""Pack and unpack speed of token coders side by side: runs alternate, medians reported.

This machine's speed drifts by tens of per cent within minutes, so back-ends timed one after
the other in a single pass (as `alphazip bench` does) can differ by the drift alone. Here each
repetition packs and unpacks with every back-end in turn, in one process with the model loaded,
and the medians are compared; every archive is checked to unpack byte-identically.

    python scripts/measure_coder_speed.py ../shared/corpus/alice29.txt --bytes 40000 --backends brotli,ac
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path)
    parser.add_argument("--bytes", type=int, default=40000, help="the first N bytes of the file")
    parser.add_argument("--backends", default="brotli,ac")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from alphazip import Compressor, Decompressor
    from alphazip.bench import cpu_model
    from alphazip.lookup import MODELS

    data = args.file.read_bytes()[:args.bytes]
    tokens = len(MODELS.get("smollm2-135m", "float32").tokenizer.encode(data))
    backends = args.backends.split(",")
    Compressor(mode="model").compress(data[:200])  # load the model before timing
    timings = {backend: {"pack": [], "unpack": []} for backend in backends}
    sizes = {}
    for _ in range(args.repeat):
        for backend in backends:
            started = time.perf_counter()
            blob = Compressor(backend=backend, mode="model").compress(data)
            packed = time.perf_counter()
            assert Decompressor().decompress(blob) == data, f"{backend}: unpacked bytes differ"
            timings[backend]["pack"].append(packed - started)
            timings[backend]["unpack"].append(time.perf_counter() - packed)
            sizes[backend] = len(blob)
    print(f"cpu: {cpu_model()}; {args.file.name}, first {len(data):,} bytes, {tokens:,} tokens, "
          f"{args.repeat} alternating runs, medians")
    print("| back-end | bytes | pack tok/s | unpack tok/s | pack x first | unpack x first |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    rates = {b: {d: tokens / statistics.median(t) for d, t in timings[b].items()} for b in backends}
    first = rates[backends[0]]
    for backend in backends:
        rate = rates[backend]
        print(f"| {backend} | {sizes[backend]:,} | {rate['pack']:.0f} | {rate['unpack']:.0f} | "
              f"{rate['pack'] / first['pack']:.2f} | {rate['unpack'] / first['unpack']:.2f} |")


if __name__ == "__main__":
    main()
