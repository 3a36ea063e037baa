"""Issue 14's cross-machine check: archives of the exact engine unpack byte-identically whatever
CPU kind, decoding batch and thread count unpack them, and the probe fingerprint is the same.

    python scripts/check_portability.py                       # default model, 600 bytes of prose
    python scripts/check_portability.py --model gemma3-270m --bytes 300 --diagonal

One machine acts as other CPU kinds through the instruction-set settings of torch, oneDNN and
MKL (alphazip/model/isa.py), which must be set before torch is imported: so every cell of the
matrix is a fresh process. The input is packed twice, with the default settings here and with
``--batch 5`` under the plainest setting, and each archive is unpacked under every
{setting} x {batch 1, 7, 64} x {threads 1, 2, 8}.
"""

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BATCHES, THREADS = (1, 7, 64), (1, 2, 8)


def worker(args) -> None:
    """In a fresh process: pack (--pack) or unpack every archive, and report as JSON."""
    import torch

    from alphazip import Compressor, Decompressor, api, container
    from alphazip.model import native
    from alphazip.model.intmm import int_mm_path, packed_path

    model = api.MODELS.get(args.model, "float32")
    engine = api.engine_for(model, "auto")
    report = {"cpu": torch.backends.cpu.get_cpu_capability(), "probe": model.probe(engine),
              "products": packed_path() or int_mm_path(), "kernel": native.variant()}
    data = Path(args.input).read_bytes()
    with api.torch_threads(args.threads):
        if args.pack:
            blob = Compressor(model=args.model, mode="model", batch=args.batch).compress(data)
            Path(args.pack).write_bytes(blob)
            report["frames"] = repr(container.read(blob).frames)
        else:
            started = time.perf_counter()
            report["identical"] = [Decompressor(batch=args.batch).decompress(Path(p).read_bytes()) == data
                                   for p in args.archives]
            report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report))


def run_worker(setting: str, options: list[str]) -> dict:
    from alphazip.model.isa import ISA_SETTINGS

    env = {**os.environ, **ISA_SETTINGS[setting]}
    done = subprocess.run([sys.executable, __file__, "--worker", *options], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--input", default=str(ROOT / "data" / "alice-excerpt.txt"))
    parser.add_argument("--bytes", type=int, default=600, help="pack the first BYTES of the input")
    parser.add_argument("--diagonal", action="store_true",
                        help="per setting only (batch, threads) = (1, 1), (7, 2), (64, 8): 9 cells, not 27")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--pack", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("archives", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    from alphazip.bench import machine
    from alphazip.model.isa import ISA_SETTINGS

    print(f"model {args.model}; {machine()}")
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "input.bin"
        source.write_bytes(Path(args.input).read_bytes()[: args.bytes])
        common = ["--model", args.model, "--input", str(source)]
        packs = {"default settings, native": ("native", ["--batch", "16"]), "--batch 5, default ISA": ("default", ["--batch", "5"])}
        archives, frames = [], set()
        for name, (setting, options) in packs.items():
            archive = str(Path(folder) / f"{setting}.az")
            report = run_worker(setting, [*common, *options, "--pack", archive])
            print(f"packed ({name}): {report}" if "error" in report else
                  f"packed ({name}): probe {report['probe'][:16]}, cpu {report['cpu']}, {report['products']}, "
                  f"kernel {report['kernel']}, {Path(archive).stat().st_size} B")
            archives.append(archive)
            frames.add(report.get("frames"))
        print(f"payloads of the two packs identical: {len(frames) == 1}")
        failures, probes = 0, set()
        print("| setting | batch | threads | torch's cpu | integer products | kernels | probe | both archives identical | s |")
        print("| --- | ---: | ---: | --- | --- | --- | --- | --- | ---: |")
        pairs = list(zip(BATCHES, THREADS)) if args.diagonal else list(itertools.product(BATCHES, THREADS))
        for setting, (batch, threads) in itertools.product(ISA_SETTINGS, pairs):
            report = run_worker(setting, [*common, "--batch", str(batch), "--threads", str(threads), *archives])
            ok = "error" not in report and all(report["identical"])
            failures += not ok
            probes.add(report.get("probe"))
            print(f"| {setting} | {batch} | {threads} | {report.get('cpu')} | {report.get('products')} | "
                  f"{report.get('kernel')} | {str(report.get('probe'))[:16]} | "
                  f"{'yes' if ok else report.get('error', 'NO')} | {report.get('seconds')} |")
        print(f"{failures} failures; {len(probes)} distinct probe fingerprint(s)")
        sys.exit(1 if failures or len(probes) != 1 or len(frames) != 1 else 0)


if __name__ == "__main__":
    main()
