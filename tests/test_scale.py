"""Packing and unpacking on a Dask cluster: the archive a single process makes, byte for byte,
whatever the number of workers, a cluster started elsewhere, a worker killed on the way, or
workers acting as CPUs of other instruction sets.

Workers are other processes, which cannot see the tests' model cache: the tiny model goes to
them as its committed folder (``--model tests/data/tiny-model``), loaded once per worker.
"""

import dataclasses
import io
import logging
import os
import signal

import pytest

distributed = pytest.importorskip("distributed")

from conftest import TINY
from typer.testing import CliRunner

from alphazip import AlphazipError, Compressor, api, report, scale
from alphazip.cli import app

TEXT = b"".join(b"line %d: the quick brown fox, \xc3\xa9t\xc3\xa9\n" % n for n in range(300))  # 3 frames of 4 KiB
SETTINGS = api.Settings(model=TINY, mode="model", context=16, batch=3, frame_bytes=api.MIN_FRAME_BYTES)
PACK = ["--model", TINY, "--mode", "model", "--context", "16", "--batch", "3", "--frame-size", "4096", "-q"]


@pytest.fixture(scope="module")
def expected(tiny):
    """The archive one process makes, locally."""
    return Compressor(SETTINGS).compress(TEXT)


@pytest.fixture(scope="module")
def local_cluster():
    """A LocalCluster of two workers started here, as a user would start one beside the run."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0",
                                  silence_logs=logging.CRITICAL) as cluster:
        yield cluster


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_workers_and_a_running_cluster_write_the_same_archive(tmp_path, expected, local_cluster):
    source = tmp_path / "text"
    source.write_bytes(TEXT)
    targets = {"one": ["--workers", "1"], "two": ["--workers", "2"],
               "scheduler": ["--scheduler", local_cluster.scheduler_address]}
    for name, option in targets.items():
        result = run("pack", source, "-o", tmp_path / f"{name}.az", *PACK, *option)
        assert result.exit_code == 0, result.output
        assert (tmp_path / f"{name}.az").read_bytes() == expected, name
    assert report.describe(expected)["frames"] == 3
    result = run("unpack", tmp_path / "two.az", "-o", tmp_path / "two.out", "--model", TINY, "-q", *targets["scheduler"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "two.out").read_bytes() == TEXT


def test_an_empty_input_and_a_raw_one_pack_as_locally(local_cluster, tiny):
    with distributed.Client(local_cluster) as client:
        for data, mode in [(b"", "model"), (bytes(range(256)) * 40, "auto"), (TEXT[:5000], "auto")]:
            settings = dataclasses.replace(SETTINGS, mode=mode)
            blob = _pack(client, settings, data)
            assert blob == Compressor(settings).compress(data)
            assert _unpack(client, blob) == data


def test_a_worker_killed_mid_run_changes_nothing(expected, tiny):
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0",
                                  silence_logs=logging.CRITICAL) as cluster, distributed.Client(cluster) as client:
        pids = client.run(os.getpid)
        killed = []

        def kill_a_busy_worker(done, total):
            if not killed:  # once the first frame is in: the other workers are coding theirs
                busy = [address for address, keys in client.processing().items() if keys] or list(pids)
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.append(busy[0])

        assert _pack(client, SETTINGS, TEXT, kill_a_busy_worker) == expected
        assert killed
        client.wait_for_workers(2, timeout=60)
        assert pids[killed[0]] not in client.run(os.getpid).values()  # the nanny started a new one
        assert _unpack(client, expected) == TEXT


def test_workers_of_other_instruction_sets_write_the_same_archive(tmp_path, expected):
    with scale.mixed_isa_cluster(tmp_path, ["native", "default"]) as client:
        capabilities = client.run(lambda: __import__("torch").backends.cpu.get_cpu_capability())
        assert len(set(capabilities.values())) == 2, capabilities  # e.g. AVX512 and DEFAULT
        assert _pack(client, SETTINGS, TEXT) == expected
        assert all(client.run(lambda: len(scale._PLANS)).values())  # both coded frames
        assert _unpack(client, expected) == TEXT


def test_a_float_engine_is_refused(local_cluster, tiny):
    settings = dataclasses.replace(SETTINGS, engine="alphazip-llama-2")
    with distributed.Client(local_cluster) as client, pytest.raises(AlphazipError, match="exact engine only"):
        _pack(client, settings, TEXT)


def test_a_worker_without_the_model_fails_in_one_line(tmp_path, expected):
    archive = tmp_path / "a.az"
    archive.write_bytes(expected)
    result = run("unpack", archive, "--workers", "1", "-q")  # fresh workers: no model loaded, none of its kind found
    assert result.exit_code == 1 and result.stderr.startswith("alphazip: archive needs a local model")
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("options", [["--workers", "0"], ["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"]])
def test_impossible_cluster_options_are_usage_errors(tmp_path, options):
    source = tmp_path / "text"
    source.write_bytes(b"hello")
    result = run("pack", source, "--mode", "raw", *options)
    assert result.exit_code == 2 and result.stderr.startswith("alphazip: --workers")


def _pack(client, settings, data, progress=None) -> bytes:
    sink = io.BytesIO()
    scale.ClusterCompressor(client, settings).compress_stream(io.BytesIO(data), sink, progress, len(data))
    return sink.getvalue()


def _unpack(client, blob) -> bytes:
    sink = io.BytesIO()
    scale.ClusterDecompressor(client, TINY).decompress_stream(io.BytesIO(blob), sink)
    return sink.getvalue()
