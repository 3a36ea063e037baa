"""What an online log-space bias per token id would gain (Nacrith's "adaptive bias head").

An experiment, not a coder: in floating point, on transformers' fp32 logits of the default
model over the very chunks `alphazip pack` codes (context 1,024), each chunk keeps a bias vector
b over the vocabulary, starting at 0, added to the log-probabilities; after each token t it
takes a gradient step on -log p(t): b += rate * (onehot(t) - p). Reported: the ideal code length
with and without the bias, per rate. A coder built on it would keep b in fixed point and update
it from the integer frequencies, so that it decodes anywhere; this measures whether that pays.

    python scripts/measure_log_bias.py ../shared/corpus/alice29.txt --bytes 40000 --rates 0.1,0.3 [--model gemma3-270m]
"""

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent


def chunk_bits(logp: torch.Tensor, targets: torch.Tensor, rate: float) -> float:
    """Code length in bits of ``targets`` [T] under ``logp`` [T, V] with the bias learnt as it goes."""
    width = logp.shape[1]
    bias = torch.zeros(width)
    bits = 0.0
    for position, token in enumerate(targets.tolist()):
        if token >= width:  # our raw-byte ids: escaped, the same cost either way
            continue
        biased = torch.log_softmax(logp[position] + bias, -1)
        bits -= float(biased[token]) / math.log(2)
        if rate:
            bias -= rate * biased.exp()
            bias[token] += rate
    return bits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--bytes", type=int, default=40000, help="the first N bytes of each file")
    parser.add_argument("--rates", default="0.1,0.3")
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--model", default="smollm2-135m", help="a built-in model")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from alphazip.bench import cpu_model
    from alphazip.lookup import MODELS
    from alphazip.schedule import split_chunks

    torch.set_grad_enabled(False)
    model = MODELS.get(args.model, "float32")
    rates = [0.0] + [float(rate) for rate in args.rates.split(",")]
    print(f"cpu: {cpu_model()}; {args.model}; context {args.context}; transformers fp32 logits")
    for path in args.files:
        data = path.read_bytes()[:args.bytes]
        chunks = split_chunks(model.tokenizer.encode(data), args.context)
        totals = dict.fromkeys(rates, 0.0)
        started = time.perf_counter()
        for chunk in chunks:
            inputs = np.concatenate([[model.bos_id], chunk[:-1]]).clip(max=model.hf.config.vocab_size - 1)
            logp = torch.log_softmax(model.hf(torch.from_numpy(inputs)[None]).logits[0].float(), -1)
            for rate in rates:
                totals[rate] += chunk_bits(logp, torch.from_numpy(chunk), rate)
        print(f"{path.name}, first {len(data):,} bytes, {sum(map(len, chunks)):,} tokens, "
              f"{time.perf_counter() - started:.0f} s")
        for rate, bits in totals.items():
            print(f"  rate {rate}: ideal {bits / 8:,.0f} B, {bits / len(data):.4f} bits/byte, "
                  f"{100 * (bits / totals[0.0] - 1):+.2f} %")


if __name__ == "__main__":
    main()
