"""Write the golden archives that tests/test_golden.py must keep decoding.

Run only when the format version changes on purpose, naming the archives to (re)write
(--tiny, --real, --real-engine); commit the result.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from alphazip import Compressor  # noqa: E402
from alphazip.backends import backend_names  # noqa: E402

GOLDEN = ROOT / "tests" / "data" / "golden"
TINY = str(ROOT / "tests" / "data" / "tiny-model")
ORIGINAL = "Golden bytes: text, CRLF\r\n, UTF-8 \u00e9\u00e8, invalid \xff\xfe, NUL \x00.\n".encode("utf-8", "surrogatepass")


def main() -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    (GOLDEN / "original.bin").write_bytes(ORIGINAL + b"\xff\xc0 raw tail")
    data = (GOLDEN / "original.bin").read_bytes()
    for backend in backend_names() if "--tiny" in sys.argv else ():
        for mode in ("model", "raw"):
            compressor = Compressor(backend=backend, model="tests/data/tiny-model", context=16, batch=3, mode=mode)
            (GOLDEN / f"tiny-{backend}-{mode}.az").write_bytes(compressor.compress(data))
    excerpt = (ROOT / "data" / "alice-excerpt.txt").read_bytes()[:600]
    if "--real" in sys.argv:  # the transformers lockstep path (packed on an AVX-512 CPU, bf16)
        real = Compressor(backend="brotli", context=64, batch=4, mode="model", dtype="bfloat16",
                          engine="transformers-static-step").compress(excerpt)
        (GOLDEN / "smollm2-brotli.az").write_bytes(real)
    if "--real-engine" in sys.argv:  # our invariant engine, default settings but a short context
        real = Compressor(backend="brotli", context=64, mode="model").compress(excerpt)
        (GOLDEN / "smollm2-engine-brotli.az").write_bytes(real)
    print(sorted(p.name for p in GOLDEN.iterdir()))


if __name__ == "__main__":
    main()
