"""Dump what scripts/measure_mixing.py reads: per token of a file, packed as `alphazip pack`
chunks it (default model, exact engine), its id, the model's log2 p of it (-99 where escaped),
its chunk and the model's 8 most likely ids.

    python scripts/dump_tokens.py ../shared/corpus/html /tmp/dumps/html.npz [--context 1024]
"""

import argparse

import numpy as np
import torch

from alphazip import Compressor
from alphazip.coding.base import FrameEncoder
from alphazip.lookup import MODELS, engine_for
from alphazip.schedule import encode_chunks


class Dumper(FrameEncoder):
    def __init__(self, chunks: list[np.ndarray]):
        self.log2p = [np.zeros(len(chunk)) for chunk in chunks]
        self.top8 = [np.zeros((len(chunk), 8), np.int64) for chunk in chunks]

    def observe(self, rows, start, logits, tokens, lengths) -> None:
        flat = logits.reshape(-1, logits.shape[-1]).float()
        target = torch.from_numpy(np.ascontiguousarray(tokens).reshape(-1))
        inside = target < flat.shape[1]
        picked = flat.gather(1, torch.where(inside, target, 0)[:, None])[:, 0] - torch.logsumexp(flat, 1)
        log2p = torch.where(inside, picked / np.log(2), torch.full_like(picked, -99.0)).view(len(rows), -1).numpy()
        top8 = flat.topk(8, dim=1).indices.view(len(rows), -1, 8).numpy()
        for row, chunk in enumerate(rows):
            live = max(min(tokens.shape[1], int(lengths[row]) - start), 0)
            self.log2p[chunk][start:start + live] = log2p[row, :live]
            self.top8[chunk][start:start + live] = top8[row, :live]

    def streams(self) -> list[bytes]:
        return []


def save_dump(path, chunks: list[np.ndarray], log2p: list[np.ndarray], top8: list[np.ndarray]) -> dict:
    """Write what scripts/measure_mixing.py reads, from per-chunk arrays (chunks numbered in
    order); returns the arrays written."""
    arrays = {"ids": np.concatenate(chunks).astype(np.int64), "log2p": np.concatenate(log2p),
              "chunk": np.concatenate([np.full(len(chunk), index) for index, chunk in enumerate(chunks)]),
              "top8": np.concatenate(top8)}
    np.savez(path, **arrays)
    return arrays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("out")
    parser.add_argument("--context", type=int, default=1024)
    args = parser.parse_args()
    data = open(args.file, "rb").read()
    packer = Compressor(backend="ac", context=args.context, mode="model")
    model = MODELS.get(packer.settings.model, packer.settings.dtype)
    engine = engine_for(model, "auto")
    all_chunks, log2p, top8 = [], [], []
    for piece in packer.frames_of(data):
        chunks = packer.chunks_of(piece, model)
        dumper = Dumper(chunks)
        encode_chunks(model, chunks, packer.settings.batch, [dumper], None, engine)
        all_chunks += chunks
        log2p += dumper.log2p
        top8 += dumper.top8
    log2p = save_dump(args.out, all_chunks, log2p, top8)["log2p"]
    print(f"{args.out}: {len(log2p)} tokens, the model's ideal {-log2p[log2p > -99].sum() / len(data):.4f} bits/byte")


if __name__ == "__main__":
    main()
