"""Does the torch thread count change step-by-step ranks? Scores the same chunks of a corpus
file under the same schedule with 1 and 2 threads, in fp32 and bf16, and counts rank differences.

    python scripts/measure_threads.py ../shared/corpus/alice29.txt --chunks 8 --context 256
"""

import argparse
from pathlib import Path

import numpy as np

from alphazip.api import MODELS, torch_threads
from alphazip.model import DEFAULT_MODEL
from alphazip.schedule import score_chunks, split_chunks


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file", type=Path)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--context", type=int, default=256)
    args = parser.parse_args()
    data = args.file.read_bytes()
    for dtype in ("float32", "bfloat16"):
        model = MODELS.get(DEFAULT_MODEL, dtype)
        chunks = split_chunks(model.tokenizer.encode(data), args.context)[: args.chunks]
        ranks = {}
        for threads in (1, 2):
            with torch_threads(threads):
                ranks[threads] = np.concatenate(score_chunks(model, chunks, len(chunks)).ranks)
        differ = int((ranks[1] != ranks[2]).sum())
        print(f"{dtype}: {differ} of {ranks[1].size} ranks differ between 1 and 2 threads "
              f"({len(chunks)} chunks x {args.context} tokens, batch {len(chunks)})")


if __name__ == "__main__":
    main()
