"""The command line: gzip habits, one-line errors, nothing left behind on failure."""

import pytest
from conftest import TINY
from typer.testing import CliRunner

from alphazip.cli import app

TEXT = b"It was the best of times, it was the worst of times.\r\n\xff binary tail\x00"
MODEL = ["--model", TINY, "--context", "16", "--batch", "2"]


@pytest.fixture
def runner(tiny):
    return CliRunner()


def run(runner, *args, input=None):
    result = runner.invoke(app, [str(a) for a in args], input=input)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.fixture
def sample(tmp_path):
    path = tmp_path / "report.txt"
    path.write_bytes(TEXT)
    return path


@pytest.mark.parametrize("backend", ["brotli", "huffman"])
def test_pack_then_unpack(runner, sample, tmp_path, backend):
    assert run(runner, "pack", sample, "--backend", backend, "-q", *MODEL).exit_code == 0
    archive = tmp_path / "report.txt.az"
    assert archive.exists() and sample.read_bytes() == TEXT  # input kept
    restored = tmp_path / "restored.txt"
    assert run(runner, "unpack", archive, "-o", restored, "-q").exit_code == 0
    assert restored.read_bytes() == TEXT


def test_stdin_to_stdout(runner, tmp_path):
    packed = run(runner, "pack", "-", "-c", "-q", "--mode", "model", *MODEL, input=TEXT)
    assert packed.exit_code == 0
    unpacked = run(runner, "unpack", "-", "-c", "-q", input=packed.stdout_bytes)
    assert unpacked.exit_code == 0 and unpacked.stdout_bytes == TEXT


def test_unpack_default_name_strips_suffix(runner, sample, tmp_path):
    run(runner, "pack", sample, "-q", *MODEL)
    sample.unlink()
    assert run(runner, "unpack", tmp_path / "report.txt.az", "-q").exit_code == 0
    assert sample.read_bytes() == TEXT


def test_existing_output_is_refused_without_force(runner, sample, tmp_path):
    archive = tmp_path / "report.txt.az"
    archive.write_bytes(b"precious")
    result = run(runner, "pack", sample, "-q", *MODEL)
    assert result.exit_code == 1 and "already exists" in result.stderr
    assert archive.read_bytes() == b"precious"
    assert run(runner, "pack", sample, "-q", "-f", *MODEL).exit_code == 0
    assert archive.read_bytes() != b"precious"


def test_test_and_info(runner, sample, tmp_path):
    run(runner, "pack", sample, "-q", "--mode", "model", *MODEL)
    archive = tmp_path / "report.txt.az"
    assert run(runner, "test", archive).exit_code == 0
    info = run(runner, "info", archive)
    assert info.exit_code == 0
    for field in ("mode", "backend", "model", "top_k", "chunks", "ratio", "original bytes"):
        assert field in info.stdout
    assert f"original bytes: {len(TEXT)}" in info.stdout


def _one_line_error(result, code, phrase):
    assert result.exit_code == code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("alphazip: ") and phrase in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_missing_file(runner, tmp_path):
    _one_line_error(run(runner, "pack", tmp_path / "nope.txt", *MODEL), 1, "no such file")


def test_corrupt_archive_leaves_no_output(runner, sample, tmp_path):
    run(runner, "pack", sample, "-q", *MODEL)
    archive = tmp_path / "report.txt.az"
    archive.write_bytes(archive.read_bytes() + b"junk")
    result = run(runner, "unpack", archive, "-o", tmp_path / "out.txt")
    _one_line_error(result, 1, "trailing junk")
    assert not (tmp_path / "out.txt").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    _one_line_error(run(runner, "test", archive), 1, "trailing junk")


def test_running_out_of_memory_is_one_line_and_leaves_nothing(runner, sample, tmp_path, monkeypatch):
    from alphazip import api

    run(runner, "pack", sample, "-q", "--mode", "model", *MODEL)

    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(api.Decompressor, "decode_frame", exhausted)
    result = run(runner, "unpack", tmp_path / "report.txt.az", "-o", tmp_path / "out.txt")
    _one_line_error(result, 1, "out of memory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.txt", "report.txt.az"]


def test_truncated_and_garbage_archives(runner, sample, tmp_path):
    run(runner, "pack", sample, "-q", *MODEL)
    archive = tmp_path / "report.txt.az"
    archive.write_bytes(archive.read_bytes()[:-10])
    _one_line_error(run(runner, "unpack", archive, "-c"), 1, "truncated")
    archive.write_bytes(b"GIF89a not ours")
    _one_line_error(run(runner, "unpack", archive, "-c"), 1, "not an alphazip archive")


def test_unknown_suffix_and_bad_flags(runner, sample):
    _one_line_error(run(runner, "unpack", sample), 2, "unknown suffix")
    _one_line_error(run(runner, "pack", sample, "--backend", "nope", *MODEL), 2, "unknown back-end")
    _one_line_error(run(runner, "pack", "-", *MODEL, input=b"x"), 2, "use -c or -o")


def test_unknown_model_is_named(runner, sample):
    _one_line_error(run(runner, "pack", sample, "--model", "no-such-model", "--mode", "model"), 1, "no-such-model")


def test_models_lists_the_default(runner):
    result = run(runner, "models")
    assert result.exit_code == 0 and "smollm2-135m (default)" in result.stdout


def test_memlimit_shrinks_or_refuses(runner, sample, tmp_path):
    assert run(runner, "pack", sample, "--mode", "model", "-q", *MODEL).exit_code == 0
    archive = tmp_path / "report.txt.az"
    assert run(runner, "test", archive, "-q", "--model", TINY, "--memlimit", "64M").exit_code == 0
    refused = run(runner, "unpack", archive, "-o", tmp_path / "out", "-q", "--model", TINY, "--memlimit", "1K")
    assert refused.exit_code == 1 and "more than the memory limit of 0 MiB" in refused.output
    assert not (tmp_path / "out").exists()
    assert run(runner, "test", archive, "--memlimit", "lots").exit_code == 2
