"""The ``alphazip`` command: gzip-like habits over the library API, and nothing more.

Every failure a user can cause ends as one line on stderr and a non-zero exit: 1 for a bad
input or model, a full disk or a closed pipe, 2 for bad usage, 130 for Ctrl-C and 143 for
SIGTERM. Output goes to a temporary file renamed into place only once complete (see
``output``), so an interrupted or failed run leaves nothing behind.

Given several files (or -r and a folder), pack, unpack and test do each in turn with one
model load, as gzip does: a file that fails is named on one line and the rest go on; the exit
status is the worst one's. Ctrl-C or SIGTERM stops the whole run: the file in progress leaves
nothing, those already done stay.
"""

import hashlib
import itertools
import os
import signal
import sys
from collections.abc import Callable, Iterator
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from . import api, bench_output, layout, limits, report, scale, together
from . import bench as benchmark
from .coding import coder_names
from .errors import AlphazipError
from .finetune import FinetuneSettings
from .model import BUILTIN_MODELS, DEFAULT_MODEL, is_cached, pull
from .model.registry import cached_path, known_fingerprint, local_models
from .output import safe_output

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Lossless compression with a language model as the predictor.")
models_app = typer.Typer(help="List or fetch models.", invoke_without_command=True)
app.add_typer(models_app, name="models")

SUFFIX = ".az"
Force = Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing output.")]
Stdout = Annotated[bool, typer.Option("--stdout", "-c", help="Write to standard output (one input only: archives "
                                      "do not concatenate).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Print sizes and speed.")]
Output = Annotated[Path | None, typer.Option("--output", "-o", help="Output file (one input only).")]
Archives = Annotated[list[str], typer.Argument(metavar="FILE", help="Archives to unpack (each FILE.az into FILE), or - "
                                               "alone for standard input.")]
RecurseArchives = Annotated[bool, typer.Option("--recursive", "-r", help="Also every *.az file in the folders given "
                                               "and below (symbolic links skipped).")]
ModelOption = Annotated[str | None, typer.Option("--model", "-m", help="Built-in model name or local folder.")]
Threads = Annotated[int, typer.Option("--threads", "-T", help="CPU threads for the model (0: torch's default). "
                                      "Archives of the exact engine come out the same under any count.")]
UnpackBatch = Annotated[int | None, typer.Option("--batch", help="Chunks unpacked side by side (default 64; fewer "
                                                 "use less memory). Archives of the transformers path ignore it.")]
MemoryLimit = Annotated[str | None, typer.Option("--memlimit", "-M", help="Memory that decoding a frame may take, "
                                                 "e.g. 500M or 2G (default: 3/4 of this machine's); fewer chunks are "
                                                 "unpacked side by side to fit, and an archive that needs more is refused.")]
Workers = Annotated[int | None, typer.Option("--workers", help="Code frames in N worker processes on this machine "
                                             "(a Dask LocalCluster; -T is then each one's threads). The archive is "
                                             "the same bytes.")]
Scheduler = Annotated[str | None, typer.Option("--scheduler", metavar="ADDRESS", help="Code frames on the running "
                                               "Dask cluster at ADDRESS (tcp://host:8786); its workers load the "
                                               "model themselves. The archive is the same bytes.")]


class UsageError(AlphazipError):
    """A command line that asks for something impossible; exit status 2."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program stands so that the same cleanup as Ctrl-C's runs."""


def _decompressor(model: str | None, batch: int | None, memory_limit: str | None = None, client=None):
    try:
        limit = limits.parse_size(memory_limit) if memory_limit is not None else None
        if client is not None:
            return scale.ClusterDecompressor(client, model, batch, limit)
        return api.Decompressor(model, batch=batch, memory_limit=limit)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


@contextmanager
def _cluster(workers: int | None, scheduler: str | None, threads: int):
    """The Dask client of --workers or --scheduler (None without them), as ``scale.cluster``."""
    try:
        scale.check_options(workers, scheduler)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    with scale.cluster(workers, scheduler, threads) as client:
        yield client


@app.command()
def pack(
    files: Annotated[list[str], typer.Argument(metavar="FILE", help="Files to pack (each FILE into FILE.az), or - "
                                               "alone for standard input.")],
    output: Output = None, stdout: Stdout = False, force: Force = False,
    quiet: Quiet = False, verbose: Verbose = False,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Also every regular file in the folders given "
                                            "and below, except *.az files and symbolic links.")] = False,
    backend: Annotated[str, typer.Option(help=f"Back-end coder: {', '.join(coder_names())}.")] = "brotli",
    model: Annotated[str, typer.Option("--model", "-m", help="Built-in model name or local folder.")] = DEFAULT_MODEL,
    top_k: Annotated[int, typer.Option(help="Ranks below this are symbols; others are escaped.")] = api.DEFAULT_TOP_K,
    context: Annotated[int | None, typer.Option(
        help="Tokens per chunk: longer packs smaller, runs slower. Default 1024, shorter for inputs "
             "under 8 chunks (at least 128), so that they unpack in parallel.")] = None,
    batch: Annotated[int, typer.Option(help="Chunks stepped together.")] = api.DEFAULT_BATCH,
    dtype: Annotated[str, typer.Option(help="float32 or bfloat16: the float engines' precision (the exact engine "
                                       "has its own integer arithmetic).")] = api.DEFAULT_DTYPE,
    mode: Annotated[str, typer.Option(help="auto (smaller of model and raw), model, or raw.")] = "auto",
    engine: Annotated[str, typer.Option(help="Inference path: auto (the exact engine, alphazip-exact-1: decodes on any "
                                        "CPU), or by name alphazip-llama-2, alphazip-gemma3-1, transformers-static-step "
                                        "(their archives decode only where the kernels sum alike).")] = "auto",
    frame_size: Annotated[int, typer.Option(help="Input bytes coded as one frame; memory is bounded by it.")] = api.FRAME_BYTES,
    threads: Threads = 0,
    verify: Annotated[bool, typer.Option("--verify", help="Unpack the archive and compare it with the input before "
                                         "keeping it (about twice the time); with -c it is held in a temporary file "
                                         "until verified.")] = False,
    workers: Workers = None, scheduler: Scheduler = None,
):
    """Pack each FILE into FILE.az, loading the model once for all."""
    with _errors_to_exit(), api.torch_threads(threads), _cluster(workers, scheduler, threads) as client:
        settings = _settings(backend=backend, model=model, top_k=top_k, context=context, batch=batch, dtype=dtype,
                             mode=mode, engine=engine, frame_bytes=frame_size)
        run = _Run(files, recursive, output, stdout, verbose)
        if model in BUILTIN_MODELS and is_cached(model):  # a damaged cache is fetched anew, saying so here
            pull(model, log=lambda message: typer.echo(f"alphazip: {message}", err=True))
        compressor = scale.ClusterCompressor(client, settings) if client else api.Compressor(settings)
        checker = _decompressor(model, None, client=client) if verify else None  # --verify's, sharing the loaded model

        def pack_one(file: str) -> tuple[int, int]:
            target = _target(file, output, stdout, lambda name: name + SUFFIX)
            with _input(file) as raw:
                source = _Tally(raw)
                check = _verifier(checker, source, quiet) if checker else None
                with safe_output(target, force, check) as sink, run.progress("packing", file, quiet) as progress:
                    return compressor.compress_stream(source, sink, progress, _size_of(raw))

        run.each(run.expand(lambda name: not name.endswith(SUFFIX)), pack_one)


@app.command()
def unpack(
    files: Archives, output: Output = None, stdout: Stdout = False, force: Force = False,
    quiet: Quiet = False, verbose: Verbose = False, recursive: RecurseArchives = False, model: ModelOption = None,
    threads: Threads = 0, batch: UnpackBatch = None, memlimit: MemoryLimit = None,
    workers: Workers = None, scheduler: Scheduler = None,
):
    """Unpack each FILE.az into FILE, loading each model once for all."""
    with _errors_to_exit(), api.torch_threads(threads), _cluster(workers, scheduler, threads) as client:
        decompressor = _decompressor(model, batch, memlimit, client)
        run = _Run(files, recursive, output, stdout, verbose)

        archives = run.expand(_is_archive)
        ahead = together.Lookahead(decompressor, archives)  # small archives: several side by side

        def unpack_one(file: str) -> tuple[int, int]:
            target = _target(file, output, stdout, _strip_suffix)
            if (data := ahead.take(file)) is not None:
                with safe_output(target, force) as sink:
                    sink.write(data)
                return len(data), os.path.getsize(file)
            with _input(file) as source, safe_output(target, force) as sink, \
                    run.progress("unpacking", file, quiet) as progress:
                original = decompressor.decompress_stream(source, sink, progress)
                return original, source.tell() if source.seekable() else 0

        run.each(archives, unpack_one)


@app.command()
def test(
    files: Annotated[list[str], typer.Argument(metavar="FILE", help="Archives to verify, or - alone for standard "
                                               "input.")],
    quiet: Quiet = False, recursive: RecurseArchives = False, model: ModelOption = None, threads: Threads = 0,
    batch: UnpackBatch = None, memlimit: MemoryLimit = None, workers: Workers = None, scheduler: Scheduler = None,
):
    """Verify archives completely, like gzip -t; writes nothing."""
    with _errors_to_exit(), api.torch_threads(threads), _cluster(workers, scheduler, threads) as client:
        decompressor = _decompressor(model, batch, memlimit, client)
        run = _Run(files, recursive)

        archives = run.expand(_is_archive)
        ahead = together.Lookahead(decompressor, archives)

        def test_one(file: str) -> None:
            if ahead.take(file) is None:
                with _input(file) as source, progress_bar(f"testing {file}", quiet, "bytes") as progress:
                    decompressor.decompress_stream(source, _Discard(), progress)
            if not quiet:
                typer.echo(f"{file}: OK", err=True)

        run.each(archives, test_one)


@app.command()
def info(files: Annotated[list[str], typer.Argument(help="Archives to describe.")]):
    """Describe archives: mode, model, back-end, settings, chunks and sizes."""
    with _errors_to_exit():
        for file in files:
            blob = _read_input(file)
            for key, value in report.describe(blob).items():
                typer.echo(f"{key:>18}: {value}")


@app.command()
def bench(
    files: Annotated[list[Path], typer.Argument(help="Files to bench.")],
    backends: Annotated[str, typer.Option(help="Comma-separated back-ends, or all.")] = "all",
    top_k: Annotated[str, typer.Option(help="Comma-separated k values.")] = str(api.DEFAULT_TOP_K),
    context: Annotated[str, typer.Option(help="Comma-separated context lengths (tokens per chunk).")] = str(layout.DEFAULT_CONTEXT),
    model: Annotated[str, typer.Option("--model", "-m", help="Comma-separated models.")] = DEFAULT_MODEL,
    batch: Annotated[int, typer.Option(help="Chunks stepped together.")] = api.DEFAULT_BATCH,
    dtype: Annotated[str, typer.Option(help="float32 or bfloat16.")] = api.DEFAULT_DTYPE,
    mode: Annotated[str, typer.Option(help="auto, model or raw, as for pack.")] = "auto",
    engine: Annotated[str, typer.Option(help="Inference path, as for pack.")] = "auto",
    out: Annotated[Path | None, typer.Option(help="Folder for results.csv, results.json and PNG plots.")] = None,
    quick: Annotated[bool, typer.Option(help=f"Smoke run: only the first {benchmark.QUICK_BYTES} bytes of each file.")] = False,
    quiet: Quiet = False,
):
    """Compare settings on FILES: sizes, speed, ideal code length, classic compressors; every archive verified."""
    with _errors_to_exit():
        plan = benchmark.Plan(
            backends=tuple(coder_names()) if backends == "all" else _names(backends),
            models=_names(model), contexts=_integers(context, "--context"), top_ks=_integers(top_k, "--top-k"),
            batch=batch, dtype=dtype, mode=mode, engine=engine, quick=quick)
        for values in itertools.product(plan.backends, plan.models, plan.contexts, plan.top_ks):
            _settings(**dict(zip(("backend", "model", "context", "top_k"), values)), batch=batch, dtype=dtype, mode=mode,
                      engine=engine)
        for path in files:  # a missing file fails now, not after an hour of benching
            if str(path) == "-" or not path.is_file():
                raise AlphazipError(f"{path}: no such file (bench reads files, not standard input)")
        with progress_bar("benching", quiet) as progress:
            rows = benchmark.run(files, plan, progress)
        typer.echo(bench_output.markdown(rows))
        if out is not None:
            about = {"command": " ".join(sys.argv), "plan": plan.__dict__, **benchmark.machine()}
            for path in bench_output.save(rows, out, about):
                typer.echo(f"wrote {path}", err=True)
        failed = benchmark.failures(rows)
        if failed:
            raise AlphazipError(f"{len(failed)} setting(s) FAILED their check: "
                                + "; ".join(f"{r.file} {r.setting}: {r.reason}" for r in failed[:3]))


@app.command()
def finetune(
    corpus: Annotated[Path, typer.Argument(help="Folder of domain files; split by file into training and held-out.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the domain model to.")],
    base: Annotated[str, typer.Option("--base", help="Built-in model name or local folder to start from.")] = DEFAULT_MODEL,
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = FinetuneSettings.steps,
    sequence: Annotated[int, typer.Option(help="Tokens per training window.")] = FinetuneSettings.sequence,
    batch: Annotated[int, typer.Option(help="Windows per step.")] = FinetuneSettings.batch,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate.")] = FinetuneSettings.learning_rate,
    lora_rank: Annotated[int, typer.Option(help="LoRA rank; 0 trains every weight.")] = FinetuneSettings.lora_rank,
    held_out: Annotated[float, typer.Option(help="Share of files held out to measure the gain.")] = FinetuneSettings.held_out,
    seed: Annotated[int, typer.Option(help="Seed of the data order and adapter initialisation.")] = FinetuneSettings.seed,
    dtype: Annotated[str, typer.Option(help="float32 or bfloat16 matrix products while training.")] = FinetuneSettings.dtype,
    fresh: Annotated[bool, typer.Option("--fresh", help="Discard an interrupted run instead of resuming it.")] = False,
    force: Annotated[bool, typer.Option("--force", "-f", help="Replace OUT if it exists.")] = False,
    quiet: Quiet = False,
):
    """Fine-tune a domain model; reports held-out bits per byte before and after. Resumes if interrupted."""
    from .finetune import finetune as run_finetune

    with _errors_to_exit():
        try:
            settings = FinetuneSettings(base=base, steps=steps, sequence=sequence, batch=batch,
                                        learning_rate=learning_rate, lora_rank=lora_rank, held_out=held_out, seed=seed, dtype=dtype)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        log = (lambda message: None) if quiet else (lambda message: typer.echo(message, err=True))
        with progress_bar("fine-tuning", quiet, unit="steps") as progress:
            report = (lambda done, total, loss: progress(done, total)) if progress else None
            try:
                result = run_finetune(corpus, out, settings, report, log, force=force, fresh=fresh)
            except KeyboardInterrupt:
                raise AlphazipError("interrupted; run the same command again to resume from the last checkpoint") from None
        bits = result.manifest["held_out_bits_per_byte"]
        gain = 1 - bits["after"] / bits["before"]
        typer.echo(f"{result.folder}: held-out {bits['before']:.4f} -> {bits['after']:.4f} bits/byte "
                   f"({gain:.1%} smaller); {result.manifest['cpu_seconds']:.0f} CPU s; "
                   f"fingerprint {result.manifest['fingerprint'][:16]}")


@models_app.callback()
def models(context: typer.Context):
    """List the built-in models and the local ones (alphazip finetune's), with fingerprints."""
    if context.invoked_subcommand is not None:
        return
    for name, model in BUILTIN_MODELS.items():
        state = f"cached at {cached_path(name)}" if is_cached(name) else "not cached (fetched on first use)"
        default = " (default)" if name == DEFAULT_MODEL else ""
        fingerprint = known_fingerprint(name) or "(known after first use)"
        typer.echo(f"{name}{default}: {model.description}; {state}; fingerprint {fingerprint[:16]}")
    for folder, manifest in local_models():
        bits = manifest.get("held_out_bits_per_byte", {})
        typer.echo(f"{folder}: local, fine-tuned from {manifest.get('base', {}).get('name', '?')}; held-out "
                   f"{bits.get('before', '?')} -> {bits.get('after', '?')} bits/byte; "
                   f"fingerprint {manifest['fingerprint'][:16]}")


@models_app.command("pull")
def models_pull(name: Annotated[str, typer.Argument(help="Built-in model to fetch.")] = DEFAULT_MODEL):
    """Fetch and convert a built-in model now rather than on first use."""
    with _errors_to_exit():
        typer.echo(str(pull(name, log=lambda message: typer.echo(message, err=True))))


def _settings(**values) -> api.Settings:
    try:
        return api.Settings(**values)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _names(values: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in values.split(",") if v.strip())
    if not names:
        raise UsageError(f"expected a comma-separated list, not {values!r}")
    return names


def _integers(values: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in _names(values))
    except ValueError:
        raise UsageError(f"{option} takes comma-separated integers, not {values!r}") from None


def _is_archive(name: str) -> bool:
    return name.endswith(SUFFIX) and name != SUFFIX


def _strip_suffix(name: str) -> str:
    if not name.endswith(SUFFIX) or name == SUFFIX:
        raise UsageError(f"{name}: unknown suffix, expected {SUFFIX} (use -o to name the output)")
    return name[: -len(SUFFIX)]


class _Run:
    """The inputs of one pack, unpack or test command, done one at a time as gzip does.

    With one FILE everything reads as it always has: a failure ends the command with its own
    message. With several (or -r and a folder) a failure is named on one line, ``alphazip:
    FILE: reason``, and the rest go on; the command then exits with the worst status met.
    """

    def __init__(self, files: list[str], recursive: bool, output: Path | None = None, stdout: bool = False,
                 verbose: bool = False):
        if "-" in files and len(files) > 1:
            raise UsageError("- (standard input) must be the only input")
        self.files, self.recursive, self.verbose = files, recursive, verbose
        self.several = len(files) > 1 or (recursive and any(os.path.isdir(file) for file in files))
        if self.several and output is not None:
            raise UsageError("-o names one output; with several inputs each output goes beside its input")
        if self.several and stdout:
            raise UsageError("-c takes one input: archives do not concatenate, so several would not unpack")
        self.status = 0

    def expand(self, wanted: Callable[[str], bool]) -> list[str]:
        """The files to do: those given, and with -r the regular files under each folder given
        whose names ``wanted`` accepts (symbolic links skipped, as gzip -r). Listed in full before
        any is done, so that outputs written into the tree are not taken as inputs."""
        found = []
        for file in self.files:
            if self.recursive and os.path.isdir(file):
                found.extend(self._walk(file, wanted))
            else:
                found.append(file)
        return found

    def _walk(self, folder: str, wanted: Callable[[str], bool]) -> Iterator[str]:
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:
            self._fail(folder, AlphazipError(f"{folder}: {exc.strerror}"))
            return
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(entry.path, wanted)
            elif entry.is_file(follow_symlinks=False) and wanted(entry.name):
                yield entry.path

    def each(self, files: list[str], work: Callable[[str], tuple[int, int] | None]) -> None:
        """Call ``work`` on each file; it returns (original bytes, archive bytes) for -v, or None.
        Ctrl-C and SIGTERM are not caught here: they stop the run."""
        totals, started = [0, 0, 0], time.perf_counter()
        for file in files:
            began = time.perf_counter()
            try:
                sizes = work(file)
            except (AlphazipError, MemoryError) as exc:
                if not self.several:
                    raise  # one input: its message exactly as it always was
                self._fail(file, exc)
                continue
            if self.verbose and sizes is not None:
                _report(file, *sizes, time.perf_counter() - began)
                totals = [totals[0] + 1, totals[1] + sizes[0], totals[2] + sizes[1]]
        if self.verbose and self.several and totals[0]:
            _report(f"{totals[0]} files", totals[1], totals[2], time.perf_counter() - started)
        if self.status:
            raise typer.Exit(self.status)

    def progress(self, verb: str, file: str, quiet: bool):
        """A progress bar per file, labelled with its name when there are several."""
        return progress_bar(f"{verb} {file}" if self.several else verb, quiet, "bytes")

    def _fail(self, file: str, exc: BaseException) -> None:
        status, message = _failure(exc)
        named = message if message.startswith(f"{file}:") else f"{file}: {message}"
        typer.echo(f"alphazip: {named}", err=True)
        self.status = max(self.status, status)


def _target(file: str, output: Path | None, stdout: bool, derive) -> Path | None:
    """Where to write: None means standard output."""
    if stdout and output is not None:
        raise UsageError("-c and -o exclude each other")
    if stdout:
        return None
    if output is not None:
        return output
    if file == "-":
        raise UsageError("reading standard input: use -c or -o to say where the output goes")
    return Path(derive(file))


def _read_input(file: str) -> bytes:
    with _input(file) as source:
        return source.read()


@contextmanager
def _input(file: str):
    """The input as a binary file object: standard input for "-"; one-line errors otherwise."""
    if file == "-":
        yield sys.stdin.buffer
        return
    try:
        source = open(file, "rb")
    except FileNotFoundError:
        raise AlphazipError(f"{file}: no such file") from None
    except IsADirectoryError:
        raise AlphazipError(f"{file}: is a directory") from None
    except OSError as exc:
        raise AlphazipError(f"{file}: {exc.strerror}") from None
    with source:
        yield source


def _size_of(source) -> int | None:
    """Bytes left in a regular file; None for a pipe."""
    try:
        return os.fstat(source.fileno()).st_size - source.tell() if source.seekable() else None
    except (OSError, ValueError):
        return None


class _Discard:
    """A sink that keeps nothing (``alphazip test`` checks archives without writing them)."""

    def write(self, data: bytes) -> int:
        return len(data)


class _Tally:
    """Counts and hashes the bytes read through it from ``source``, or written to it."""

    def __init__(self, source=None):
        self.source, self.size, self.hash = source, 0, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        return self._count(self.source.read(size))

    def write(self, data: bytes) -> int:
        return len(self._count(data))

    def _count(self, data: bytes) -> bytes:
        self.size += len(data)
        self.hash.update(data)
        return data


def _verifier(decompressor: api.Decompressor, read: _Tally, quiet: bool):
    """pack --verify's check of the finished archive: it must unpack to the bytes that were read.

    The count and hash come from the command's own reading of the input, not from the archive's
    trailer, so a fault anywhere in packing shows."""
    def check(archive: Path) -> None:
        decoded = _Tally()
        with open(archive, "rb") as packed, progress_bar("verifying", quiet, "bytes") as progress:
            try:
                decompressor.decompress_stream(packed, decoded, progress)
            except AlphazipError as exc:
                raise AlphazipError(f"--verify: the archive does not unpack ({exc}); nothing was written") from None
        if (decoded.size, decoded.hash.digest()) != (read.size, read.hash.digest()):
            raise AlphazipError(f"--verify: the archive unpacks to {decoded.size} bytes unlike the {read.size} "
                                "read; nothing was written")
    return check


@contextmanager
def progress_bar(label: str, quiet: bool, unit: str = "tokens"):
    """A rich progress bar on stderr fed by (done, total) counts of ``unit``; nothing when quiet."""
    if quiet:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    columns = [TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
               TextColumn(f"{{task.fields[count]}} {unit}, {{task.fields[rate]}} {unit}/s"), TimeRemainingColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None, rate="-", count="0")
        started = time.perf_counter()

        def update(done: int, total: int | None) -> None:  # total None: not known (a pipe, or unpacking)
            rate = done / max(time.perf_counter() - started, 1e-9)
            bar.update(task, completed=done, total=total, rate=f"{rate:.0f}",
                       count=f"{done}/{total}" if total is not None else str(done))

        yield update


def _report(file: str, original: int, packed: int, seconds: float) -> None:
    bpb = 8 * packed / original if original else 0.0
    typer.echo(f"{file}: {original} <-> {packed} bytes, {bpb:.3f} bits/byte, {seconds:.1f} s", err=True)


def _failure(exc: AlphazipError | MemoryError) -> tuple[int, str]:
    """The exit status and message for one of our errors or a MemoryError."""
    if isinstance(exc, MemoryError):
        # A frame needs memory in proportion to its size: a large --frame-size, or a corrupt
        # archive whose lengths were forged with valid checksums. The output is never left behind.
        return 1, "out of memory (try a smaller --frame-size when packing)"
    return (2 if isinstance(exc, UsageError) else 1), str(exc)


@contextmanager
def _errors_to_exit():
    try:
        yield
    except (AlphazipError, MemoryError) as exc:
        status, message = _failure(exc)
        typer.echo(f"alphazip: {message}", err=True)
        raise typer.Exit(status) from None
    except Terminated:
        typer.echo("alphazip: terminated", err=True)
        raise typer.Exit(128 + signal.SIGTERM) from None
    except KeyboardInterrupt:
        typer.echo("alphazip: interrupted", err=True)
        raise typer.Exit(128 + signal.SIGINT) from None


def main() -> None:
    """Console-script entry point."""
    _quiet_libraries()
    _keep_freed_memory()
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        app()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminate(signum, frame) -> None:
    raise Terminated


def _keep_freed_memory() -> None:
    """Ask glibc to keep large freed blocks instead of returning them to the system: otherwise
    every fresh tensor of a few MB page-faults anew (an elementwise pass over 21 MB: 2.7 ms
    -> 1.0 ms, measured on the Xeon). Process-wide, so only the command sets it, not the library."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD: serve blocks up to 1 GiB from the heap
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: keep up to 1 GiB of freed heap
    except (OSError, AttributeError):
        pass  # not glibc: only slower


def _quiet_libraries() -> None:
    # transformers draws its own progress bars and notices on stderr; ours is the only one.
    # Said through the variables it reads when imported, since most commands never import it
    # (that costs a second); a user's own setting of them wins.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
