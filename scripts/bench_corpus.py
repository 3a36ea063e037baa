"""Pack and unpack corpus files with every back-end; compare with the classic compressors.

One model pass scores each text file (pack throughput); every back-end codes the same ranks,
each payload is decoded back and compared with the symbols it came from, and one full
``Decompressor.decompress`` of the brotli archive (one model decode pass, unpack throughput)
proves the bytes come back exactly. Files that look binary are stored raw by every back-end
and each archive is fully decompressed. Prints a Markdown table; ``--json`` saves the figures.

    python scripts/bench_corpus.py ../shared/corpus/alice29.txt ../shared/corpus/geo.protodata
"""

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from alphazip import container
from alphazip.api import DEFAULT_CONTEXT, MODELS, Compressor, Decompressor, Settings, engine_for, looks_binary, symbolize
from alphazip.backends import backend_names, get_backend
from alphazip.bench import CLASSICS, machine
from alphazip.schedule import score_chunks


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_text(data: bytes, settings: Settings, ks: tuple[int, ...] = ()) -> dict:
    """One scoring pass, every back-end coded from it, one full decode pass."""
    model = MODELS.get(settings.model, settings.dtype)
    settings = Settings(**{**settings.__dict__, "mode": "model"})  # the rank streams, even where raw is smaller
    packer = Compressor(settings)
    frame_chunks = [packer.chunks_of(piece, model) for piece in packer.frames_of(data)]
    tokens = sum(len(chunk) for chunks in frame_chunks for chunk in chunks)
    started = time.perf_counter()
    scores = [score_chunks(model, chunks, settings.batch, engine=engine_for(model, settings.engine))
              for chunks in frame_chunks]
    pack_seconds = time.perf_counter() - started
    expected = [symbolize(chunks, frame.ranks, settings.top_k) for chunks, frame in zip(frame_chunks, scores)]
    symbols = np.concatenate([s for s, _ in expected] or [np.zeros(0, np.int64)])
    result = {"tokens": tokens, "pack_seconds": pack_seconds, "ideal_bits": sum(sum(s.bits) for s in scores),
              "escapes": sum(len(e) for _, e in expected), "rank0_share": float(np.mean(symbols == 0)) if tokens else 0.0,
              "backends": {}}
    brotli_blob = None
    for name in backend_names():
        archive = Compressor(Settings(**{**settings.__dict__, "backend": name})).pack(data, scores=scores)
        raw = get_backend(name).encode(np.frombuffer(data, np.uint8), 256)
        for frame, (frame_symbols, frame_escapes) in zip(archive.frames, expected, strict=True):
            decoded_symbols, decoded_escapes = Decompressor.read_symbols(archive.header, frame, model)
            assert np.array_equal(np.concatenate(decoded_symbols), frame_symbols), name
            assert np.array_equal(np.concatenate(decoded_escapes), frame_escapes), name
        blob = container.write(archive)
        result["backends"][name] = {"bytes": len(blob), "raw_backend_bytes": len(raw),
                                    "mode": "model" if len(blob) <= len(raw) + 100 else "raw (auto)"}
        if name == "brotli":
            brotli_blob = blob
    if ks:
        result["top_k"] = top_k_table(data, settings, scores, ks)
    started = time.perf_counter()
    restored = Decompressor().decompress(brotli_blob)
    result["unpack_seconds"] = time.perf_counter() - started
    result["round_trip"] = restored == data
    return result


def bench_binary(data: bytes, settings: Settings) -> dict:
    """Every back-end packs and unpacks in full (auto mode stores binary data raw)."""
    result = {"tokens": 0, "backends": {}, "round_trip": True}
    for name in backend_names():
        compressor = Compressor(Settings(**{**settings.__dict__, "backend": name}))
        started = time.perf_counter()
        blob = compressor.compress(data)
        pack = time.perf_counter() - started
        started = time.perf_counter()
        ok = Decompressor().decompress(blob) == data
        result["backends"][name] = {"bytes": len(blob), "mode": container.read(blob).mode,
                                    "pack_seconds": pack, "unpack_seconds": time.perf_counter() - started}
        result["round_trip"] &= ok
    return result


def top_k_table(data: bytes, settings: Settings, scores, ks) -> list[dict]:
    """Archive sizes by k, coded from the same scoring pass (chooses k and serialization)."""
    rows = []
    for k in ks:
        row = {"top_k": k}
        for name in ("brotli", "zstd", "xz", "huffman"):
            compressor = Compressor(Settings(**{**settings.__dict__, "backend": name, "top_k": k}))
            row[name] = len(container.write(compressor.pack(data, scores=scores)))
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--model", default=Settings.model)
    parser.add_argument("--context", type=int, default=DEFAULT_CONTEXT)
    parser.add_argument("--batch", type=int, default=Settings.batch)
    parser.add_argument("--dtype", default=Settings.dtype)
    parser.add_argument("--top-k", type=int, default=Settings.top_k)
    parser.add_argument("--top-k-table", action="store_true", help="also measure sizes by k on the first text file")
    parser.add_argument("--json", type=Path, help="write all figures here")
    args = parser.parse_args()
    settings = Settings(model=args.model, context=args.context, batch=args.batch, dtype=args.dtype, top_k=args.top_k)
    report = {"settings": settings.__dict__, "machine": machine(), "files": {}}
    for path in args.files:
        data = path.read_bytes()
        entry = {"bytes": len(data), "classics": {k: len(f(data)) for k, (f, _) in CLASSICS.items()}}
        if looks_binary(data) or not data:
            entry |= bench_binary(data, settings)
        else:
            ks = (15, 63, 255, 1023, 65535) if args.top_k_table and "top_k" not in report else ()
            entry |= bench_text(data, settings, ks)
            if "top_k" in entry:
                report["top_k"] = entry["top_k"]
                print_top_k(path.name, entry["top_k"])
        entry["peak_rss_mib"] = peak_rss_mib()
        report["files"][path.name] = entry
        print_file(path.name, entry)
        if not entry["round_trip"]:
            print(f"FAILED round trip: {path.name}", file=sys.stderr)
    print_speed(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    if not all(f["round_trip"] for f in report["files"].values()):
        sys.exit(1)


def bpb(size: int, original: int) -> str:
    return f"{8 * size / original:.3f}" if original else "-"


def print_file(name: str, entry: dict) -> None:
    n = entry["bytes"]
    print(f"\n### {name} ({n:,} bytes, {entry['tokens']:,} tokens, round trip {'OK' if entry['round_trip'] else 'FAILED'})\n")
    print("| coder | bytes | bits/byte | ratio | mode |\n| --- | ---: | ---: | ---: | --- |")
    for coder, info in entry["backends"].items():
        print(f"| alphazip {coder} | {info['bytes']:,} | {bpb(info['bytes'], n)} | {info['bytes'] / max(n, 1):.3f} | {info['mode']} |")
    if entry.get("ideal_bits") is not None and entry["tokens"]:
        ideal = entry["ideal_bits"] / 8
        print(f"| model ideal code length | {ideal:,.0f} | {bpb(ideal, n)} | {ideal / n:.3f} | - |")
    for coder, size in entry["classics"].items():
        print(f"| {coder} | {size:,} | {bpb(size, n)} | {size / max(n, 1):.3f} | raw |")


def print_top_k(name: str, rows: list[dict]) -> None:
    print(f"\n### Archive bytes by top-k on {name} (k <= 255: one byte a rank; above: LEB128)\n")
    print("| top-k | brotli | zstd | xz | huffman |\n| ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['top_k']} | {row['brotli']:,} | {row['zstd']:,} | {row['xz']:,} | {row['huffman']:,} |")


def print_speed(report: dict) -> None:
    texts = {k: v for k, v in report["files"].items() if v.get("pack_seconds")}
    if not texts:
        return
    print("\n### Throughput (model files)\n\n| file | pack tok/s | pack KB/s | unpack tok/s | unpack KB/s | peak RSS MiB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, e in texts.items():
        print(f"| {name} | {e['tokens'] / e['pack_seconds']:.0f} | {e['bytes'] / 1000 / e['pack_seconds']:.2f} | "
              f"{e['tokens'] / e['unpack_seconds']:.0f} | {e['bytes'] / 1000 / e['unpack_seconds']:.2f} | {e['peak_rss_mib']:.0f} |")
    pack = statistics.median(e["tokens"] / e["pack_seconds"] for e in texts.values())
    unpack = statistics.median(e["tokens"] / e["unpack_seconds"] for e in texts.values())
    print(f"\nmedian pack {pack:.0f} tok/s, median unpack {unpack:.0f} tok/s")


if __name__ == "__main__":
    main()
