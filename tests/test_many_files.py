"""Several files per run, as gzip does: one model load, a failure named and the rest done, -r."""

import pytest
from conftest import TINY
from typer.testing import CliRunner

from alphazip import api
from alphazip.cli import app
from alphazip.model import LanguageModel

MODEL = ["--model", TINY, "--context", "16", "--batch", "2"]
TEXTS = {"a.txt": b"It was the best of times, it was the worst of times.",
         "b.txt": b"It was the age of wisdom, it was the age of foolishness.\n",
         "c.txt": b"\x00\xff a binary stretch \x01\x02"}


@pytest.fixture
def runner(tiny):
    return CliRunner()


def run(runner, *args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.fixture
def files(tmp_path):
    paths = []
    for name, data in TEXTS.items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    return paths


def archives(paths):
    return [path.with_name(path.name + ".az") for path in paths]


def error_lines(result) -> list[str]:
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith("alphazip: ") for line in lines) and "Traceback" not in result.output, result.output
    return lines


@pytest.fixture
def loads(monkeypatch):
    """Counts LanguageModel.load calls; call it to empty the model cache and start counting afresh."""
    calls = []
    original = LanguageModel.load.__func__

    def counting(cls, spec, *args, **kwargs):
        calls.append(spec)
        return original(cls, spec, *args, **kwargs)

    monkeypatch.setattr(LanguageModel, "load", classmethod(counting))

    def fresh():
        monkeypatch.setattr(api.MODELS, "_models", {})  # restored after the test
        calls.clear()
        return calls
    return fresh


def test_several_files_round_trip_with_one_model_load(runner, files, loads):
    calls = loads()
    packed = run(runner, "pack", *files, "-q", "-v", "--verify", "--mode", "model", *MODEL)
    assert packed.exit_code == 0, packed.output
    assert calls == [TINY]  # one load for three files and their three verifications
    reports = [line.split(":")[0] for line in packed.stderr.splitlines() if "bits/byte" in line]
    assert reports == [*map(str, files), "3 files"]  # -v: a line per file and a total
    for path in files:
        path.unlink()
    calls = loads()
    unpacked = run(runner, "unpack", *archives(files), "-q", "--model", TINY)
    assert unpacked.exit_code == 0, unpacked.output
    assert calls == [TINY]
    assert {path.name: path.read_bytes() for path in files} == TEXTS
    tested = run(runner, "test", *archives(files), "-q", "--model", TINY)
    assert tested.exit_code == 0 and calls == [TINY]


def test_a_failing_file_is_named_and_the_rest_are_done(runner, files, tmp_path):
    missing = tmp_path / "missing.txt"
    result = run(runner, "pack", files[0], missing, files[1], "-q", "--mode", "raw")
    assert result.exit_code == 1
    assert error_lines(result) == [f"alphazip: {missing}: no such file"]
    assert all(path.exists() for path in archives(files[:2]))

    bad = tmp_path / "bad.az"
    bad.write_bytes(b"GIF89a not ours")
    files[0].unlink()
    result = run(runner, "unpack", bad, archives(files)[0], files[2], "-q")
    assert result.exit_code == 2  # files[2] has no .az suffix: a usage error, the worst status met
    first, second = error_lines(result)
    assert first.startswith(f"alphazip: {bad}: not an alphazip archive")
    assert second == f"alphazip: {files[2]}: unknown suffix, expected .az (use -o to name the output)"
    assert files[0].read_bytes() == TEXTS["a.txt"]
    assert not (tmp_path / "bad").exists()

    result = run(runner, "test", archives(files)[0], bad, archives(files)[1])
    assert result.exit_code == 1
    said = [line for line in result.stderr.splitlines() if line]
    assert said[0] == f"{archives(files)[0]}: OK" and said[2] == f"{archives(files)[1]}: OK"
    assert said[1].startswith(f"alphazip: {bad}: not an alphazip archive") and len(said) == 3


def test_an_existing_output_is_refused_for_that_file_only(runner, files):
    outputs = archives(files)
    outputs[1].write_bytes(b"precious")
    result = run(runner, "pack", *files, "-q", "--mode", "raw")
    assert result.exit_code == 1
    assert error_lines(result) == [f"alphazip: {files[1]}: {outputs[1]}: already exists (use -f to overwrite)"]
    assert outputs[0].exists() and outputs[2].exists() and outputs[1].read_bytes() == b"precious"
    assert run(runner, "pack", *files, "-q", "-f", "--mode", "raw").exit_code == 0
    assert outputs[1].read_bytes() != b"precious"


def test_recursive_skips_archives_and_symbolic_links(runner, tmp_path):
    top = tmp_path / "top"
    (top / "sub" / "deeper").mkdir(parents=True)
    tree = {"a.txt": b"top file", "sub/b.txt": b"nested file", "sub/deeper/c": b"deeper still"}
    for name, data in tree.items():
        (top / name).write_bytes(data)
    (top / "old.az").write_bytes(api.compress(b"packed before", mode="raw"))
    (top / "link.txt").symlink_to(top / "a.txt")
    (top / "linked").symlink_to(top / "sub", target_is_directory=True)
    before = sorted(p.relative_to(top).as_posix() for p in top.rglob("*"))

    assert run(runner, "pack", "-r", top, "-q", "--mode", "raw").exit_code == 0
    made = sorted(p.relative_to(top).as_posix() for p in top.rglob("*"))
    assert made == sorted(before + [name + ".az" for name in tree])  # no old.az.az, link.txt.az, linked/...

    for name in tree:
        (top / name).unlink()
    tested = run(runner, "test", "-r", top)
    assert tested.exit_code == 0 and tested.stderr.count(": OK") == 4  # three new archives and old.az
    assert run(runner, "unpack", "-r", top, "-q").exit_code == 0
    assert {name: (top / name).read_bytes() for name in tree} == tree
    assert (top / "old").read_bytes() == b"packed before"


@pytest.mark.parametrize("args, message", [
    (["-o", "out.az"], "-o names one output; with several inputs each output goes beside its input"),
    (["-c"], "-c takes one input: archives do not concatenate, so several would not unpack"),
])
def test_one_output_for_several_inputs_is_a_usage_error(runner, files, tmp_path, args, message):
    before = sorted(tmp_path.iterdir())
    for command in (["pack", *files[:2], "--mode", "raw"], ["unpack", *archives(files[:2])],
                    ["pack", "-r", tmp_path, "--mode", "raw"]):  # a folder is several inputs too
        result = run(runner, *command, *args, "-q")
        assert result.exit_code == 2 and error_lines(result) == [f"alphazip: {message}"]
    assert sorted(tmp_path.iterdir()) == before


def test_standard_input_must_be_alone(runner, files, tmp_path):
    for command in ("pack", "unpack", "test"):
        result = run(runner, command, files[0], "-", "-q")
        assert result.exit_code == 2
        assert error_lines(result) == ["alphazip: - (standard input) must be the only input"]
    assert not archives(files)[0].exists()


def test_interrupt_stops_the_run_and_keeps_finished_outputs(runner, files, tmp_path, monkeypatch):
    real, calls = api.Compressor.compress_stream, []

    def interrupted_second(self, source, sink, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            sink.write(b"partial")
            raise KeyboardInterrupt
        return real(self, source, sink, *args, **kwargs)

    monkeypatch.setattr(api.Compressor, "compress_stream", interrupted_second)
    result = run(runner, "pack", *files, "-q", "--mode", "raw")
    assert result.exit_code == 130 and error_lines(result) == ["alphazip: interrupted"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "a.txt.az", "b.txt", "c.txt"]
