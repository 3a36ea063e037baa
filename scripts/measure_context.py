"""Context length against ratio and speed: each file packed with ``--backend ac`` at several
chunk lengths, in one model pass per length that also measures the model's ideal code length;
with --unpack, the archive unpacked (timed) and compared byte for byte.

    python scripts/measure_context.py FILE... [--contexts 1024,2048,4096,8192] [--unpack] [--bytes N] [--model NAME] [--json out.json]
"""

import argparse
import json
import resource
import time
import zlib
from pathlib import Path

from alphazip import Compressor, Decompressor, container
from alphazip.lookup import MODELS, engine_for
from alphazip.bench import machine
from alphazip.coding import get_coder
from alphazip.container import Archive, Frame
from alphazip.schedule import Scorer, encode_chunks


def measure(data: bytes, context: int, unpack: bool, model_name: str | None = None) -> dict:
    packer = Compressor(backend="ac", context=context, mode="model", **({"model": model_name} if model_name else {}))
    model = MODELS.get(packer.settings.model, packer.settings.dtype)
    engine = engine_for(model, "auto")
    plan = packer._plan(data)
    frames, ideal_bits, tokens, started = [], 0.0, 0, time.perf_counter()
    for piece in packer.frames_of(data):
        chunks = packer.chunks_of(piece, model)
        scorer, encoder = Scorer(chunks), get_coder("ac").encoder(chunks, model, packer.settings.top_k)
        encode_chunks(model, chunks, packer.settings.batch, [scorer, encoder], None, engine)
        frames.append(Frame("model", len(piece), [len(c) for c in chunks], [], encoder.streams(),
                            zlib.crc32(piece)))
        ideal_bits += sum(scorer.scores.bits)
        tokens += sum(map(len, chunks))
    pack_seconds = time.perf_counter() - started
    size, digest = container.original_identity(data)
    blob = container.write(Archive(plan.header, frames, size, digest))
    row = {"context": context, "tokens": tokens, "bytes": len(data), "ideal": round(ideal_bits / 8),
           "archive": len(blob), "bpb": round(8 * len(blob) / len(data), 4),
           "ideal_bpb": round(ideal_bits / len(data), 4),
           "over_ideal_percent": round(100 * (len(blob) / (ideal_bits / 8) - 1), 2),
           "pack_tokens_per_s": round(tokens / pack_seconds, 1)}
    if unpack:
        started = time.perf_counter()
        assert Decompressor().decompress(blob) == data, "unpacked bytes differ"
        row["unpack_tokens_per_s"] = round(tokens / (time.perf_counter() - started), 1)
    row["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--contexts", default="1024,2048,4096,8192")
    parser.add_argument("--unpack", action="store_true")
    parser.add_argument("--bytes", type=int, help="only the first BYTES of each file (a mid-sized input)")
    parser.add_argument("--model", help="a built-in model or a model folder (default: the default model)")
    parser.add_argument("--json")
    args = parser.parse_args()
    results = {"machine": machine(), "rows": []}
    for path in args.files:
        for context in map(int, args.contexts.split(",")):
            data = path.read_bytes()[:args.bytes] if args.bytes else path.read_bytes()
            row = {"file": path.name, "model": args.model or "default", **measure(data, context, args.unpack, args.model)}
            results["rows"].append(row)
            print(row, flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
