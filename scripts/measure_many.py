"""Many small files: one `alphazip pack` / `unpack` run for all of them against one run each.

The files are slices of 2-8 KiB (seeded sizes and offsets, cut at line ends) of the corpus's
four texts. Each direction is timed as one run over every file, then as one process per file
(over the first --separate files: 100 processes of each direction take a while); every unpacked
file is compared with its original. The per-file means compare the two where the counts differ.

    python scripts/measure_many.py [--files 100] [--separate 100] [--seed 0] [--separate-only] [--json out.json]
"""

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
TEXTS = ("alice29.txt", "asyoulik.txt", "html", "urls.10K")
ALPHAZIP = str(Path(sys.executable).parent / "alphazip")


def make_files(folder: Path, count: int, seed: int) -> list[Path]:
    rng = random.Random(seed)
    sources = [(CORPUS / name).read_bytes() for name in TEXTS]
    paths = []
    for index in range(count):
        text = sources[index % len(sources)]
        size = rng.randint(2048, 8192)
        start = rng.randrange(0, len(text) - size)
        start = text.find(b"\n", start) + 1
        path = folder / f"file{index:03d}.txt"
        path.write_bytes(text[start:start + size])
        paths.append(path)
    return paths


def timed(commands: list[list[str]]) -> float:
    started = time.perf_counter()
    for command in commands:
        subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--separate", type=int, help="files packed one process each (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--separate-only", action="store_true",
                        help="skip the one run (its figures taken already, the same seeded files)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from alphazip.bench import cpu_model

    with tempfile.TemporaryDirectory() as work:
        originals = Path(work) / "originals"
        originals.mkdir()
        paths = make_files(originals, args.files, args.seed)
        result = {"files": len(paths), "bytes": sum(p.stat().st_size for p in paths), "cpu": cpu_model()}
        styles = ("one run per file",) if args.separate_only else ("one run", "one run per file")
        for style in styles:
            folder = Path(work) / style.replace(" ", "-")
            shutil.copytree(originals, folder)
            texts = sorted(folder.glob("*.txt"))
            if style != "one run":
                texts = texts[:args.separate]
            result[f"files, {style}"] = len(texts)
            archives = [Path(f"{p}.az") for p in texts]
            if style == "one run":
                pack = [[ALPHAZIP, "pack", "-q", *map(str, texts)]]
                unpack = [[ALPHAZIP, "unpack", "-q", "-f", *map(str, archives)]]
            else:
                pack = [[ALPHAZIP, "pack", "-q", str(p)] for p in texts]
                unpack = [[ALPHAZIP, "unpack", "-q", "-f", str(a)] for a in archives]
            result[f"pack, {style}"] = round(timed(pack), 1)
            result[f"archive bytes, {style}"] = sum(a.stat().st_size for a in archives)
            result[f"unpack, {style}"] = round(timed(unpack), 1)
            result[f"identical, {style}"] = all(p.read_bytes() == (originals / p.name).read_bytes() for p in texts)
            for direction in ("pack", "unpack"):
                result[f"{direction} per file, {style}"] = round(result[f"{direction}, {style}"] / len(texts), 2)
            print(json.dumps(result), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
