"""Code length of the model alone against the model mixed with alphazip.mixing, from token dumps.

Mixing is linear, so the coded cost of the true token needs only the model's probability of that
token: with f = round(2**24 p) (at least 1), the mixed probability is (f + the experts' addition
to the true token) / (2**24 + all the experts' additions). The mixer also asks which token the
model ranks first: the dump's top-1 by logit (the coder's argmax of quantized frequencies may
differ on near-ties, rarely). A dump (.npz) holds per token ``ids``,
``log2p`` (-99 for ids escaped beyond the model's width) and ``chunk`` and ``top8``; the mixer is reset at each
chunk, as the coder does. Escaped tokens cost the same either way and are left out of both sums.

    python scripts/dump_tokens.py ../shared/corpus/html /tmp/dumps/html.npz  # a dump
    python scripts/measure_mixing.py /tmp/dumps/alice29.txt.npz:152089 /tmp/dumps/html.npz:102400 [--shared]
    python scripts/measure_mixing.py --speed [A.npz:N]  # microseconds per token, B=1 and 16, on
                                                         # A's first 16 chunks (or random repeats)
    python scripts/measure_mixing.py --fit A.npz:N B.npz:M ...  # the prior tables, printed

The priors are the weights that minimise the code length over the dumps given, with a penalty
pulling each toward the default (cells seen a few times stay near it), fitted in floating point
offline and rounded to table indices: constants, so the bitstream depends on no float.
"""

import argparse
import math
import time

import numpy as np

from alphazip import mixing
from alphazip.mixing import FREQ_BITS, ChunkMixer, mix_rows
from alphazip.sharing import Recorded

WIDTH = 49152  # SmolLM2-135M's vocabulary


def code_bits(ids: np.ndarray, log2p: np.ndarray, chunks: np.ndarray, tops: np.ndarray, shared: bool = False
              ) -> tuple[float, float, int]:
    """(bits of the model alone, bits mixed, tokens escaped) over one dump; ``tops``: the model's
    first choice at each position (the real mixer takes the argmax of the frequencies);
    ``shared``: the experts read their chunk's sharing group (``ac``), else the chunk alone (``ac-2``)."""
    alone = mixed = 0.0
    escaped = 0
    mixer = None
    fresh = _mixers(ids, chunks, shared)
    for i, (token, lp, top) in enumerate(zip(ids.tolist(), log2p.tolist(), tops.tolist())):
        if i in fresh:
            mixer = fresh[i]()
        if lp <= -99:
            escaped += 1
            mixer.learn(token, None)
            continue
        freq = max(1, round(2.0 ** (FREQ_BITS + lp)))
        extra, weights = mixer.predictions(top)
        hit = weights[extra == token]
        chosen = freq + (int(hit[0]) if len(hit) else 0)
        total = (1 << FREQ_BITS) + int(weights.sum())
        alone -= lp
        mixed -= math.log2(chosen / total)
        mixer.learn(token, freq)
    return alone, mixed, escaped


def report(dumps: list[str], shared: bool = False) -> None:
    print(f"{'file':<14}{'tokens':>8}{'escaped':>8}{'alone bpb':>11}{'mixed bpb':>11}{'change':>9}")
    for spec in dumps:
        path, size = spec.rsplit(":", 1)
        data = np.load(path)
        alone, mixed, escaped = code_bits(data["ids"], data["log2p"], data["chunk"], data["top8"][:, 0], shared)
        name = path.rsplit("/", 1)[-1].removesuffix(".npz")
        print(f"{name:<14}{len(data['ids']):>8}{escaped:>8}{alone / int(size):>11.4f}"
              f"{mixed / int(size):>11.4f}{(mixed / alone - 1) * 100:>8.2f}%", flush=True)


def speed(batch: int, chunks: np.ndarray) -> float:
    """CPU microseconds per token of mix_rows and update, ``batch`` of ``chunks`` [n, steps] at once
    (CPU time: the machine may be shared)."""
    freqs = np.full((batch, WIDTH), (1 << FREQ_BITS) // WIDTH, np.int64)
    freqs[:, 0] += (1 << FREQ_BITS) - freqs[0].sum()
    start = time.process_time()
    for group in range(0, len(chunks) - batch + 1, batch):
        mixers = [ChunkMixer(WIDTH) for _ in range(batch)]
        for column in chunks[group:group + batch].T.tolist():
            mix_rows(mixers, freqs)
            for mixer, token in zip(mixers, column):
                mixer.update(token)
    return (time.process_time() - start) / (len(chunks) // batch * batch * chunks.shape[1]) * 1e6


def _chunks(spec: str | None, length: int = 1024) -> np.ndarray:
    """The whole chunks of a dump as [n, length] (a text's own repeats), else random repeats."""
    if spec:
        data = np.load(spec.rsplit(":", 1)[0])
        whole = np.nonzero(data["chunk_tokens"] == length)[0][:16]
        return np.stack([data["ids"][data["chunk"] == c] for c in whole])
    rng = np.random.default_rng(0)
    phrase = rng.integers(0, WIDTH, 50)
    return np.where(rng.random((16, length)) < 0.7, np.resize(phrase, length),
                    rng.integers(0, WIDTH, (16, length)))


def _mixers(ids: np.ndarray, chunks: np.ndarray, shared: bool):
    """(first position, a fresh mixer) of each chunk of a dump; ``shared``: over sharing groups."""
    starts = np.flatnonzero(np.diff(chunks, prepend=-1))
    recorded = Recorded(np.split(ids, starts[1:])) if shared else None
    return {int(start): (lambda index=index: ChunkMixer(WIDTH, recorded.member(index) if shared else None))
            for index, start in enumerate(starts)}


def _fit_features(ids, log2p, chunks, tops, shared: bool = False):
    """Per position the model's p, per candidate (position, cell, q of the true token, q)."""
    buckets = max(mixing.MATCH_BUCKETS, mixing.NGRAM_BUCKETS)
    probs, rows = [], []
    fresh = _mixers(ids, chunks, shared)
    for i, (token, lp, top) in enumerate(zip(ids.tolist(), log2p.tolist(), tops.tolist())):
        if i in fresh:
            mixer = fresh[i]()
        if lp > -99:
            for expert, bucket, counts, seen in mixer.history.experts():
                rows += [(len(probs), (expert * buckets + bucket) * 2 + (t == top),
                          c / seen * (t == token), c / seen) for t, c in counts.items() if t < WIDTH]
            probs.append(2.0 ** lp)
        mixer.learn(token, None)
    return np.array(probs), np.array(rows).reshape(-1, 4)


def fit(dumps: list[str], penalty: float = 0.5, steps: int = 300, shared: bool = False) -> None:
    """Print the prior tables that minimise the dumps' code length (bits + penalty)."""
    import torch  # only here: the mixer itself needs no torch
    experts = len(mixing.MATCH_LENGTHS) + len(mixing.ORDERS)
    buckets = max(mixing.MATCH_BUCKETS, mixing.NGRAM_BUCKETS)
    default = mixing.LOG2_MIN + 6  # 1/64 of the model's weight
    data = []
    for spec in dumps:
        d = np.load(spec.rsplit(":", 1)[0])
        probs, rows = _fit_features(d["ids"], d["log2p"], d["chunk"], d["top8"][:, 0], shared)
        data.append((torch.tensor(probs), torch.tensor(rows[:, 0]).long(),
                     torch.tensor(rows[:, 1]).long(), torch.tensor(rows[:, 2]), torch.tensor(rows[:, 3])))
    log2w = torch.full((experts * buckets * 2,), float(default), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([log2w], lr=0.1)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = penalty * ((log2w - default) ** 2).sum()
        for probs, pos, cell, q_true, q in data:
            weight = 2 ** log2w[cell]
            chosen = probs.index_add(0, pos, weight * q_true)
            total = torch.ones_like(probs).index_add(0, pos, weight * q)
            loss = loss - torch.log2(chosen / total).sum()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            log2w.clamp_(mixing.LOG2_MIN, mixing.LOG2_MAX)
    index = torch.round((log2w.detach() - mixing.LOG2_MIN) * mixing.STEPS).long().reshape(experts, buckets, 2)
    tables = [index[e, :mixing.MATCH_BUCKETS if e < len(mixing.MATCH_LENGTHS) else mixing.NGRAM_BUCKETS]
              .tolist() for e in range(experts)]
    matches = len(mixing.MATCH_LENGTHS)
    for name, rows, labels in (("PRIOR_MATCH", tables[:matches], mixing.MATCH_LENGTHS),
                               ("PRIOR_NGRAM", tables[matches:], mixing.ORDERS)):
        print(f"{name} = [")
        for row, label in zip(rows, labels):
            print(f"    # {'context' if name == 'PRIOR_MATCH' else 'order'} {label}")
            print(f"    {row},")
        print("]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dumps", nargs="*", help="PATH.npz:BYTES, BYTES the size of the text dumped")
    parser.add_argument("--speed", action="store_true", help="time mix_rows at B=1 and B=16")
    parser.add_argument("--fit", action="store_true", help="print prior tables fitted to the dumps")
    parser.add_argument("--shared", action="store_true", help="experts over the chunks' sharing groups (ac)")
    args = parser.parse_args()
    if args.fit:
        fit(args.dumps, shared=args.shared)
    elif args.dumps:
        report(args.dumps, args.shared)
    if args.speed:
        chunks = _chunks(args.dumps[0] if args.dumps else None)
        for batch in (1, 16):
            print(f"B={batch:<3} {speed(batch, chunks):7.1f} us per token (mix_rows + update)")


if __name__ == "__main__":
    main()
