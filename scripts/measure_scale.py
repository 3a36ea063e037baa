"""Packing and unpacking on Dask: the same bytes on every cluster, throughput, memory, a lost worker.

A piece of a text (the first --bytes of alice29.txt by default) is packed in frames of
--frame-bytes, with the real default model, on:

- ``--workers 1`` and ``--workers 2`` (``scale.cluster(workers=N)``, what the CLI options call):
  model load per worker, pack and unpack tokens/s, worker CPU seconds, peak RSS per worker;
- a LocalCluster started separately and joined by address (``--scheduler``);
- a scheduler and two worker processes whose environments select different instruction sets
  (one as this CPU, one as a plain x86-64: ``ATEN_CPU_CAPABILITY=default``,
  ``ONEDNN_MAX_CPU_ISA=SSE41``), a simulated mixed cluster;
- ``--workers 2`` with one worker killed (SIGKILL) once the first frame is in.

Every archive must be the same bytes, and every cluster unpacks its archive to the input. Also
measured: the bytes each frame's task sends and returns (pickled, as Dask sends them), and the
cluster's overhead per frame (tasks that do nothing but carry a frame's bytes).

    nice python scripts/measure_scale.py [--bytes 8192] [--frame-bytes 4096] [--threads 1] [--json out.json]
"""

import argparse
import io
import json
import logging
import os
import pickle
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CORPUS = ROOT.parent / "shared" / "corpus"


def worker_facts() -> dict:
    """Run on a worker: its pid, CPU seconds so far, peak RSS, and the instruction set torch uses."""
    import resource

    import torch

    usage = resource.getrusage(resource.RUSAGE_SELF)
    status = Path("/proc/self/status").read_text()
    peak = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    return {"pid": os.getpid(), "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mib": peak / 1024,
            "capability": torch.backends.cpu.get_cpu_capability(), "torch_threads": torch.get_num_threads()}


def carry(piece: bytes) -> int:
    """A task that does nothing but receive a frame's bytes: the cluster's own cost per frame."""
    return len(piece)


def cpu_seconds(client) -> float:
    return sum(facts["cpu_s"] for facts in client.run(worker_facts).values())


def measure(client, settings, data: bytes, first: bytes, model: str) -> dict:
    """Load the model on every worker, then pack and unpack ``data`` once each, timed."""
    from alphazip import report, scale

    started = time.perf_counter()
    warm = [client.submit(scale._plan_header, settings, first, workers=[address], pure=False)
            for address in client.scheduler_info()["workers"]]  # every worker loads the model, engine and probe
    client.gather(warm)
    load = time.perf_counter() - started
    say("  models loaded", {"seconds": load})
    cpu, started = cpu_seconds(client), time.perf_counter()
    sink = io.BytesIO()
    scale.ClusterCompressor(client, settings).compress_stream(io.BytesIO(data), sink, None, len(data))
    pack_s, pack_cpu = time.perf_counter() - started, cpu_seconds(client) - cpu
    blob = sink.getvalue()
    say("  packed", {"seconds": pack_s, "worker_cpu_s": pack_cpu})
    cpu, started = cpu_seconds(client), time.perf_counter()
    out = io.BytesIO()
    scale.ClusterDecompressor(client, model).decompress_stream(io.BytesIO(blob), out)
    unpack_s, unpack_cpu = time.perf_counter() - started, cpu_seconds(client) - cpu
    tokens = report.describe(blob)["tokens"]
    facts = client.run(worker_facts)
    return {"blob": blob, "unpacked_ok": out.getvalue() == data, "tokens": tokens, "model_load_s": load,
            "pack_s": pack_s, "pack_tok_s": tokens / pack_s, "pack_worker_cpu_s": pack_cpu,
            "unpack_s": unpack_s, "unpack_tok_s": tokens / unpack_s, "unpack_worker_cpu_s": unpack_cpu,
            "workers": [{k: facts[a][k] for k in ("peak_rss_mib", "capability", "torch_threads")} for a in sorted(facts)]}


def round_trip(client, settings, data: bytes, model: str, progress=None, unpack: bool = True) -> tuple[bytes, bool]:
    from alphazip import scale

    sink, out = io.BytesIO(), io.BytesIO()
    scale.ClusterCompressor(client, settings).compress_stream(io.BytesIO(data), sink, progress, len(data))
    if not unpack:
        return sink.getvalue(), None
    scale.ClusterDecompressor(client, model).decompress_stream(io.BytesIO(sink.getvalue()), out)
    return sink.getvalue(), out.getvalue() == data


def bytes_moved(settings, data: bytes, blob: bytes, model: str) -> dict:
    """Pickled sizes of what each frame's task carries out and back, as Dask ships them."""
    from alphazip import api, container, scale

    archive = container.read(blob)
    header = archive.header
    pieces = api.Compressor(settings).frames_of(data)
    out = [len(pickle.dumps((scale._pack_frame, settings, header, piece), protocol=5)) for piece in pieces]
    back = [len(pickle.dumps(frame, protocol=5)) for frame in archive.frames]
    options = (model, None, None)
    unpack_out = [len(pickle.dumps((scale._unpack_frame, options, header, frame, i), protocol=5))
                  for i, frame in enumerate(archive.frames)]
    return {"frames": len(pieces), "input_bytes_per_frame": len(data) / len(pieces),
            "pack_out_per_frame": sum(out) / len(out), "pack_back_per_frame": sum(back) / len(back),
            "unpack_out_per_frame": sum(unpack_out) / len(unpack_out), "unpack_back_per_frame": len(data) / len(pieces)}


def overhead_per_frame(client, frame_bytes: int, count: int = 200) -> float:
    """Seconds per frame of the scheduler, the transfers and the in-order writer, on no-op tasks."""
    from alphazip import scale

    started = time.perf_counter()
    for _ in scale._in_order(client, ((carry, os.urandom(frame_bytes)) for _ in range(count)), scale._ahead(client),
                             lambda index: None):
        pass
    return (time.perf_counter() - started) / count


def killing_run(client, settings, data: bytes, model: str) -> dict:
    """A pack with the busiest worker killed (SIGKILL) once the first frame is in."""
    pids, killed = client.run(os.getpid), []

    def kill(done, total):
        if not killed:
            processing = client.processing()
            busy = [address for address, keys in processing.items() if keys] or list(pids)
            killed.append({"worker": busy[0], "frames_running": len(processing.get(busy[0], ())), "after_bytes": done})
            os.kill(pids[busy[0]], signal.SIGKILL)

    blob, ok = round_trip(client, settings, data, model, kill, unpack=False)  # the same bytes as the others
    client.wait_for_workers(2, timeout=300)
    replaced = pids[killed[0]["worker"]] not in client.run(os.getpid).values()
    return {"blob": blob, "unpacked_ok": ok, "killed": killed[0], "replaced_by_nanny": replaced}


def say(name: str, facts: dict) -> None:
    print(f"{time.strftime('%H:%M:%S')} {name}: {json.dumps(facts)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", type=Path, default=CORPUS / "alice29.txt")
    parser.add_argument("--bytes", type=int, default=8192)
    parser.add_argument("--frame-bytes", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker (0: the cores shared)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import distributed

    from alphazip import api, scale
    from alphazip.bench import cpu_model
    from alphazip.model import DEFAULT_MODEL

    data = args.file.read_bytes()[:args.bytes]
    settings = api.Settings(frame_bytes=args.frame_bytes)
    first = api.Compressor(settings).frames_of(data)[0]
    model = DEFAULT_MODEL
    report = {"cpu": cpu_model(), "cores": os.cpu_count(), "input": f"{args.file.name}[:{len(data)}]",
              "frame_bytes": args.frame_bytes, "runs": {}}
    blobs = {}
    for workers in (2, 1):
        with scale.cluster(workers=workers, threads=args.threads) as client:
            facts = measure(client, settings, data, first, model)
            if workers == 2:
                report["overhead_s_per_frame"] = overhead_per_frame(client, args.frame_bytes)
        blobs[f"--workers {workers}"] = facts.pop("blob")
        report["runs"][f"--workers {workers}"] = facts
        say(f"--workers {workers}", facts)
        if workers == 2:
            with (tempfile.TemporaryDirectory() as folder,
                  scale.mixed_isa_cluster(Path(folder), ["native", "default"], wait=300) as client):
                blobs["mixed ISA"], ok = round_trip(client, settings, data, model)
                capabilities = sorted(facts["capability"] for facts in client.run(worker_facts).values())
                coded = sorted(client.run(lambda: len(scale._PLANS)).values())
                report["runs"]["mixed ISA"] = {"unpacked_ok": ok, "capabilities": capabilities, "plans_per_worker": coded}
                say("mixed ISA", report["runs"]["mixed ISA"])
            with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0",
                                          silence_logs=logging.CRITICAL) as local, \
                    scale.cluster(scheduler=local.scheduler_address) as client:
                blobs["--scheduler"], ok = round_trip(client, settings, data, model, unpack=False)
                report["runs"]["--scheduler"] = {"unpacked_ok": ok}
                say("--scheduler", report["runs"]["--scheduler"])
                killed = killing_run(client, settings, data, model)
                blobs["worker killed"] = killed.pop("blob")
                report["runs"]["worker killed"] = killed
                say("worker killed", killed)
            say("identical so far", {name: blob == blobs["--workers 2"] for name, blob in blobs.items()})
    reference = blobs["--workers 2"]
    report["archive_bytes"] = len(reference)
    report["identical"] = {name: blob == reference for name, blob in blobs.items()}
    report["bytes_moved"] = bytes_moved(settings, data, reference, model)
    report["client_peak_rss_mib"] = worker_facts()["peak_rss_mib"]
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    good = all(report["identical"].values()) and all(run["unpacked_ok"] is not False for run in report["runs"].values())
    sys.exit(0 if good else 1)


if __name__ == "__main__":
    main()
