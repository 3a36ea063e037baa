"""Write the golden archives that tests/test_golden.py must keep decoding.

Run only when the format version changes on purpose, or when a new engine or coder needs its
archives, naming the archives to write (--tiny, --real, --real-engine, --exact, --ac-bias,
--ac-share, --ac-recall, --learning); commit the result. An archive already in the folder is never rewritten: delete it
first on purpose.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from alphazip import Compressor, container  # noqa: E402
from alphazip.backends import backend_names  # noqa: E402
from alphazip.coding import coder_names  # noqa: E402
from alphazip.model.exact import EXACT_ENGINE_NAME  # noqa: E402
from alphazip.model.learning import LEARNING_ENGINES  # noqa: E402

# One folder per format version: older folders stay as they were written, and must keep decoding.
GOLDEN = ROOT / "tests" / "data" / "golden" / f"v{container.FORMAT_VERSION}"
TINY = str(ROOT / "tests" / "data" / "tiny-model")
ORIGINAL = "Golden bytes: text, CRLF\r\n, UTF-8 \u00e9\u00e8, invalid \xff\xfe, NUL \x00.\n".encode("utf-8", "surrogatepass")
FRAME_BYTES = 4096  # the smallest frame size, so that a few kilobytes make several frames


def frame_parts() -> tuple[bytes, bytes, bytes]:
    """Text, a binary stretch, text again."""
    text = (ROOT / "data" / "alice-excerpt.txt").read_bytes()[:3000]
    return text * 2, bytes(range(256)) * 20, text


def mixed_archive(engine: str = "auto") -> bytes:
    """Model frames, a raw frame, a model frame: what auto mode writes for text with a binary
    stretch inside under a model that beats the back-end (the tiny test model never does)."""
    text, binary, more_text = frame_parts()
    packer = Compressor(backend="zstd", model=TINY, context=16, batch=3, mode="model", frame_bytes=FRAME_BYTES,
                        engine=engine)
    archive = packer.pack(text)
    archive.frames += [packer.raw_frame(binary), *packer.pack(more_text).frames]  # each with its CRC-32
    archive.original_size, archive.original_sha256 = container.original_identity(text + binary + more_text)
    return container.write(archive)


def write_once(path: Path, blob: bytes) -> None:
    if path.exists():
        print(f"kept {path.name} (golden archives are written once)")
        return
    path.write_bytes(blob)


def main() -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    (GOLDEN / "original.bin").write_bytes(ORIGINAL + b"\xff\xc0 raw tail")
    (GOLDEN / "frames.bin").write_bytes(b"".join(frame_parts()))
    data = (GOLDEN / "original.bin").read_bytes()
    if "--tiny" in sys.argv:
        for backend in backend_names():
            for mode in ("model", "raw"):
                compressor = Compressor(backend=backend, model=TINY, context=16, batch=3, mode=mode)
                (GOLDEN / f"tiny-{backend}-{mode}.az").write_bytes(compressor.compress(data))
        (GOLDEN / "frames-tiny-zstd-mixed.az").write_bytes(mixed_archive())
    excerpt = (ROOT / "data" / "alice-excerpt.txt").read_bytes()[:600]
    if "--real" in sys.argv:  # the transformers lockstep path (v1's was packed on an AVX-512 CPU, bf16)
        real = Compressor(backend="brotli", context=64, batch=4, mode="model", dtype="bfloat16",
                          engine="transformers-static-step").compress(excerpt)
        (GOLDEN / "smollm2-brotli.az").write_bytes(real)
    if "--real-engine" in sys.argv:  # our invariant engine, default settings but a short context
        real = Compressor(backend="brotli", context=64, mode="model").compress(excerpt)
        (GOLDEN / "smollm2-engine-brotli.az").write_bytes(real)
    if "--exact" in sys.argv:  # the exact engine: these must decode on every machine
        for backend in coder_names():
            compressor = Compressor(backend=backend, model=TINY, context=16, batch=3, mode="model", engine=EXACT_ENGINE_NAME)
            (GOLDEN / f"exact-tiny-{backend}-model.az").write_bytes(compressor.compress(data))
        (GOLDEN / "exact-tiny-zstd-mixed.az").write_bytes(mixed_archive(EXACT_ENGINE_NAME))
        real = Compressor(backend="brotli", context=64, mode="model", engine=EXACT_ENGINE_NAME).compress(excerpt)
        (GOLDEN / "exact-smollm2-brotli.az").write_bytes(real)
        for backend in ("ac", "ac-plain", "rank-ac"):  # the coders added with format 3
            real = Compressor(backend=backend, context=64, mode="model", engine=EXACT_ENGINE_NAME).compress(excerpt)
            (GOLDEN / f"exact-smollm2-{backend}.az").write_bytes(real)
    if "--ac-bias" in sys.argv:  # "ac" with its log-space bias; the files named "ac" above are now "ac-1"
        compressor = Compressor(backend="ac", model=TINY, context=16, batch=3, mode="model", engine=EXACT_ENGINE_NAME)
        write_once(GOLDEN / "exact-tiny-ac-bias-model.az", compressor.compress(data))
        real = Compressor(backend="ac", context=64, mode="model", engine=EXACT_ENGINE_NAME).compress(excerpt)
        write_once(GOLDEN / "exact-smollm2-ac-bias.az", real)
    if "--ac-share" in sys.argv:  # "ac" whose chunks share their experts' history; "ac-bias" above is now "ac-2"
        compressor = Compressor(backend="ac", model=TINY, context=16, batch=3, mode="model", engine=EXACT_ENGINE_NAME)
        write_once(GOLDEN / "exact-tiny-ac-share-model.az", compressor.compress(data))
        real = Compressor(backend="ac", context=64, mode="model", engine=EXACT_ENGINE_NAME).compress(excerpt)
        write_once(GOLDEN / "exact-smollm2-ac-share.az", real)
    if "--ac-recall" in sys.argv:  # "ac" recalling the model's states; "ac-share" above is now "ac-3"
        compressor = Compressor(backend="ac", model=TINY, context=16, batch=3, mode="model", engine=EXACT_ENGINE_NAME)
        write_once(GOLDEN / "exact-tiny-ac-recall-model.az", compressor.compress(data))
        real = Compressor(backend="ac", context=64, mode="model", engine=EXACT_ENGINE_NAME).compress(excerpt)
        write_once(GOLDEN / "exact-smollm2-ac-recall.az", real)
    if "--learning" in sys.argv:  # each learning engine: chunks long enough for a few learning steps
        text = (ROOT / "data" / "alice-excerpt.txt").read_bytes()[:3000]
        (GOLDEN / "learning.bin").write_bytes(text)
        for engine in LEARNING_ENGINES:
            compressor = Compressor(backend="ac", model=TINY, context=300, mode="model", engine=engine)
            write_once(GOLDEN / f"learn-tiny-{engine.rsplit('-', 1)[1]}.az", compressor.compress(text))
    print(sorted(p.name for p in GOLDEN.iterdir()))


if __name__ == "__main__":
    main()
