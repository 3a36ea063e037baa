"""Peak RSS of `alphazip pack` (and unpack) by input size, on inputs built from the corpus texts.

    python scripts/measure_memory.py --sizes 0.0625,0.25                          # default model
    python scripts/measure_memory.py --sizes 1,10,100 --model tests/data/tiny-model
    python scripts/measure_memory.py --sizes 0.0625,0.25,0.5 --frame-size 65536   # several frames
    python scripts/measure_memory.py --sizes 1,10,100 --model tests/data/tiny-model --mode model

Each run is a fresh process, measured by GNU time (%M); sizes are in MB (10^6 bytes). The input
cycles through the corpus text files until it is long enough. With ``--unpack`` each archive is
also unpacked and compared byte for byte. With ``--trace FILE`` each pack is also sampled every
``--every`` seconds (its RSS and peak RSS from /proc, and the archive bytes written so far) into a
CSV, so RSS can be seen staying flat while the input streams through, not only its final peak.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"
TEXTS = ("alice29.txt", "asyoulik.txt", "html", "urls.10K")


def build_input(size: int, path: Path) -> None:
    """``size`` bytes of the corpus texts, one after another, cycled as often as needed."""
    texts = [(CORPUS / name).read_bytes() for name in TEXTS]
    with path.open("wb") as out:
        written, index = 0, 0
        while written < size:
            piece = texts[index % len(texts)][: size - written]
            out.write(piece)
            written += len(piece)
            index += 1


def proc_kib(pid: int, field: str) -> int:
    """One ``Vm*`` field of /proc/PID/status in KiB (0 once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def sample(timer: subprocess.Popen, output: Path, every: float, trace, label: str) -> None:
    """Write CSV rows (label, seconds, RSS MiB, peak RSS MiB, archive bytes so far) until ``timer`` ends.

    The process sampled is GNU time's child. The archive sits in a temporary file beside
    ``output`` until the end, so that file's growth shows how far through the input the run is.
    """
    start = time.monotonic()
    children = Path(f"/proc/{timer.pid}/task/{timer.pid}/children")
    while timer.poll() is None:
        pids = children.read_text().split() if children.exists() else []
        if pids:
            rss, peak = proc_kib(int(pids[0]), "VmRSS"), proc_kib(int(pids[0]), "VmHWM")
            written = sum(p.stat().st_size for p in output.parent.glob(f".{output.name}.*.tmp"))
            if rss:
                trace.write(f"{label},{time.monotonic() - start:.0f},{rss / 1024:.0f},{peak / 1024:.0f},{written}\n")
                trace.flush()
        time.sleep(every)


def measured(command: list[str], output: Path, every: float = 10.0, trace=None, label: str = "") -> tuple[float, float]:
    """(peak RSS MiB, wall seconds) of one command run in its own process, sampled into ``trace`` if given."""
    timer = subprocess.Popen(["/usr/bin/time", "-f", "%M %e", *command], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if trace is not None:
        sample(timer, output, every, trace, label)
    stderr = timer.communicate()[1]
    if timer.returncode != 0:
        sys.exit(f"{' '.join(command)} failed: {stderr.strip().splitlines()[-2:]}")
    kib, seconds = stderr.strip().splitlines()[-1].split()
    return int(kib) / 1024, float(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0.0625,0.25", help="input sizes in MB, comma-separated")
    parser.add_argument("--model", default=None, help="model to pack with (default: the default model)")
    parser.add_argument("--frame-size", type=int, default=None, help="pack with this --frame-size")
    parser.add_argument("--mode", default="auto", help="pack with this --mode (model: every frame through the model)")
    parser.add_argument("--unpack", action="store_true", help="also unpack each archive and compare")
    parser.add_argument("--trace", type=Path, default=None, help="CSV of RSS over time while packing")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between --trace samples")
    args = parser.parse_args()
    model = ["--model", args.model] if args.model else []
    frames = ["--frame-size", str(args.frame_size)] if args.frame_size else []
    frames += ["--mode", args.mode]
    print("| input MB | pack peak RSS MiB | pack s | archive bytes | unpack peak RSS MiB | unpack s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    trace = args.trace.open("w") if args.trace else None
    if trace:
        trace.write("input_mb,seconds,rss_mib,peak_rss_mib,archive_bytes\n")
    with tempfile.TemporaryDirectory() as folder:
        for size in (float(s) for s in args.sizes.split(",")):
            source, archive, restored = (Path(folder) / name for name in ("input", "input.az", "restored"))
            build_input(int(size * 1e6), source)
            pack = ["alphazip", "pack", str(source), "-o", str(archive), "-f", "-q", *model, *frames]
            pack_rss, pack_s = measured(pack, archive, args.every, trace, f"{size:g}")
            unpack = "| - | -"
            if args.unpack:
                unpack_rss, unpack_s = measured(["alphazip", "unpack", str(archive), "-o", str(restored), "-f", "-q", *model], restored)
                if restored.read_bytes() != source.read_bytes():
                    sys.exit(f"{size} MB: unpacked bytes differ")
                unpack = f"| {unpack_rss:,.0f} | {unpack_s:,.0f}"
            print(f"| {size:g} | {pack_rss:,.0f} | {pack_s:,.0f} | {archive.stat().st_size:,} {unpack} |", flush=True)
    if trace:
        trace.close()


if __name__ == "__main__":
    main()
