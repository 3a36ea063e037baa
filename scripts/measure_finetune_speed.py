"""Training throughput of ``alphazip finetune`` per setting, to choose its defaults by measurement.

Times a few optimizer steps (median, after one warm-up step) for each dtype x sequence length x
LoRA rank on real text, and prints tokens/s and seconds per step:

    python scripts/measure_finetune_speed.py ../shared/corpus/alice29.txt
"""

import argparse
import itertools
import statistics
import time
from pathlib import Path

from alphazip.cli import _quiet_libraries
from alphazip.finetune import FinetuneSettings, _Trainer, training_windows
from alphazip.model import LanguageModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("text", type=Path)
    parser.add_argument("--base", default=FinetuneSettings.base)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--sequences", default="128,256,512")
    parser.add_argument("--ranks", default="16")
    parser.add_argument("--tokens-per-step", type=int, default=2048, help="batch = this / sequence")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    _quiet_libraries()
    print("| dtype | sequence | batch | LoRA rank | s/step | tokens/s |\n| --- | ---: | ---: | ---: | ---: | ---: |")
    for dtype, sequence, rank in itertools.product(args.dtypes.split(","), map(int, args.sequences.split(",")),
                                                   map(int, args.ranks.split(","))):
        base = LanguageModel.load(args.base, "float32")  # fresh: the trainer wraps it in place
        settings = FinetuneSettings(base=args.base, sequence=sequence, batch=max(1, args.tokens_per_step // sequence),
                                    lora_rank=rank, dtype=dtype, steps=args.steps + 1)
        windows = [w for w in training_windows(base, [args.text.read_bytes()], sequence) if len(w) == sequence]
        trainer = _Trainer(base, settings)
        times = []
        for _ in range(args.steps + 1):
            started = time.perf_counter()
            trainer.train_step(windows)
            times.append(time.perf_counter() - started)
        seconds = statistics.median(times[1:])
        print(f"| {dtype} | {sequence} | {settings.batch} | {rank} | {seconds:.2f} | "
              f"{settings.batch * sequence / seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
