"""Is `ac`'s final distribution calibrated? Would a secondary estimate of its first choice pay?

Packs the first BYTES of FILE with `--backend ac`, then unpacks it while recording, at every
position, the probability the mixed table (the model's biased frequencies plus the experts'
additions) gives its first choice and whether that choice was the token. Prints how often the
first choice comes true against what it was given, by probability band, and what an adaptive
probability map (an APM as in lpaq: interpolated cells over the stretched probability, learning
from each outcome, averaged with the input in the logistic domain) would save, the rest of the
table rescaled. A floating-point experiment: it decides whether a coder stage is worth building.

    python scripts/measure_calibration.py ../shared/corpus/alice29.txt --bytes 40000
"""

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np

from alphazip import Compressor, Decompressor
from alphazip.coding import arithmetic
from alphazip.coding.frequencies import FrequencyLookup

BANDS = (0.0, 0.2, 0.4, 0.6, 0.8, 0.95, 1.0)


def first_choices(archive: bytes) -> tuple[bytes, np.ndarray, np.ndarray]:
    """Unpack ``archive``; per position the mixed table's first choice's probability and whether it came."""
    probabilities, hits = [], []
    plain = arithmetic.ArithmeticDecoder.next_tokens

    def recording(self, rows, position, logits):
        biased, tops = self.biases.biased(rows.tolist(), logits)  # the same rows next_tokens codes under
        lookup = FrequencyLookup(biased)
        totals = lookup.totals.tolist()
        extras = [self.candidates(chunk, tops[i], totals[i]) for i, chunk in enumerate(rows)]  # fixed per position
        candidates = self._with_model_frequencies(lookup, extras)
        _, top_freqs = lookup.at(list(range(len(rows))), tops)
        firsts = []
        for i in range(len(rows)):
            mixed = {tops[i]: top_freqs[i], **{token: freq + extra for token, extra, _, freq in candidates[i]}}
            first = max(mixed, key=lambda token: (mixed[token], -token))
            whole = totals[i] + sum(extra for _, extra in extras[i]) + arithmetic.ESCAPE
            firsts.append((first, mixed[first] / whole))
        tokens = plain(self, rows, position, logits)
        for (first, probability), token in zip(firsts, tokens.tolist()):
            probabilities.append(probability)
            hits.append(token == first)
        return tokens

    arithmetic.ArithmeticDecoder.next_tokens = recording
    try:
        data = Decompressor().decompress(archive)
    finally:
        arithmetic.ArithmeticDecoder.next_tokens = plain
    return data, np.array(probabilities), np.array(hits)


def apm_saving(probabilities: np.ndarray, hits: np.ndarray, rate: float, cells: int = 33) -> float:
    """Bits saved by an adaptive map of the first choice's probability (negative: lost)."""
    stretch = lambda p: math.log(p / (1 - p))
    squash = lambda x: 1 / (1 + math.exp(-x))
    table = [squash(-8 + 16 * j / (cells - 1)) for j in range(cells)]
    saved = 0.0
    for p, hit in zip(np.clip(probabilities, 1e-6, 1 - 1e-6).tolist(), hits.tolist()):
        x = min(max(stretch(p), -7.999), 7.999)
        where = (x + 8) / 16 * (cells - 1)
        j, w = int(where), where - int(where)
        mapped = min(max(table[j] * (1 - w) + table[j + 1] * w, 1e-6), 1 - 1e-6)
        q = min(max(squash((x + stretch(mapped)) / 2), 1e-6), 1 - 1e-6)
        saved += math.log2(q / p) if hit else math.log2((1 - q) / (1 - p))
        table[j] += rate * (hit - table[j]) * (1 - w)
        table[j + 1] += rate * (hit - table[j + 1]) * w
    return saved


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file", type=Path)
    parser.add_argument("--bytes", type=int, default=40000)
    args = parser.parse_args()
    data = args.file.read_bytes()[:args.bytes]
    archive = Compressor(backend="ac", mode="model").compress(data)
    unpacked, probabilities, hits = first_choices(archive)
    assert unpacked == data, "the archive did not unpack to its input"
    print(f"{args.file.name}, first {len(data):,} B: archive {len(archive):,} B, {len(hits):,} positions")
    print("| first choice given | positions | mean given | came true |")
    print("| --- | ---: | ---: | ---: |")
    for low, high in zip(BANDS, BANDS[1:]):
        band = (probabilities >= low) & (probabilities < high if high < 1 else probabilities <= high)
        if band.any():
            print(f"| {low:.2f}-{high:.2f} | {band.sum():,} | {probabilities[band].mean():.3f} | {hits[band].mean():.3f} |")
    for rate in (0.005, 0.02):
        print(f"APM on the first choice, rate {rate}: {apm_saving(probabilities, hits, rate) / 8:+,.0f} B saved")


if __name__ == "__main__":
    main()
