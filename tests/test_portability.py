"""Archives of the exact engine decode on other CPUs: packed in one process acting as one CPU kind
(instruction-set settings of torch, oneDNN and MKL), unpacked in others acting as other kinds,
with other batches, thread counts and integer-product paths. Subprocesses, since the settings
must be in place before torch is imported."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY

from alphazip import container
from alphazip.model import native
from alphazip.model.exact import EXACT_ENGINE_NAME
from alphazip.model.learning import LEARNING_ENGINE_NAME
from alphazip.model.isa import FORCE_FLOAT_PRODUCTS, FORCE_KERNEL_PRODUCTS, ISA_SETTINGS

TEXT = (Path(__file__).parent.parent / "data" / "alice-excerpt.txt").read_bytes()[:2500]


def alphazip(args: list[str], setting: str, extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **ISA_SETTINGS[setting], **(extra or {})}
    command = [sys.executable, "-c", "from alphazip.cli import main; main()", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(not native.available(), reason="the compiled kernels were not built")
@pytest.mark.parametrize(("setting", "expected"), [("avx2", "AVX2"), ("default", "x86-64")])
def test_the_compiled_kernels_follow_the_setting(setting, expected):
    """So that the cases below run each build of the kernels, not only this CPU's best."""
    env = {**os.environ, **ISA_SETTINGS[setting]}
    command = [sys.executable, "-c", "from alphazip.model import native; print(native.variant())"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == expected


ENGINES = {"brotli": EXACT_ENGINE_NAME, "ac": EXACT_ENGINE_NAME, "learning": LEARNING_ENGINE_NAME}


@pytest.fixture(scope="module", params=list(ENGINES))
def archives(request, tmp_path_factory):
    """The excerpt packed with the tiny model as this CPU, and as a plain x86-64 with another batch,
    by the rank coder, by the arithmetic coder (whose frequencies are computed from the logits),
    and by the arithmetic coder on a model that learns as it codes (``learning``: its weights
    change with every 64 positions, so any bit that differed would grow)."""
    folder = tmp_path_factory.mktemp("portability")
    source = folder / "excerpt.txt"
    source.write_bytes(TEXT)
    packed = {"engine": ENGINES[request.param]}
    backend = "brotli" if request.param == "brotli" else "ac"
    for name, setting, extra in (("native", "native", []), ("default", "default", ["--batch", "5", "-T", "1"])):
        target = folder / f"{name}.az"
        done = alphazip(["pack", str(source), "-o", str(target), "-m", TINY, "--mode", "model", "-q",
                          "--backend", backend, "--engine", packed["engine"], *extra], setting)
        assert done.returncode == 0, done.stderr
        packed[name] = target
    return packed


def test_packing_settings_give_the_same_archive(archives):
    native, other = (archives[name].read_bytes() for name in ("native", "default"))
    assert container.read(native).header.engine == archives["engine"]
    assert container.read(native).header.probe == container.read(other).header.probe
    assert container.read(native).frames == container.read(other).frames


@pytest.mark.parametrize(("packed", "setting", "options", "extra"), [
    ("native", "avx2", ["--batch", "1", "-T", "2"], {}),
    ("native", "default", ["--batch", "7", "-T", "1"], {}),
    ("default", "native", ["--batch", "64", "-T", "8"], {}),
    ("default", "avx2", ["--batch", "7", "-T", "2"], FORCE_FLOAT_PRODUCTS),
    ("default", "native", ["--batch", "2", "-T", "2"], FORCE_KERNEL_PRODUCTS),  # the kernel's AVX-512 tiles here
    ("native", "native", ["--batch", "3"], {**FORCE_FLOAT_PRODUCTS, "ALPHAZIP_NATIVE": "0"}),  # all in torch
])
def test_unpacks_as_another_cpu(archives, tmp_path, packed, setting, options, extra):
    target = tmp_path / "out.txt"
    done = alphazip(["unpack", str(archives[packed]), "-o", str(target), "-m", TINY, "-q", *options], setting, extra)
    assert done.returncode == 0, done.stderr
    assert target.read_bytes() == TEXT


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["avx2", "default"])
@pytest.mark.parametrize("name", ["v2/exact-smollm2-brotli.az", "v3/exact-smollm2-ac-bias.az",
                                  "v3/exact-smollm2-ac-share.az"])
def test_default_model_golden_archive_unpacks_as_another_cpu(tmp_path, setting, name):
    golden = Path(__file__).parent / "data" / "golden" / name
    target = tmp_path / "out.txt"
    done = alphazip(["unpack", str(golden), "-o", str(target), "-q", "--batch", "3", "-T", "1"], setting)
    assert done.returncode == 0, done.stderr
    assert target.read_bytes() == TEXT[:600]
