"""Small inputs: what the container costs, and how long a cold `alphazip` takes on one.

For 4 KiB of each corpus text and of two files nobody here wrote (Debian's copy of the Apache
license and CPython's json/decoder.py), packed with the default settings and brotli (and with
ac and ac-plain, whole archives):

- the archive's bytes, the container's own (archive minus its payloads), and what format 2
  would have written for the same frames;
- the model's ideal code length on the same chunks, the order-0 entropy of the rank stream,
  and brotli -11 on the raw bytes.

With --timing, the wall time of cold `alphazip pack` and `unpack` processes (model cached) on
the first 4 KiB of alice29.txt, split into start-up and tokens: start-up is a cold run on a
one-byte input (--mode model: load, checks, one token), the tokens the rest of the 4 KiB run.
Medians of --repeat runs, of wall time and of CPU time (user + system, every thread).

    python scripts/measure_small.py [--timing] [--repeat 3] [--no-sizes] [--json out.json]
"""

import argparse
import hashlib
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import brotli
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
JSON_DECODER = Path(json.__file__).parent / "decoder.py"
FILES = {name: CORPUS / name for name in ("alice29.txt", "asyoulik.txt", "html", "urls.10K")} | {
    "Apache-2.0 (Debian)": Path("/usr/share/common-licenses/Apache-2.0"), "json/decoder.py (CPython)": JSON_DECODER}
SIZE = 4096


def sizes(data: bytes) -> dict:
    """Archive, container, format-2 container, ideal, rank entropy and brotli -11 for ``data``."""
    from alphazip import Compressor, container
    from alphazip.coding.ranked import symbolize
    from alphazip.lookup import MODELS, engine_for
    from alphazip.report import library_versions
    from alphazip.schedule import score_chunks

    packer = Compressor(backend="brotli")
    model = MODELS.get(packer.settings.model, packer.settings.dtype)
    chunks = packer.chunks_of(data, model)
    scores = score_chunks(model, chunks, packer.settings.batch, None, engine_for(model, "auto"))
    archive = packer.pack(data, scores=[scores])
    blob = container.write(archive)
    symbols, _ = symbolize(chunks, scores.ranks, packer.settings.top_k)
    counts = np.bincount(symbols)
    probabilities = counts[counts > 0] / len(symbols)
    payloads = sum(len(stream) for frame in archive.frames for stream in frame.streams)
    return {"bytes": len(data), "tokens": int(sum(map(len, chunks))), "chunks": len(chunks),
            "archive": len(blob), "container": len(blob) - payloads,
            "container_format_2": _format_2_bytes(archive, chunks, model, data, library_versions()) - payloads,
            "ideal": round(sum(scores.bits) / 8, 1),
            "rank_entropy": round(-(counts[counts > 0] * np.log2(probabilities)).sum() / 8, 1),
            "brotli_11": len(brotli.compress(data, quality=11, lgwin=24)), "mode": archive.mode,
            # the arithmetic coders, whole archives (container included), and issue 18's bound for them
            "ac": len(Compressor(backend="ac").compress(data)), "ac_plain": len(Compressor(backend="ac-plain").compress(data)),
            "ac_bound": round(1.05 * sum(scores.bits) / 8 + 40, 1)}


def _format_2_bytes(archive, chunks, model, data: bytes, versions: dict) -> int:
    """What format 2 wrote for the same frames: JSON header, a CRC-32 per chunk, SHA-256, CRCs."""
    import dataclasses

    from alphazip import container

    header = dataclasses.replace(archive.header, versions=versions, batch=16, threads=2)
    frames = [dataclasses.replace(frame, chunk_crcs=[zlib.crc32(model.tokenizer.decode(c)) for c in chunks]
                                  if frame.mode == "model" else []) for frame in archive.frames]
    full = dataclasses.replace(archive, header=header, frames=frames, original_sha256=hashlib.sha256(data).digest())
    return len(container.write(full, 2))


def cold_seconds(arguments: list[str], repeat: int) -> tuple[float, float]:
    """Median wall time and median CPU time (user + system, all threads) of a fresh `alphazip`
    process with ``arguments``; the CPU time says what a busy machine's wall time hides."""
    walls, cpus = [], []
    for _ in range(repeat):
        before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        subprocess.run([str(Path(sys.executable).parent / "alphazip"), *arguments], check=True, capture_output=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        walls.append(time.perf_counter() - started)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def timing(repeat: int) -> dict:
    data = (CORPUS / "alice29.txt").read_bytes()[:SIZE]
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        (work / "one.txt").write_bytes(data[:1])
        (work / "four.txt").write_bytes(data)
        wall, cpu = {}, {}
        for name in ("one", "four"):
            text, packed = work / f"{name}.txt", work / f"{name}.txt.az"
            for direction, arguments in (("pack", ["pack", str(text), "-f", "-q", "--mode", "model"]),
                                         ("unpack", ["unpack", str(packed), "-o", str(work / "out"), "-f", "-q"])):
                wall[f"{direction}_{name}"], cpu[f"{direction}_{name}"] = cold_seconds(arguments, repeat)
            assert (work / "out").read_bytes() == text.read_bytes()
    result = {}
    for direction in ("pack", "unpack"):
        one, four = wall[f"{direction}_one"], wall[f"{direction}_four"]
        result |= {f"{direction}_start_up": one, f"{direction}_tokens": four - one, f"{direction}_total": four,
                   f"{direction}_start_up_cpu": cpu[f"{direction}_one"], f"{direction}_total_cpu": cpu[f"{direction}_four"]}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timing", action="store_true", help="also time cold pack and unpack processes")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing (the median is kept)")
    parser.add_argument("--no-sizes", action="store_true", help="skip the sizes table (with --timing: only time)")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from alphazip.bench import machine

    report = {"machine": machine(), "files": {}}
    print("| file | tokens | archive | container | format 2's | ideal | rank entropy | brotli -11 | ac | ac-plain | 1.05 ideal + 40 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, path in FILES.items() if not args.no_sizes else ():
        row = sizes(path.read_bytes()[:SIZE])
        report["files"][name] = row
        print(f"| {name} | {row['tokens']} | {row['archive']} | {row['container']} | {row['container_format_2']} | "
              f"{row['ideal']} | {row['rank_entropy']} | {row['brotli_11']} | {row['ac']} | {row['ac_plain']} | "
              f"{row['ac_bound']} |", flush=True)
    if args.timing:
        report["timing"] = timing(args.repeat)
        print(json.dumps(report["timing"], indent=1))
    print(f"machine: {report['machine'].get('cpu_model', '?')}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
