"""Issue 5 figures in one run: engine pack/unpack speed against transformers' full forward pass,
and bits per byte against transformers' fp32 logits.

    python scripts/measure_engine.py ../shared/corpus/alice29.txt --tokens 8192
"""

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from alphazip import Compressor, Decompressor, api, container
from alphazip.api import MODELS
from alphazip.model.engine import ENGINE_NAME
from alphazip.model.lm import TRANSFORMERS_ENGINE
from alphazip.schedule import split_chunks


def median_seconds(work, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--tokens", type=int, default=8192, help="bench this many tokens from the file's start")
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = MODELS.get("smollm2-135m", "bfloat16")
    ids = model.tokenizer.encode(args.file.read_bytes())[: args.tokens]
    data = model.tokenizer.decode(ids)
    tokens = len(ids)
    chunks = split_chunks(ids, args.context)
    full = torch.from_numpy(np.stack([model.tokenizer.model_inputs(c) for c in chunks if len(c) == args.context]))

    def transformers_full():
        with torch.inference_mode():
            for row in range(0, len(full), 4):
                model.hf(input_ids=full[row:row + 4]).logits.float()

    reference = full.numel() / median_seconds(transformers_full, args.repeats)
    print(f"transformers full forward bf16: {reference:.0f} tok/s ({full.numel()} tokens, batch 4)")

    packer = Compressor(context=args.context, mode="model", engine=ENGINE_NAME)
    blob = packer.compress(data)
    pack = tokens / median_seconds(lambda: packer.compress(data), args.repeats)
    unpack = tokens / median_seconds(lambda: Decompressor().decompress(blob), args.repeats)
    print(f"engine pack: {pack:.0f} tok/s = {pack / reference:.2f} x; unpack (batch {api.DECODE_BATCH}): "
          f"{unpack:.0f} tok/s = {unpack / reference:.2f} x")

    fp32 = MODELS.get("smollm2-135m", "float32")
    fp32_blob = Compressor(context=args.context, mode="model", dtype="float32", engine=TRANSFORMERS_ENGINE,
                           batch=32).compress(data)
    ours, theirs = len(container.read(blob).streams[0]), len(container.read(fp32_blob).streams[0])
    print(f"brotli rank payload: engine bf16 {ours} B, transformers fp32 {theirs} B: {100 * (ours / theirs - 1):+.2f} %"
          f" ({8 * len(blob) / len(data):.4f} vs {8 * len(fp32_blob) / len(data):.4f} bpb whole archive)")
    del fp32


if __name__ == "__main__":
    main()
