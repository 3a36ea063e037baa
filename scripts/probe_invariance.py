"""Does the engine give the same bits under every batch layout, path and thread count? (issue 5)

    python scripts/probe_invariance.py --model tests/data/tiny-model --length 64 --chunks 8
    python scripts/probe_invariance.py --length 128 --chunks 8        # default model
    python scripts/probe_invariance.py --model gemma3-270m --dtype float32 --length 544 --chunks 4

The engine is the model's own invariant one (Llama or Gemma 3); lengths beyond 512 cross
Gemma 3's sliding window.
"""

import argparse

import numpy as np
import torch

from alphazip.lookup import MODELS
from alphazip.model.lm import INVARIANT_ENGINES


def full_pass(engine, tokens):
    cache = engine.new_cache(tokens.shape[0], tokens.shape[1])
    return engine.forward(tokens, 0, cache)


def stepped(engine, tokens):
    cache = engine.new_cache(tokens.shape[0], tokens.shape[1])
    return torch.cat([engine.forward(tokens[:, t:t + 1], t, cache) for t in range(tokens.shape[1])], dim=1)


def differing(a, b) -> int:
    return int((a != b).sum())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--chunks", type=int, default=8)
    args = parser.parse_args()
    model = MODELS.get(args.model, "float32")
    dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32}[args.dtype]
    name = model.engines[0]
    if name not in INVARIANT_ENGINES:
        raise SystemExit(f"{args.model} has no invariant engine (it runs on {name})")
    engine = INVARIANT_ENGINES[name](model.hf, dtype)
    print(f"{args.model} on {name}, {args.dtype}, {args.chunks} chunks of {args.length} tokens")
    text = open("../shared/corpus/alice29.txt", "rb").read()
    ids = model.tokenizer.model_inputs(model.tokenizer.encode(text))[: args.length * args.chunks]
    tokens = torch.from_numpy(np.asarray(ids, dtype=np.int64)).view(args.chunks, args.length)

    reference = full_pass(engine, tokens)
    with torch.inference_mode():
        hf = model.hf(input_ids=tokens).logits.float()
    print(f"engine {args.dtype} vs transformers fp32: max |diff| {float((reference - hf).abs().max()):.4f}, "
          f"top-1 agreement {float((reference.argmax(-1) == hf.argmax(-1)).float().mean()):.4f}")
    print("full pass vs stepping:", differing(reference, stepped(engine, tokens)), "values differ")
    for batch in (1, 3, 5):
        parts = torch.cat([full_pass(engine, tokens[i:i + batch]) for i in range(0, args.chunks, batch)])
        print(f"full pass in batches of {batch}:", differing(reference, parts), "values differ")
    order = torch.randperm(args.chunks, generator=torch.Generator().manual_seed(0))
    shuffled = full_pass(engine, tokens[order])
    print("reordered batch:", differing(reference[order], shuffled), "values differ")
    previous = torch.get_num_threads()
    for threads in (1, 2, 8):
        torch.set_num_threads(threads)
        print(f"{threads} threads, full pass:", differing(reference, full_pass(engine, tokens)),
              "stepping batch 1 of chunk 0:", differing(reference[:1], stepped(engine, tokens[:1])), "values differ")
    torch.set_num_threads(previous)


if __name__ == "__main__":
    main()
