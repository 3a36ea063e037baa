"""alphazip bench: the sizes it reports are the real archives', and every failure is shown."""

import csv
import dataclasses
import json

import numpy as np
import pytest
from conftest import TINY
from typer.testing import CliRunner

from alphazip import Compressor
from alphazip.backends.zstd import ZstdBackend
from alphazip.bench import QUICK_BYTES, Plan, failures, order0_bytes, run, totals
from alphazip.cli import app
from alphazip.schedule import decode_chunks

PROSE = b"It was the best of times, it was the worst of times, it was the age of wisdom.\r\n" * 6
BINARY = bytes(range(256)) * 2
PLAN = Plan(backends=("brotli", "zstd", "huffman"), models=(TINY,), contexts=(8, 32), top_ks=(4, 65535), batch=2,
            dtype="float32")


@pytest.fixture
def files(tmp_path, tiny):
    (tmp_path / "prose.txt").write_bytes(PROSE)
    (tmp_path / "table.bin").write_bytes(BINARY)
    return [tmp_path / "prose.txt", tmp_path / "table.bin"]


def alphazip_rows(rows, file):
    return [r for r in rows if r.file == file and r.kind == "alphazip"]


def test_every_setting_is_measured_on_the_archive_pack_writes(files):
    rows = run(files, PLAN)
    text = alphazip_rows(rows, "prose.txt")
    assert len(text) == 3 * 2 * 2 and not failures(rows)
    for row in text:
        settings = PLAN.settings(row.coder.removeprefix("alphazip "), TINY, row.context, row.top_k)
        assert row.size == len(Compressor(settings).compress(PROSE)), row.setting
        assert row.tokens > 0 and row.pack_seconds > 0 and row.unpack_seconds > 0
    binary = alphazip_rows(rows, "table.bin")
    assert [r.mode for r in binary] == ["raw"] * 3 and all(r.context is None for r in binary)
    assert {r.coder for r in rows if r.kind == "classic"} == {"gzip -9", "bzip2 -9", "xz -9e", "zstd -19", "brotli -11"}


def test_limits_sit_below_the_archives_they_explain(files):
    rows = run(files[:1], dataclasses.replace(PLAN, mode="model"))  # the tiny model loses to raw in auto mode
    for context in PLAN.contexts:
        ideal = next(r for r in rows if r.coder == "ideal" and r.context == context)
        coded = [r for r in alphazip_rows(rows, "prose.txt") if r.context == context and r.mode == "model"]
        # Each archive's overhead is measured against the ideal of its own chunks. (It need not
        # be positive: brotli on the escaped ids of repeated text can beat a random model's ideal.)
        assert coded and all(ideal.size > 0 and r.ideal_size == pytest.approx(ideal.size) for r in coded)
    entropy = [r for r in rows if r.coder == "rank entropy"]
    assert len(entropy) == len(PLAN.contexts) * len(PLAN.top_ks) and all(r.size > 0 for r in entropy)


def test_a_backend_that_decodes_wrongly_is_reported_failed(files, monkeypatch):
    original = ZstdBackend.decode

    def broken(self, payload, alphabet):
        symbols = original(self, payload, alphabet)
        if len(symbols):
            symbols[-1] = (symbols[-1] + 1) % alphabet
        return symbols

    monkeypatch.setattr(ZstdBackend, "decode", broken)
    for mode in ("model", "auto"):  # auto stores the tiny model's archives raw
        rows = run(files[:1], dataclasses.replace(PLAN, mode=mode))
        failed = failures(rows)
        assert len(failed) == 4 and {r.coder for r in failed} == {"alphazip zstd"}
        assert all(r.reason for r in failed)  # the reason is shown, whichever check caught it
    assert all(r.status == "OK" for r in alphazip_rows(rows, "prose.txt") if r.coder != "alphazip zstd")


def test_a_model_decoding_pass_that_goes_wrong_fails_every_model_setting(files, monkeypatch):
    import alphazip.bench

    def off_by_one(*args, **kwargs):
        chunks = decode_chunks(*args, **kwargs)
        chunks[-1][-1] = (chunks[-1][-1] + 1) % 256
        return chunks

    monkeypatch.setattr(alphazip.bench, "decode_chunks", off_by_one)
    rows = run(files[:1], dataclasses.replace(PLAN, mode="model"))
    coded = alphazip_rows(rows, "prose.txt")
    assert len(coded) == 12 and all(r.status == "FAILED" and "bytes differ" in r.reason for r in coded)


def test_totals_count_binary_files_raw_archive_under_every_setting(files):
    rows = run(files, PLAN)
    for total in (t for t in totals(rows) if t.kind == "alphazip"):
        parts = [r for r in alphazip_rows(rows, "prose.txt") if (r.coder, r.context, r.top_k) ==
                 (total.coder, total.context, total.top_k)]
        raw = next(r for r in alphazip_rows(rows, "table.bin") if r.coder == total.coder)
        assert total.size == parts[0].size + raw.size and total.original == len(PROSE) + len(BINARY)


def test_order0_entropy():
    assert order0_bytes(np.array([0, 0, 1, 1])) == pytest.approx(0.5)
    assert order0_bytes(np.array([7, 7, 7])) == 0 and order0_bytes(np.array([], np.int64)) == 0


def test_cli_prints_the_table_and_writes_csv_json_and_plots(files, tmp_path):
    out = tmp_path / "results"
    result = CliRunner().invoke(app, ["bench", *map(str, files), "--model", TINY, "--context", "8,32", "--batch", "2",
                                      "--dtype", "float32", "--backends", "brotli,gzip", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert "| alphazip brotli · ctx 8 · k 65535 |" in result.stdout and "| brotli -11 |" in result.stdout
    assert "### total" in result.stdout
    records = json.loads((out / "results.json").read_text())["rows"]
    with open(out / "results.csv") as handle:
        assert len(list(csv.DictReader(handle))) == len(records)
    assert {r["status"] for r in records} == {"OK"}
    for plot in ("bits_per_byte.png", "size_vs_speed.png"):
        assert (out / plot).read_bytes()[:4] == b"\x89PNG"


def test_cli_exits_non_zero_and_says_failed(files, monkeypatch):
    monkeypatch.setattr(ZstdBackend, "decode", lambda self, payload, alphabet: np.zeros(1, np.int64))
    result = CliRunner().invoke(app, ["bench", str(files[0]), "--model", TINY, "--context", "16", "--batch", "2",
                                      "--dtype", "float32", "--backends", "brotli,zstd", "-q"])
    assert result.exit_code == 1
    assert "**FAILED**" in result.stdout and "FAILED their check" in result.stderr


@pytest.mark.parametrize("args", [["--context", "many"], ["--top-k", "0"], ["--backends", "lzip"]])
def test_cli_bad_settings_are_usage_errors(files, args):
    result = CliRunner().invoke(app, ["bench", str(files[0]), "--model", TINY, "-q", *args])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1


def test_cli_missing_file_fails_before_benching(tmp_path):
    result = CliRunner().invoke(app, ["bench", str(tmp_path / "absent.txt"), "--model", TINY, "-q"])
    assert result.exit_code == 1 and "no such file" in result.stderr


def test_files_sharing_a_name_are_both_benched(tmp_path, tiny):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "notes.txt").write_bytes(PROSE[: 100 if folder == "a" else 200])
    plan = dataclasses.replace(PLAN, backends=("gzip",), contexts=(16,), top_ks=(65535,))
    rows = run([tmp_path / "a" / "notes.txt", tmp_path / "b" / "notes.txt"], plan)
    assert sorted({(r.file, r.original) for r in rows}) == [
        (str(tmp_path / "a" / "notes.txt"), 100), (str(tmp_path / "b" / "notes.txt"), 200)]


def test_quick_benches_only_the_first_bytes(tmp_path, tiny):
    path = tmp_path / "long.txt"
    path.write_bytes(PROSE * 20)
    plan = dataclasses.replace(PLAN, backends=("gzip",), contexts=(16,), top_ks=(65535,), quick=True)
    assert {r.original for r in run([path], plan)} == {QUICK_BYTES}


def test_cli_refuses_standard_input(tiny):
    result = CliRunner().invoke(app, ["bench", "-", "--model", TINY, "-q"])
    assert result.exit_code == 1 and "standard input" in result.stderr


def test_saved_results_render_back_to_the_same_table(files, tmp_path):
    from alphazip import bench_output

    rows = run(files, PLAN)
    bench_output.save(rows, tmp_path / "out", {"commit": "test"})
    loaded, about = bench_output.load(tmp_path / "out" / "results.json")
    assert about == {"commit": "test"} and bench_output.markdown(loaded) == bench_output.markdown(rows)
    raw = [r for r in loaded if r.mode == "raw"]
    assert raw and all(r.tokens_per_second("unpack") is None for r in raw)  # a raw unpack runs no model
