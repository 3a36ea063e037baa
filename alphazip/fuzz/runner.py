"""Worker processes that decode cases under limits, and what a run found.

Cases run in spawned workers (not forked: the parent holds torch's threads), each capped in
address space and time by :mod:`.outcome`. SIGALRM reaches only Python code, so a worker that
stays silent past twice the time limit is stuck in C: it is killed and the case is a "hang";
a worker that dies is a "crash". Either is replaced, and the run goes on.
"""

import json
import multiprocessing
import os
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path

from .outcome import FAILURES, OUTCOMES, Case, Result
from .seeds import TINY_MODEL

REPO = Path(__file__).resolve().parents[2]
START_SECONDS = 300  # importing torch and warming the model up, on a loaded 2-core machine


@dataclass(frozen=True)
class Limits:
    """What each case may cost."""

    seconds: float = 5.0  # per case, enforced by SIGALRM
    headroom: int = 2 << 30  # address space a worker may add to what it holds after warming up
    memory_limit: int = 1 << 30  # told to the Decompressor, where it takes one (below the headroom)
    model: str = TINY_MODEL  # what --model names for cases that override the archive's model


class Pool:
    """Worker processes that run cases; use as a context manager."""

    def __init__(self, workers: int = 2, limits: Limits = Limits(), warmup: Iterable[bytes] = ()):
        self.limits, self.warmup = limits, list(warmup)
        self._context = multiprocessing.get_context("spawn")
        self._workers = [_Worker(self._context, limits, self.warmup) for _ in range(workers)]
        self.restarts = 0

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        for worker in self._workers:
            worker.stop()

    def run(self, cases: Iterable[tuple[int, Case]]) -> Iterator[tuple[Case, Result]]:
        """(case, result) for every (index, case), in the order they finish."""
        todo = iter(cases)
        while True:
            exhausted = self._hand_out(todo)
            if exhausted and not any(worker.job for worker in self._workers):
                return
            yield from self._collect()

    def _hand_out(self, todo: Iterator) -> bool:
        """Give each idle worker a case; True once there are no more."""
        for worker in self._workers:
            if worker.ready and worker.job is None:
                job = next(todo, None)
                if job is None:
                    return True
                worker.give(*job, deadline=time.monotonic() + 2 * self.limits.seconds + 10)
        return False

    def _collect(self) -> Iterator[tuple[Case, Result]]:
        """Wait for the next answers (or deadlines); replace workers that hung or died."""
        live = [worker for worker in self._workers if worker.job or not worker.ready]
        soonest = min(worker.deadline for worker in live)
        ready = wait([worker.conn for worker in live], timeout=max(0.0, soonest - time.monotonic()))
        for index, worker in enumerate(self._workers):
            answer = worker.answer() if worker.conn in ready else worker.overdue()
            if answer is None:
                continue
            case, result, retire = answer
            if result is not None:
                yield case, result
            if retire:
                worker.stop()
                self._workers[index] = _Worker(self._context, self.limits, self.warmup)
                self.restarts += 1


class _Worker:
    """One worker process and the case it is on."""

    def __init__(self, context, limits: Limits, warmup: list[bytes]):
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, limits, warmup), daemon=True)
        self.process.start()
        child.close()
        self.ready, self.job = False, None  # job: (index, case, started)
        self.deadline = time.monotonic() + START_SECONDS

    def give(self, index: int, case: Case, deadline: float) -> None:
        self.conn.send((index, case))
        self.job, self.deadline = (index, case, time.monotonic()), deadline

    def answer(self) -> tuple[Case | None, Result | None, bool] | None:
        """(case, result, whether to replace this worker) from what it sent, or from its death."""
        try:
            message = self.conn.recv()
        except (EOFError, OSError):
            self.process.join(5)
            return self._lost("crash", f"WorkerDied: exit code {_exit_name(self.process.exitcode)}")
        if message == "ready":
            self.ready = True
            return None
        result, retire = message
        case, self.job = self.job[1], None
        return case, result, retire

    def overdue(self) -> tuple[Case | None, Result | None, bool] | None:
        if time.monotonic() < self.deadline:
            return None
        self.process.kill()
        seconds = time.monotonic() - self.job[2] if self.job else START_SECONDS
        return self._lost("hang", f"Killed: no answer after {seconds:.0f} s (stuck where SIGALRM cannot reach)")

    def _lost(self, outcome: str, error: str) -> tuple[Case | None, Result | None, bool]:
        if self.job is None:
            raise RuntimeError(f"a fuzzing worker failed while starting ({error})")
        index, case, started = self.job
        self.job = None
        return case, Result(index, case.kind, case.name, outcome, error=error,
                            seconds=time.monotonic() - started), True

    def stop(self) -> None:
        if self.process.is_alive():
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.process.join(2)
            if self.process.is_alive():
                self.process.kill()
        self.process.join()
        self.conn.close()


def _exit_name(code: int | None) -> str:
    if code is not None and code < 0:
        return f"{code} ({signal.Signals(-code).name})"
    return str(code)


def _serve(conn, limits: Limits, warmup: list[bytes]) -> None:
    """A worker: warm the model up, cap the address space, then run cases until told to stop."""
    from .outcome import limit_address_space, run, status_kb

    os.chdir(REPO)  # headers may name the test model by its path from the repository's root
    _quiet()
    for blob in warmup:  # load the model, build its engines, before the limit is measured
        run(Case("warmup", "", blob, ()), -1, limits.model, limits.seconds * 10, limits.memory_limit)
    cap = limit_address_space(limits.headroom)
    conn.send("ready")
    while (job := conn.recv()) is not None:
        result = run(job[1], job[0], limits.model, limits.seconds, limits.memory_limit)
        # A case can leave the address space grown for good (threads started, caches filled):
        # retire the worker before that shows up as "memory" in the cases that follow.
        grown = status_kb("VmSize") * 1024 > cap - limits.headroom * 3 // 4
        conn.send((result, grown))


def _quiet() -> None:
    import torch
    import transformers

    torch.set_num_threads(1)  # one core per worker: workers run side by side
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


@dataclass
class Summary:
    """Counts by kind and outcome, the extremes, and failures grouped by signature."""

    counts: dict = field(default_factory=lambda: defaultdict(Counter))
    seconds: Counter = field(default_factory=Counter)  # worker seconds spent, by kind
    signatures: dict = field(default_factory=dict)  # signature -> [count, first result]
    slowest: Result | None = None
    hungriest: Result | None = None  # the largest peak RSS
    cases: int = 0

    def add(self, result: Result) -> None:
        self.cases += 1
        self.counts[result.kind][result.outcome] += 1
        self.seconds[result.kind] += result.seconds
        if self.slowest is None or result.seconds > self.slowest.seconds:
            self.slowest = result
        if self.hungriest is None or result.peak_kb > self.hungriest.peak_kb:
            self.hungriest = result
        if result.outcome in FAILURES:
            entry = self.signatures.setdefault(result.signature, [0, result])
            entry[0] += 1

    @property
    def failures(self) -> int:
        return sum(counts[o] for counts in self.counts.values() for o in FAILURES)

    def table(self) -> str:
        """Cases by kind (rows) and outcome (columns), with totals."""
        kinds = sorted(self.counts)
        rows = [["kind", *OUTCOMES, "total", "seconds"]]
        for kind in kinds + ["total"]:
            counts = self.counts[kind] if kind != "total" else sum(self.counts.values(), Counter())
            seconds = self.seconds[kind] if kind != "total" else sum(self.seconds.values())
            rows.append([kind, *(str(counts[o]) for o in OUTCOMES), str(sum(counts.values())), f"{seconds:.0f}"])
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        aligned = (("  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))))
                   for row in rows)
        return "\n".join(aligned)

    def report(self, seconds: float | None = None, saved: dict | None = None) -> str:
        """The table, the time taken, the slowest and the hungriest case, each failure signature
        once (with where ``saved`` put one)."""
        lines = [self.table(), ""]
        if seconds is not None:
            lines.append(f"{self.cases} cases in {seconds:.0f} s: {1000 * seconds / max(self.cases, 1):.1f} s per 1,000")
        if self.slowest:
            lines.append(f"slowest: case {self.slowest.index} ({self.slowest.name}) {self.slowest.seconds:.2f} s, "
                         f"{self.slowest.outcome}")
        if self.hungriest:
            lines.append(f"largest peak RSS: case {self.hungriest.index} ({self.hungriest.name}) "
                         f"{self.hungriest.peak_kb / 1024:.0f} MiB, {self.hungriest.growth_kb / 1024:.0f} MiB above "
                         f"where it started, {self.hungriest.outcome}")
        if self.signatures:
            lines += ["", f"{self.failures} failures, {len(self.signatures)} signatures:"]
        for signature, (count, first) in sorted(self.signatures.items(), key=lambda item: -item[1][0]):
            lines.append(f"{count:6d}  {signature}")
            lines.append(f"        e.g. case {first.index}: {first.name} -> {first.error[:160]}")
            for path in (saved or {}).get(signature, [])[:1]:
                lines.append(f"        saved as {path}")
        return "\n".join(lines)


class Saver:
    """Writes failing cases to a folder, at most ``per_signature`` of each signature: the
    archive as NNNNNN-kind-outcome.az and a .json beside it with what replaying needs."""

    def __init__(self, folder: Path, per_signature: int = 3):
        self.folder, self.per_signature = Path(folder), per_signature
        self.saved: dict[str, list[Path]] = defaultdict(list)
        self.folder.mkdir(parents=True, exist_ok=True)

    def add(self, case: Case, result: Result) -> None:
        if result.outcome not in FAILURES or len(self.saved[result.signature]) >= self.per_signature:
            return
        path = self.folder / f"{result.index:06d}-{case.kind}-{result.outcome}.az"
        path.write_bytes(case.blob)
        facts = {"kind": case.kind, "name": case.name, "expected": [e.hex() for e in case.expected],
                 "original": None if case.original is None else case.original.hex(), "override": case.override,
                 "reader_only": case.reader_only, "index": result.index,
                 "outcome": result.outcome, "signature": result.signature, "error": result.error,
                 "seconds": round(result.seconds, 3), "traceback": result.trace}
        path.with_suffix(".json").write_text(json.dumps(facts, indent=1))
        self.saved[result.signature].append(path)


def load_case(path: Path, originals: tuple[bytes, ...]) -> Case:
    """A saved case: its archive, and from the .json beside it (if any) what it should give;
    without one (a corpus file), any of ``originals`` is right."""
    path = Path(path)
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        return Case("corpus", path.name, path.read_bytes(), originals)
    facts = json.loads(sidecar.read_text())
    original = facts.get("original")
    return Case(facts["kind"], f"{path.name}: {facts['name']}", path.read_bytes(),
                tuple(bytes.fromhex(e) for e in facts["expected"]), facts["override"], facts["reader_only"],
                None if original is None else bytes.fromhex(original))
