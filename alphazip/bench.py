"""Ablations: back-ends, k, contexts and models side by side, beside the classics and the ideal.

The model runs once per (model, context) in each direction. One scoring pass gives the ranks that
every back-end and k are coded from; each payload is decoded back to its symbols and compared;
one decoding pass turns symbols back into bytes, compared byte for byte. So a whole ablation
costs about one pack and one unpack, and still proves that every archive decodes. A setting
whose check fails is reported FAILED with the reason, never dropped.
"""

import bz2
import datetime
import gzip
import io
import lzma
import math
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import brotli
import numpy as np
import torch
import zstandard

from . import container
from .api import Compressor, Decompressor, Settings
from .coding.ranked import symbolize
from .layout import DEFAULT_CONTEXT, FRAME_BYTES, input_frames
from .lookup import MODELS, engine_for
from .policy import looks_binary
from .report import library_versions
from .schedule import decoding_batch
from .coding import RankCoder, get_coder
from .coding.ranked import RankDecoder
from .model import LanguageModel
from .schedule import Progress, Scores, decode_chunks, score_chunks

QUICK_BYTES = 4096  # --quick benches only the first 4 KiB of each file

# The classic compressors every result is quoted beside: (compress, decompress) on raw bytes.
CLASSICS: dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]] = {
    "gzip -9": (lambda b: gzip.compress(b, 9, mtime=0), gzip.decompress),
    "bzip2 -9": (lambda b: bz2.compress(b, 9), bz2.decompress),
    "xz -9e": (lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME), lzma.decompress),
    "zstd -19": (lambda b: zstandard.ZstdCompressor(level=19).compress(b),
                 lambda b: zstandard.ZstdDecompressor().decompress(b)),
    "brotli -11": (lambda b: brotli.compress(b, quality=11), brotli.decompress),
}


@dataclass(frozen=True)
class Plan:
    """Which settings to compare; every combination of the lists is one alphazip setting."""

    backends: tuple[str, ...]
    models: tuple[str, ...] = (Settings.model,)
    contexts: tuple[int, ...] = (DEFAULT_CONTEXT,)
    top_ks: tuple[int, ...] = (Settings.top_k,)
    batch: int = Settings.batch
    dtype: str = Settings.dtype
    mode: str = Settings.mode
    engine: str = Settings.engine
    quick: bool = False

    def settings(self, backend: str, model: str, context: int, top_k: int) -> Settings:
        return Settings(backend=backend, model=model, top_k=top_k, context=context, batch=self.batch,
                        dtype=self.dtype, mode=self.mode, engine=self.engine)


@dataclass
class Row:
    """One line of the results: an alphazip setting, a classic compressor, or a limit."""

    file: str
    coder: str  # "alphazip brotli", "gzip -9", "ideal", "rank entropy" (order 0, ranks and escaped ids)
    kind: str  # "alphazip", "classic" or "limit"
    original: int
    size: float
    model: str = ""
    context: int | None = None
    top_k: int | None = None
    mode: str = ""  # what the archive holds: "model" or "raw" ("mixed" for a total over both)
    tokens: int = 0
    pack_seconds: float | None = None
    unpack_seconds: float | None = None
    ideal_size: float | None = None  # the model's ideal code length under the same chunking
    peak_rss_mib: float | None = None
    status: str = "OK"
    reason: str = ""

    @property
    def setting(self) -> str:
        parts = [self.coder] + [f"{name} {value}" for name, value in
                                (("ctx", self.context), ("k", self.top_k)) if value is not None]
        return " · ".join(parts + ([self.model] if self.model else []))

    @property
    def bits_per_byte(self) -> float | None:
        return 8 * self.size / self.original if self.original else None

    @property
    def over_ideal_percent(self) -> float | None:
        return 100 * (self.size / self.ideal_size - 1) if self.ideal_size else None

    def tokens_per_second(self, direction: str) -> float | None:
        """Model tokens per second; none for a raw archive's unpacking, which runs no model."""
        seconds = getattr(self, f"{direction}_seconds")
        if not (seconds and self.tokens) or (direction == "unpack" and self.mode in ("raw", "mixed")):
            return None
        return self.tokens / seconds

    def kilobytes_per_second(self, direction: str) -> float | None:
        seconds = getattr(self, f"{direction}_seconds")
        return self.original / 1000 / seconds if seconds else None

    def record(self) -> dict:
        """Every field and derived figure, for CSV and JSON."""
        return asdict(self) | {
            "setting": self.setting, "bits_per_byte": self.bits_per_byte, "over_ideal_percent": self.over_ideal_percent,
            "pack_tokens_per_s": self.tokens_per_second("pack"), "pack_kb_per_s": self.kilobytes_per_second("pack"),
            "unpack_tokens_per_s": self.tokens_per_second("unpack"),
            "unpack_kb_per_s": self.kilobytes_per_second("unpack")}


@dataclass
class Tally:
    """Feeds one (done, total) progress over every model pass of the run."""

    report: Progress | None
    total: int = 0
    done: int = field(default=0, init=False)

    def pass_progress(self) -> Progress | None:
        if self.report is None:
            return None
        start = self.done

        def update(done: int, total: int) -> None:
            self.done = start + done
            self.report(self.done, self.total)

        return update


def run(files: list[Path], plan: Plan, progress: Progress | None = None) -> list[Row]:
    """Bench every file under every setting of ``plan``; rows in file order."""
    inputs = {name: read(path, plan.quick) for name, path in zip(display_names(files), files)}
    tally = Tally(progress)
    text = {name: data for name, data in inputs.items() if uses_model(data, plan.mode)}
    for spec in plan.models:
        model = MODELS.get(spec, plan.dtype)
        tally.total += 2 * len(plan.contexts) * sum(len(model.tokenizer.encode(d)) for d in text.values())
    rows = []
    for name, data in inputs.items():
        rows += classic_rows(name, data)
        if name not in text:
            rows += raw_rows(name, data, plan)
            continue
        for spec in plan.models:
            model = MODELS.get(spec, plan.dtype)
            for context in plan.contexts:
                rows += model_rows(name, data, model, spec, context, plan, tally)
    return rows


def display_names(files: list[Path]) -> list[str]:
    """File names as shown; whole paths where two files share a name."""
    names = [path.name for path in files]
    return [name if names.count(name) == 1 else str(path) for name, path in zip(names, files)]


def read(path: Path, quick: bool) -> bytes:
    data = path.read_bytes()
    return data[:QUICK_BYTES] if quick else data


def uses_model(data: bytes, mode: str) -> bool:
    """Whether packing runs the model: in auto mode, unless the first frame looks binary (as pack judges)."""
    first = next(input_frames(io.BytesIO(data), FRAME_BYTES), b"")
    return bool(data) and (mode == "model" or mode == "auto" and not looks_binary(first))


def classic_rows(name: str, data: bytes) -> list[Row]:
    rows = []
    for coder, (compress, decompress) in CLASSICS.items():
        reset_peak_memory()
        started = time.perf_counter()
        blob = compress(data)
        packed = time.perf_counter()
        row = Row(name, coder, "classic", len(data), len(blob), pack_seconds=packed - started)
        _check(row, lambda blob=blob, decompress=decompress: decompress(blob) == data, "round trip differs")
        row.unpack_seconds = time.perf_counter() - packed
        row.peak_rss_mib = peak_memory_mib()
        rows.append(row)
    return rows


def raw_rows(name: str, data: bytes, plan: Plan) -> list[Row]:
    """Files the model is not run on (binary in auto mode): each back-end packs and unpacks in full."""
    rows = []
    for backend in plan.backends:
        compressor = Compressor(plan.settings(backend, plan.models[0], plan.contexts[0], plan.top_ks[0]))
        reset_peak_memory()
        started = time.perf_counter()
        blob = compressor.compress(data)
        packed = time.perf_counter()
        row = Row(name, f"alphazip {backend}", "alphazip", len(data), len(blob), mode=container.read(blob).mode,
                  pack_seconds=packed - started)
        _check(row, lambda blob=blob: Decompressor().decompress(blob) == data, "unpacked bytes differ")
        row.unpack_seconds = time.perf_counter() - packed
        row.peak_rss_mib = peak_memory_mib()
        rows.append(row)
    return rows


def model_rows(name: str, data: bytes, model: LanguageModel, spec: str, context: int, plan: Plan,
               tally: Tally) -> list[Row]:
    """One scoring pass and one decoding pass at ``context``; every back-end and k coded from them.

    The passes run frame by frame over the very chunks ``alphazip pack`` codes.
    """
    packer = Compressor(plan.settings(plan.backends[0], spec, context, plan.top_ks[0]))
    frames = [packer.chunks_of(piece, model) for piece in packer.frames_of(data)]
    same = {"model": _label(spec, plan), "context": context, "tokens": sum(len(c) for f in frames for c in f)}
    reset_peak_memory()
    try:
        engine = engine_for(model, plan.engine)
        started = time.perf_counter()
        scores = [score_chunks(model, chunks, plan.batch, tally.pass_progress(), engine) for chunks in frames]
        score_seconds = time.perf_counter() - started
        decode_seconds, decode_failure = decode_pass(data, frames, scores, model, max(plan.top_ks), plan.batch,
                                                     engine, tally)
    except Exception as exc:  # the whole pass failed: every setting that needed it did
        return [Row(name, f"alphazip {backend}", "alphazip", len(data), math.nan, top_k=top_k, status="FAILED",
                    reason=f"model pass: {type(exc).__name__}: {exc}", **same)
                for top_k in plan.top_ks for backend in plan.backends]
    ideal = sum(sum(s.bits) for s in scores) / 8
    rows = [Row(name, "ideal", "limit", len(data), ideal, ideal_size=ideal, **same)]
    for top_k in plan.top_ks:
        expected = [symbolize(chunks, s.ranks, top_k) for chunks, s in zip(frames, scores)]
        symbols, escapes = (np.concatenate([e[i] for e in expected] or [np.zeros(0, np.int64)]) for i in (0, 1))
        rows.append(Row(name, "rank entropy", "limit", len(data), order0_bytes(symbols) + order0_bytes(escapes),
                        top_k=top_k, ideal_size=ideal, **same))
        for backend in plan.backends:
            if not _codes_ranks(backend) and top_k != plan.top_ks[0]:  # k means nothing to it
                continue
            row = coded_row(name, data, model, plan.settings(backend, spec, context, top_k), scores, expected, same)
            row.ideal_size = ideal
            if not _codes_ranks(backend):  # its own pack and unpack, timed in full
                rows.append(row)
                continue
            row.pack_seconds += score_seconds  # auto mode scores the text even where raw wins
            if row.mode != "raw":  # unpacking a raw archive never runs the model
                row.unpack_seconds += decode_seconds
                if decode_failure and row.status == "OK":
                    row.status, row.reason = "FAILED", decode_failure
            rows.append(row)
    memory = peak_memory_mib()
    for row in rows:
        row.peak_rss_mib = memory
    return rows


def decode_pass(data: bytes, frames: list[list[np.ndarray]], scores: list[Scores], model: LanguageModel,
                top_k: int, batch: int, engine: str, tally: Tally) -> tuple[float, str]:
    """Seconds of one model decoding pass, and why it failed ("" when the bytes come back exactly).

    It decodes the symbols of the largest k, so every rank any smaller k keeps is inverted too.
    """
    started = time.perf_counter()
    try:
        restored = []
        for chunks, frame_scores in zip(frames, scores, strict=True):
            coded = [symbolize([chunk], [ranks], top_k) for chunk, ranks in zip(chunks, frame_scores.ranks)]
            decoder = RankDecoder([c[0] for c in coded], [c[1] for c in coded], top_k)
            decoded = decode_chunks(model, decoder, [len(chunk) for chunk in chunks],
                                    decoding_batch(model, engine, batch), tally.pass_progress(), engine)
            restored += [model.tokenizer.decode(chunk) for chunk in decoded]
        failure = "" if b"".join(restored) == data else "model decoding pass: bytes differ"
    except Exception as exc:  # a bench reports every failure as data, whatever raised it
        failure = f"model decoding pass: {type(exc).__name__}: {exc}"
    return time.perf_counter() - started, failure


def coded_row(name: str, data: bytes, model: LanguageModel, settings: Settings, scores: list[Scores],
              expected: list[tuple[np.ndarray, np.ndarray]], same: dict) -> Row:
    """Code the shared ranks with one back-end and k; decode the payloads and compare symbols.

    A coder that needs the model's distribution (``ac``) packs and unpacks in full instead."""
    ranked = _codes_ranks(settings.backend)
    started = time.perf_counter()
    try:
        archive = Compressor(settings).pack(data, scores=scores if ranked else None)
        blob = container.write(archive)
    except Exception as exc:  # reported as data, like a failed check
        return Row(name, f"alphazip {settings.backend}", "alphazip", len(data), math.nan, top_k=settings.top_k,
                   status="FAILED", reason=f"pack: {type(exc).__name__}: {exc}", pack_seconds=0.0,
                   unpack_seconds=0.0, **same)
    packed = time.perf_counter()
    row = Row(name, f"alphazip {settings.backend}", "alphazip", len(data), len(blob), top_k=settings.top_k,
              mode=archive.mode, pack_seconds=packed - started, **same)
    if archive.mode == "raw" or not ranked:
        _check(row, lambda: Decompressor().decompress(blob) == data, "unpacked bytes differ")
    else:
        _check(row, lambda: _same_symbols(container.read(blob), model, expected), "decoded symbols differ")
    row.unpack_seconds = time.perf_counter() - packed
    return row


def _codes_ranks(backend: str) -> bool:
    """Whether ``backend`` codes ranks (so the shared scoring pass serves it)."""
    return isinstance(get_coder(backend), RankCoder)


def order0_bytes(symbols: np.ndarray) -> float:
    """Order-0 entropy of a symbol stream, in bytes: what a static coder of its histogram needs."""
    if not len(symbols):
        return 0.0
    counts = np.unique(symbols, return_counts=True)[1]
    p = counts / counts.sum()
    return max(0.0, float(-(counts * np.log2(p)).sum() / 8))


def _same_symbols(archive: container.Archive, model: LanguageModel,
                  expected: list[tuple[np.ndarray, np.ndarray]]) -> bool:
    """Every model frame's payloads decode to the symbols and escapes it was coded from."""
    for frame, (symbols, escapes) in zip(archive.frames, expected, strict=True):
        if frame.mode == "model":
            decoded = Decompressor.read_symbols(archive.header, frame, model)
            got = [np.concatenate(parts) if parts else np.zeros(0, np.int64) for parts in decoded]
            if not (np.array_equal(got[0], symbols) and np.array_equal(got[1], escapes)):
                return False
    return True


def _check(row: Row, verify: Callable[[], bool], mismatch: str) -> None:
    try:
        if not verify():
            row.status, row.reason = "FAILED", mismatch
    except Exception as exc:  # reported as data: the point of a bench is to show what broke
        row.status, row.reason = "FAILED", f"{type(exc).__name__}: {exc}"


def _label(spec: str, plan: Plan) -> str:
    """Name models only when several are compared."""
    return Path(spec).name if len(plan.models) > 1 else ""


def reset_peak_memory() -> None:
    """Restart the kernel's peak-RSS count (Linux), so each measurement has its own peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # elsewhere the peak is the process's since it started


def peak_memory_mib() -> float:
    """Peak resident memory since the last reset (Linux), else since the process started."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20 if sys.platform == "darwin" else 1 << 10)  # macOS counts bytes, Linux KiB


def failures(rows: list[Row]) -> list[Row]:
    return [row for row in rows if row.status != "OK"]


def totals(rows: list[Row]) -> list[Row]:
    """Each alphazip setting and classic over all files (binary files count their raw archive)."""
    files = list(dict.fromkeys(row.file for row in rows))
    keyed: dict[tuple, list[Row]] = {}
    for row in rows:
        if row.kind != "limit":
            keyed.setdefault((row.coder, row.model, row.context, row.top_k), []).append(row)
    result = []
    for (coder, model, context, top_k), members in keyed.items():
        if context is None and any(r.context is not None for r in rows if r.coder == coder):
            continue  # a raw-only row: folded into every setting of its back-end below
        covered = {r.file for r in members}
        members += [r for r in rows if r.coder == coder and r.context is None and r.file not in covered]
        if {r.file for r in members} != set(files):
            continue
        modes = {r.mode for r in members}
        result.append(Row("total", coder, members[0].kind, sum(r.original for r in members),
                          sum(r.size for r in members), model=model, context=context, top_k=top_k,
                          mode=modes.pop() if len(modes) == 1 else "mixed",
                          tokens=sum(r.tokens for r in members),
                          pack_seconds=_sum(r.pack_seconds for r in members),
                          unpack_seconds=_sum(r.unpack_seconds for r in members),
                          status="OK" if all(r.status == "OK" for r in members) else "FAILED"))
    return result


def _sum(values) -> float | None:
    values = list(values)
    return None if any(v is None for v in values) else sum(values)


def machine() -> dict:
    """The facts a published result must name: commit, date, CPU, threads and libraries."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    return {"commit": commit or "unknown", "date": datetime.date.today().isoformat(), "python": platform.python_version(),
            "cpu": platform.machine(), "cpu_model": cpu_model(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), **library_versions()}


def cpu_model() -> str:
    """The CPU's name and the vector features that decide its speed (lscpu's facts, from /proc)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    lines = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    name = lines.get("model name\t", "unknown").strip()
    flags = set(lines.get("flags\t\t", "").split())
    features = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8") if f in flags]
    return f"{name} ({', '.join(features) or 'no AVX2'})"
