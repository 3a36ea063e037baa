"""What the engines that learn as they code (``alphazip-exact-learn-2``, whose output embedding
learns too, and ``-learn-1``) gain: the model's ideal code length over the very chunks `alphazip
pack` codes, on the exact engine as it is and learning at each Adam rate given, through packing's
own pass (``schedule.score_chunks``). Ideal code lengths, not archives: `alphazip pack --engine
alphazip-exact-learn-2` gives those.

    python scripts/measure_learning.py ../shared/corpus/alice29.txt --bytes 152089 \
        --contexts 1024,8192 --rates 1e-4,3e-4 [--engines alphazip-exact-learn-2,alphazip-exact-learn-1]
"""

import argparse
from dataclasses import asdict
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--bytes", type=int, default=40000, help="the first N bytes of each file")
    parser.add_argument("--contexts", default="1024", help="tokens per chunk, comma-separated")
    parser.add_argument("--rates", default="1e-4", help="Adam rates to learn at, comma-separated")
    parser.add_argument("--batch", type=int, default=16, help="chunks advanced together, as for pack")
    parser.add_argument("--engines", default="alphazip-exact-learn-2", help="learning engines, comma-separated")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from alphazip.bench import cpu_model
    from alphazip.lookup import MODELS
    from alphazip.model import learning
    from alphazip.model.exact import EXACT_ENGINE_NAME
    from alphazip.schedule import score_chunks, split_chunks

    model = MODELS.get("smollm2-135m", "float32")
    print(f"cpu: {cpu_model()}; smollm2-135m; learning every {learning.EVERY} positions; default rate "
          f"{learning.RATE:g}")
    for path in args.files:
        data = path.read_bytes()[:args.bytes]
        ids = model.tokenizer.encode(data)
        for context in map(int, args.contexts.split(",")):
            chunks = split_chunks(ids, context)
            print(f"{path.name}, first {len(data):,} bytes, {len(ids):,} tokens, {len(chunks)} chunks of {context}")
            baseline = None
            settings = [(EXACT_ENGINE_NAME, 0.0)] + [(engine, float(rate)) for engine in args.engines.split(",")
                                                     for rate in args.rates.split(",")]
            for engine, rate in settings:
                # the product's learner at this rate (the engine's own constant is what archives use)
                model.learner = lambda engine, rate=rate: learning.Learner(
                    model._engine(EXACT_ENGINE_NAME), model.hf, rate, **asdict(learning.LEARNING_ENGINES[engine]))
                started = time.perf_counter()
                bits = sum(score_chunks(model, chunks, args.batch, engine=engine).bits)
                baseline = baseline or bits
                print(f"  {engine} rate {rate:g}: ideal {bits / 8:,.0f} B, {bits / len(data):.4f} bits/byte, "
                      f"{100 * (bits / baseline - 1):+.2f} %, {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
