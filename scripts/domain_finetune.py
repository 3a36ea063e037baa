"""Issue 4's measurement: fine-tune a domain model on real files nobody here wrote, then pack the
held-out files with the base and with the domain model and compare.

The default domain is Python source: transformers' own ``models/*/modeling_*.py`` files under
20 KB, as installed from PyPI (the same files on any machine with the same transformers
version). ``alphazip finetune`` splits them by file; the held-out files, joined in name order,
are packed with ``--backend brotli`` by each model, unpacked and compared byte for byte.

    python scripts/domain_finetune.py --out build/domain            # prints a Markdown table
    python scripts/domain_finetune.py --package rich --pattern '**/*.py' --out build/rich
"""

import argparse
import importlib.util
import json
import resource
import shutil
import sys
import time
from pathlib import Path

import brotli

from alphazip import api
from alphazip.cli import _quiet_libraries, progress_bar
from alphazip.finetune import FinetuneSettings, finetune, read_corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", default="transformers")
    parser.add_argument("--pattern", default="models/*/modeling_*.py")
    parser.add_argument("--max-file-kb", type=int, default=20)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=FinetuneSettings.steps)
    parser.add_argument("--sequence", type=int, default=FinetuneSettings.sequence)
    parser.add_argument("--batch", type=int, default=FinetuneSettings.batch)
    parser.add_argument("--lora-rank", type=int, default=FinetuneSettings.lora_rank)
    parser.add_argument("--learning-rate", type=float, default=FinetuneSettings.learning_rate)
    parser.add_argument("--base", default=FinetuneSettings.base)
    parser.add_argument("--dtype", default=FinetuneSettings.dtype)
    args = parser.parse_args()
    _quiet_libraries()

    corpus = args.out / "corpus"
    copied = copy_corpus(args.package, args.pattern, args.max_file_kb * 1024, corpus)
    print(f"corpus: {copied} files of {args.package}/{args.pattern} under {args.max_file_kb} KB -> {corpus}")
    settings = FinetuneSettings(base=args.base, steps=args.steps, sequence=args.sequence, batch=args.batch,
                                lora_rank=args.lora_rank, learning_rate=args.learning_rate, dtype=args.dtype)
    model_folder = args.out / "model"
    if model_folder.exists():  # a finished model of an earlier run: measure it again
        manifest = json.loads((model_folder / "alphazip-model.json").read_text())
    else:
        with progress_bar("fine-tuning", quiet=False, unit="steps") as progress:
            result = finetune(corpus, model_folder, settings, lambda d, t, loss: progress(d, t), log=print)
        manifest = result.manifest
    held_out = read_corpus(corpus, settings.held_out).held_out
    data = b"".join(held_out[name] for name in sorted(held_out))
    rows = [measure(name, data) for name in (settings.base, str(model_folder))]
    report = {"package": args.package, "pattern": args.pattern, "files": copied, "manifest": manifest,
              "held_out_bytes": len(data), "brotli_11": len(brotli.compress(data, quality=11)), "rows": rows,
              "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    (args.out / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    print(markdown(report))
    if not all(row["round_trip"] for row in rows):
        sys.exit(1)


def copy_corpus(package: str, pattern: str, max_bytes: int, target: Path) -> int:
    """Copy the package's files matching ``pattern`` (and at most ``max_bytes``) into ``target``."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"package {package!r} is not installed")
    root = Path(next(iter(spec.submodule_search_locations)))
    if target.exists():
        shutil.rmtree(target)
    count = 0
    for path in sorted(root.glob(pattern)):
        if path.is_file() and 0 < path.stat().st_size <= max_bytes:
            destination = target / path.relative_to(root)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)
            count += 1
    return count


def measure(model: str, data: bytes) -> dict:
    """Pack ``data`` with ``model`` (default settings, brotli), unpack it, and time both."""
    api.MODELS.get(model, api.DEFAULT_DTYPE)  # load outside the timings
    tokens = len(api.MODELS.get(model, api.DEFAULT_DTYPE).tokenizer.encode(data))
    started = time.perf_counter()
    blob = api.Compressor(model=model, backend="brotli", mode="model").compress(data)
    packed = time.perf_counter() - started
    started = time.perf_counter()
    restored = api.Decompressor().decompress(blob)
    unpacked = time.perf_counter() - started
    return {"model": model, "bytes": len(blob), "bits_per_byte": 8 * len(blob) / len(data), "tokens": tokens,
            "pack_tok_s": tokens / packed, "unpack_tok_s": tokens / unpacked, "round_trip": restored == data}


def markdown(report: dict) -> str:
    manifest, rows = report["manifest"], report["rows"]
    bits = manifest["held_out_bits_per_byte"]
    lines = [f"Held-out part: {len(manifest['data']['held_out_files'])} files, {report['held_out_bytes']:,} bytes "
             f"(training part: {manifest['data']['train_files']} files, {manifest['data']['train_bytes']:,} bytes); "
             f"brotli -11: {report['brotli_11']:,} bytes",
             f"Fine-tune: {manifest['settings']}, {manifest['cpu_seconds']:.0f} CPU s "
             f"({manifest['wall_seconds']:.0f} s wall, {manifest['threads']} threads); held-out ideal "
             f"{bits['before']:.4f} -> {bits['after']:.4f} bits/byte", "",
             "| model | archive bytes | bits/byte | vs base | pack tok/s | unpack tok/s | round trip |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for row in rows:
        change = row["bytes"] / rows[0]["bytes"] - 1
        lines.append(f"| {row['model']} | {row['bytes']:,} | {row['bits_per_byte']:.4f} | {change:+.1%} | "
                     f"{row['pack_tok_s']:.0f} | {row['unpack_tok_s']:.0f} | {'OK' if row['round_trip'] else 'FAILED'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
