"""What the engines that learn as they code gain: the model's ideal code length over the very
chunks `alphazip pack` codes, on the exact engine as it is and learning with each engine's own
settings or at the Adam step sizes (and decay) given, through packing's own pass
(``schedule.score_chunks``). Ideal code lengths, not archives: `alphazip pack --engine ...` gives
those.

    python scripts/measure_learning.py ../shared/corpus/alice29.txt --bytes 152089 --contexts 8192 \
        --engines alphazip-exact-learn-4,alphazip-exact-learn-3 [--rates 1e-4,7.5e-5] [--decay 0.01]
"""

import argparse
from dataclasses import replace
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--bytes", type=int, default=40000, help="the first N bytes of each file")
    parser.add_argument("--contexts", default="1024", help="tokens per chunk, comma-separated")
    parser.add_argument("--rates", default="", help="Adam step sizes to start at, comma-separated (default: each engine's)")
    parser.add_argument("--decay", type=float, help="the step size at step t is rate / (1 + decay t) (default: each engine's)")
    parser.add_argument("--batch", type=int, default=16, help="chunks advanced together, as for pack")
    parser.add_argument("--engines", default="alphazip-exact-learn-4", help="learning engines, comma-separated")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from alphazip.bench import cpu_model
    from alphazip.lookup import MODELS
    from alphazip.model import learning
    from alphazip.model.exact import EXACT_ENGINE_NAME
    from alphazip.schedule import score_chunks, split_chunks

    model = MODELS.get("smollm2-135m", "float32")
    print(f"cpu: {cpu_model()}; smollm2-135m; learning every {learning.EVERY} positions")
    for path in args.files:
        data = path.read_bytes()[:args.bytes]
        ids = model.tokenizer.encode(data)
        for context in map(int, args.contexts.split(",")):
            chunks = split_chunks(ids, context)
            print(f"{path.name}, first {len(data):,} bytes, {len(ids):,} tokens, {len(chunks)} chunks of {context}")
            baseline = None
            runs = [(EXACT_ENGINE_NAME, None)] + [(engine, _settings(engine, rate, args.decay))
                                                  for engine in args.engines.split(",")
                                                  for rate in (args.rates.split(",") if args.rates else [None])]
            for engine, settings in runs:
                # the product's learner with these settings (the engine's own are what archives use)
                model.learner = lambda engine, settings=settings: learning.Learner(
                    model._engine(EXACT_ENGINE_NAME), model.hf, settings)
                started = time.perf_counter()
                bits = sum(score_chunks(model, chunks, args.batch, engine=engine).bits)
                baseline = baseline or bits
                how = f" rate {settings.rate:g}, decay {settings.decay:g}" if settings else ""
                print(f"  {engine}{how}: ideal {bits / 8:,.0f} B, {bits / len(data):.4f} bits/byte, "
                      f"{100 * (bits / baseline - 1):+.2f} %, {time.perf_counter() - started:.0f} s", flush=True)


def _settings(engine: str, rate: str | None, decay: float | None):
    """``engine``'s learning settings with the step size and decay given (its own where None)."""
    from alphazip.model.learning import LEARNING_ENGINES
    settings = LEARNING_ENGINES[engine]
    settings = settings if rate is None else replace(settings, rate=float(rate))
    return settings if decay is None else replace(settings, decay=decay)


if __name__ == "__main__":
    main()
