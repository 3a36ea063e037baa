"""Pack and unpack across many processes and machines on a Dask cluster, with the same bytes.

Frames are coded independently (each has its own chunks, streams and CRC-32s), so the client
reads the input one frame at a time, sends each to a worker, and writes the results in order as
they come back. The archive is the same bytes as a local ``pack`` makes, whatever the number of
workers or their CPUs: only the exact engine is allowed, whose logits are the same on every
CPU, and the header records nothing that depends on the machine (``compact``).

- ``cluster(workers=N)`` starts a ``distributed.LocalCluster`` of N worker processes, each with
  one task at a time and its share of the cores; ``cluster(scheduler=ADDRESS)`` joins a running
  cluster. The workers load the model themselves, once per process (``api.MODELS``): by name
  (a built-in model is fetched into the worker's cache), or as a folder with the same path on
  the worker, or from the worker's model folders by the fingerprint the header records.
- The input is never on a shared disk: each task carries its frame, each result is the coded
  frame (or the decoded bytes). At most ``AHEAD_PER_WORKER`` frames per worker are submitted and
  not yet written, so memory stays bounded and reading waits when writing falls behind.
- Tasks are pure (their result is a function of their arguments), so a worker that dies is
  simply replaced and its frames run again elsewhere by the scheduler; a frame lost with
  ``distributed.scheduler.allowed-failures`` workers in a row fails the run. Nothing is written
  to the target until the whole archive is complete and checked (``output.safe_output``).

The per-frame steps are the library's own: ``Compressor._plan`` / ``_frame`` / ``_header`` and
``container.ArchiveWriter`` when packing, ``Decompressor.decode_frame`` and the reader's checks
when unpacking, so a frame comes out the same bits wherever it is coded.
"""

import contextlib
import dataclasses
import hashlib
import itertools
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from . import api, container, layout
from .container import Frame, Header
from .errors import AlphazipError, ChecksumError
from .model import BUILTIN_MODELS

AHEAD_PER_WORKER = 2  # frames submitted and not yet written, per worker thread: one coding, one queued
WORKER_WAIT = 120  # seconds a run waits for a cluster without workers to get one


class ClusterError(AlphazipError):
    """The cluster could not be reached, or lost a frame's worker too often."""


@contextlib.contextmanager
def cluster(workers: int | None = None, scheduler: str | None = None, threads: int = 0):
    """A ``distributed.Client``: of a LocalCluster of ``workers`` processes started here (and closed
    on leaving), or of the running cluster at ``scheduler``; None when neither is asked for.

    ``threads`` is each local worker's torch thread count (0: the cores shared evenly); the
    workers of a running cluster keep their own settings.
    """
    check_options(workers, scheduler)
    if workers is None and scheduler is None:
        yield None
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ClusterError("--workers and --scheduler need Dask: pip install 'alphazip[scale]'") from None
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="30s")
        except (OSError, TimeoutError, ValueError) as exc:  # ValueError: not an address
            raise ClusterError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        with client:
            yield client
        return
    share = threads or max(1, (os.cpu_count() or 1) // workers)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.CRITICAL) as local, Client(local) as client:
        client.register_plugin(_torch_threads(share), name="alphazip-torch-threads")
        yield client


def check_options(workers: int | None, scheduler: str | None) -> None:
    """Refuse (ValueError) a cluster that cannot be: both kinds at once, or no worker."""
    if workers is not None and scheduler is not None:
        raise ValueError("--workers starts a cluster here and --scheduler joins one: give one of them")
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be at least 1, not {workers}")


def _torch_threads(count: int):
    """A worker plugin setting torch's thread count on every worker, also on one that restarts.
    (Defined here, where Dask is imported, and sent to the workers by value.)"""
    from distributed import WorkerPlugin

    class TorchThreads(WorkerPlugin):
        def setup(self, worker) -> None:
            import torch

            torch.set_num_threads(count)

    return TorchThreads()


class ClusterCompressor:
    """``api.Compressor`` with its frames coded on a cluster: the same archive, byte for byte."""

    def __init__(self, client, settings: api.Settings):
        self.client, self.settings = client, _portable(settings)

    def compress_stream(self, source: BinaryIO, sink: BinaryIO, progress: api.Progress | None = None,
                        size: int | None = None) -> tuple[int, int]:
        """Pack ``source`` into ``sink``; (input bytes, archive bytes), as ``Compressor.compress_stream``."""
        s = self.settings
        pieces = layout.input_frames(source, s.frame_bytes)
        first = next(pieces, b"")
        header = _run(self.client, _plan_header, s, first)  # on a worker: the client needs no model
        plan = api._Plan(header, None, header.engine)
        digest, sizes, alone = hashlib.sha256(), {}, []

        def calls() -> Iterator[tuple]:
            for index, (piece, last) in enumerate(layout.marking_last(itertools.chain([first] if first else [], pieces))):
                digest.update(piece)
                sizes[index] = len(piece)
                if index == 0:
                    alone.append(last)
                yield _pack_frame, s, header, piece

        done, writer = 0, None
        for index, frame in _in_order(self.client, calls(), _ahead(self.client), _tally(progress, sizes, size)):
            if writer is None:  # the header waits for the first frame, as in Compressor.compress_stream
                writer = container.ArchiveWriter(sink, api.Compressor(s)._header(plan, frame, alone=alone[0]))
            writer.add(frame)
            done += sizes.pop(index)
        writer = writer or container.ArchiveWriter(sink, header)
        return done, writer.finish(done, digest.digest())


class ClusterDecompressor:
    """``api.Decompressor`` with its frames decoded on a cluster; each is checked before it is written."""

    def __init__(self, client, model: str | None = None, batch: int | None = None, memory_limit: int | None = None):
        api.Decompressor(model, batch=batch, memory_limit=memory_limit)  # refuses bad values here, not on a worker
        self.client, self.options = client, (_absolute(model), batch, memory_limit)

    def decompress_stream(self, source: BinaryIO, sink: BinaryIO, progress: api.Progress | None = None) -> int:
        """Unpack the archive in ``source`` into ``sink``; the bytes written, as ``Decompressor.decompress_stream``."""
        reader = container.ArchiveReader(source)
        sizes, digest, done = {}, hashlib.sha256(), 0

        def calls() -> Iterator[tuple]:
            for index, frame in enumerate(reader.frames()):
                sizes[index] = frame.size
                yield _unpack_frame, self.options, reader.header, frame, index

        for index, data in _in_order(self.client, calls(), _ahead(self.client), _tally(progress, sizes, None)):
            sizes.pop(index)
            digest.update(data)
            sink.write(data)
            done += len(data)
        if done != reader.original_size:
            raise ChecksumError(f"decoded {done} bytes, not the {reader.original_size} the archive records")
        if reader.original_sha256 is not None and digest.digest() != reader.original_sha256:
            raise ChecksumError("decoded data does not match the archive's SHA-256")
        return done


def _portable(settings: api.Settings) -> api.Settings:
    """``settings`` with a model folder given as an absolute path, so that workers started
    elsewhere (another working folder) find the same folder."""
    return dataclasses.replace(settings, model=_absolute(settings.model))


def _absolute(spec: str | None) -> str | None:
    """A model folder of this machine as an absolute path; a built-in name (or None) as it is."""
    if spec is None or spec in BUILTIN_MODELS or not Path(spec).expanduser().is_dir():
        return spec
    return str(Path(spec).expanduser().resolve())


def _ahead(client) -> int:
    """Frames in flight: ``AHEAD_PER_WORKER`` per worker thread of the cluster."""
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT)
    except TimeoutError:
        raise ClusterError(f"the cluster has had no worker for {WORKER_WAIT} s") from None
    return AHEAD_PER_WORKER * max(1, sum(client.nthreads().values()))


def _tally(progress: api.Progress | None, sizes: dict[int, int], total: int | None) -> Callable[[int], None]:
    """Reports bytes of frames done (on any worker, in any order) to ``progress``."""
    done = 0

    def frame_done(index: int) -> None:
        nonlocal done
        done += sizes[index]
        if progress:
            progress(done, total)
    return frame_done


def _in_order(client, calls: Iterable[tuple], ahead: int, frame_done: Callable[[int], None]) -> Iterator[tuple[int, object]]:
    """(index, result) of each call (function, *arguments) run on the cluster, in the calls' order.

    Calls are taken from ``calls`` only while fewer than ``ahead`` are submitted and not yet
    yielded: reading waits for writing. ``frame_done`` hears of each result as it arrives.
    """
    from distributed import as_completed

    prefix, calls = f"alphazip-{uuid.uuid4().hex[:12]}", iter(calls)
    waiting, results, finished = {}, {}, as_completed()
    submitted = written = 0
    try:
        while True:
            while submitted - written < ahead and (call := next(calls, None)) is not None:
                future = client.submit(*call, key=f"{prefix}-{submitted}", pure=False)
                waiting[future.key] = submitted
                finished.add(future)
                submitted += 1
            if written == submitted:
                return
            future = next(finished)
            index = waiting.pop(future.key)
            results[index] = _result(future, index)
            frame_done(index)
            while written in results:
                yield written, results.pop(written)
                written += 1
    finally:
        if waiting:
            client.cancel([future for future in finished.futures if future.key in waiting])


def _run(client, function, *arguments):
    """One call on the cluster, its result."""
    return _result(client.submit(function, *arguments, key=f"alphazip-{uuid.uuid4().hex[:12]}-plan", pure=False), None)


def _result(future, index: int | None):
    """The future's result; the cluster's own failures become a :class:`ClusterError`."""
    from distributed import KilledWorker
    from distributed.client import FutureCancelledError

    what = "the plan" if index is None else f"frame {index}"
    try:
        return future.result()
    except KilledWorker:
        raise ClusterError(f"{what} was lost with its worker too many times (distributed.scheduler.allowed-failures)"
                           "; a worker that runs out of memory needs a smaller --frame-size") from None
    except FutureCancelledError:
        raise ClusterError(f"{what} was cancelled: the scheduler went away or restarted") from None


# The rest runs on the workers. A worker keeps its models (api.MODELS) and plans between tasks;
# the lock keeps tasks of a worker with several threads from loading a model twice.
_LOCK = threading.Lock()
_PLANS: dict[tuple, "api._Plan"] = {}


def _plan_header(settings: api.Settings, first: bytes) -> Header:
    """The archive's header, judged on its first frame as ``Compressor._plan`` does."""
    with _LOCK:
        plan = api.Compressor(settings)._plan(first)
    if plan.model is not None and not plan.model.exact(plan.engine):
        raise AlphazipError(f"engine {plan.engine} gives other bits on other CPUs, so frames packed on a cluster "
                            "could decode nowhere; --workers and --scheduler pack on the exact engine only")
    return plan.header


def _pack_frame(settings: api.Settings, header: Header, piece: bytes) -> Frame:
    """One coded frame, as ``Compressor._frame`` codes it."""
    return api.Compressor(settings)._frame(piece, _worker_plan(settings, header), None)


def _worker_plan(settings: api.Settings, header: Header) -> "api._Plan":
    key = (settings, header.mode, header.model_fingerprint, header.engine, header.probe)
    with _LOCK:
        if key not in _PLANS:
            if header.mode != "model":
                _PLANS[key] = api._Plan(header, None, "")
            else:
                model = _worker_model(settings.model, header)
                _PLANS[key] = api._Plan(header, model, header.engine)
        return _PLANS[key]


def _worker_model(spec: str | None, header: Header):
    """The model ``header`` names, loaded once per worker and checked (fingerprint, probe):
    ``spec`` where this worker has it (a built-in name, or a folder at this path), else the
    model of that fingerprint among those the worker finds (loaded, built-in, model folders)."""
    return api.Decompressor(spec).checked_model(header)


def _unpack_frame(options: tuple, header: Header, frame: Frame, index: int) -> bytes:
    """One frame's bytes, checked (CRC-32s, size) before they leave the worker, as
    ``Decompressor.decompress_stream`` checks each frame."""
    model_option, batch, memory_limit = options
    decompressor = api.Decompressor(model_option, batch=batch, memory_limit=memory_limit)

    def model():
        with _LOCK:
            return _worker_model(model_option, header)

    return decompressor.frame_data(header, frame, index, model)


@contextlib.contextmanager
def mixed_isa_cluster(folder: Path, settings: list[str], wait: int = WORKER_WAIT):
    """A client of a scheduler and one worker per instruction-set setting (``model.isa``), each a
    process of its own started with that setting in its environment (it must be there before
    torch is imported): a mixed cluster on one machine, to check that it writes the same bytes."""
    import subprocess
    import sys
    import time

    import distributed

    from .model.isa import ISA_SETTINGS

    scheduler_file, processes = folder / "scheduler.json", []
    source = str(Path(__file__).resolve().parent.parent)  # workers import this checkout of alphazip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")])}
    common = ["--scheduler-file", str(scheduler_file), "--no-dashboard"]
    commands = [(["distributed.cli.dask_scheduler", "--port", "0", *common], env)]
    commands += [(["distributed.cli.dask_worker", "--nthreads", "1", *common], {**env, **ISA_SETTINGS[setting]})
                 for setting in settings]
    try:
        for command, command_env in commands:
            processes.append(subprocess.Popen([sys.executable, "-m", *command], env=command_env,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        with distributed.Client(scheduler_file=str(scheduler_file), timeout="60s") as client:
            client.wait_for_workers(len(settings), timeout=wait)
            yield client
    finally:
        for process in reversed(processes):  # workers first, then the scheduler
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
