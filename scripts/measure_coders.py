"""Which range coder codes a token faster under a 49,152- and a 262,144-token distribution:
ours (``alphazip.coding``: the compiled frequency kernel, then a Python-integer range coder) or
constriction's (its range coder and categorical model, given the same integer frequencies as
probabilities). Both see the same logits (random, as peaked as a language model's); each codes
``--rows`` tokens and decodes them back, and the sizes are compared with the information.

    pip install constriction   # only this script needs it
    python scripts/measure_coders.py [--rows 256] [--repeat 3] [--json out.json]
"""

import argparse
import json
import math
import statistics
import time

import numpy as np
import torch

from alphazip.bench import machine
from alphazip.coding.frequencies import FrequencyLookup, coding_facts, frequencies
from alphazip.coding.rangecoder import RangeDecoder, RangeEncoder


def peaked_logits(rows: int, width: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits whose top token holds about half the mass, and tokens drawn near the top."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, width, generator=generator) * 2.5
    tokens = torch.randint(0, width, (rows,), generator=generator)
    logits[torch.arange(rows), tokens] += 14.0 * torch.rand(rows, generator=generator)
    return logits, tokens


def ours(logits: torch.Tensor, tokens: torch.Tensor) -> tuple[float, float, int]:
    started = time.perf_counter()
    encoder = RangeEncoder()
    for cum, freq, total in zip(*(t.tolist() for t in coding_facts(logits, tokens))):
        encoder.encode(cum, freq, total)
    code = encoder.finish()
    packed = time.perf_counter()
    decoder, got = RangeDecoder(code), []
    for row in range(len(logits)):  # one step at a time, as unpacking goes
        lookup = FrequencyLookup(logits[row:row + 1])
        token, cum, freq = (values[0] for values in lookup.find([0], [decoder.target(int(lookup.totals[0]))]))
        decoder.consume(cum, freq)
        got.append(token)
    assert got == tokens.tolist()
    return packed - started, time.perf_counter() - packed, len(code)


def constriction_coder(logits: torch.Tensor, tokens: torch.Tensor) -> tuple[float, float, int]:
    import constriction

    model = constriction.stream.model.Categorical(perfect=False)
    started = time.perf_counter()
    probabilities = frequencies(logits).double().numpy()  # the same integer table, as floats
    encoder = constriction.stream.queue.RangeEncoder()
    for row in range(len(logits)):
        encoder.encode(np.array([int(tokens[row])], dtype=np.int32), model, probabilities[row:row + 1])
    code = encoder.get_compressed()
    packed = time.perf_counter()
    decoder, got = constriction.stream.queue.RangeDecoder(code), []
    for row in range(len(logits)):
        table = frequencies(logits[row:row + 1]).double().numpy()
        got.append(int(decoder.decode(model, table)[0]))
    assert got == tokens.tolist()
    return packed - started, time.perf_counter() - packed, code.nbytes


def information_bytes(logits: torch.Tensor, tokens: torch.Tensor) -> float:
    log_p = torch.log_softmax(logits.double(), 1)[torch.arange(len(tokens)), tokens]
    return float(-log_p.sum() / math.log(2) / 8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    results = {"machine": machine(), "rows": args.rows, "threads": torch.get_num_threads(), "coders": []}
    for width in (49_152, 262_144):
        logits, tokens = peaked_logits(args.rows, width, seed=width)
        information = information_bytes(logits, tokens)
        for name, run in (("alphazip", ours), ("constriction", constriction_coder)):
            runs = [run(logits, tokens) for _ in range(args.repeat)]
            row = {"vocabulary": width, "coder": name, "bytes": runs[0][2], "information_bytes": round(information, 1),
                   "encode_us_per_token": round(statistics.median(r[0] for r in runs) / args.rows * 1e6, 1),
                   "decode_us_per_token": round(statistics.median(r[1] for r in runs) / args.rows * 1e6, 1)}
            results["coders"].append(row)
            print(row, flush=True)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=1)


if __name__ == "__main__":
    main()
