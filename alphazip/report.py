"""What an archive and this setup are, in words: ``alphazip info`` and the errors that compare setups."""

from importlib import metadata

import torch

from . import container
from .container import Header


def library_versions() -> dict:
    """Versions of the libraries whose kernels shape the logits, and the CPU's vector unit.

    torch picks other kernels (another summation order) on AVX2 than on AVX-512 CPUs.
    """
    # transformers' version from its metadata: importing it would cost every pack a second.
    return {"torch": torch.__version__, "transformers": metadata.version("transformers"),
            "cpu": torch.backends.cpu.get_cpu_capability()}


def setup_difference(header: Header) -> str:
    """" (packed on another setup: ...)" naming what differs from the archive's record, or ""."""
    here = library_versions()
    changed = [f"{name} {header.versions[name]} -> {here[name]}" for name in here  # older archives lack "cpu"
               if name in header.versions and header.versions[name] != here[name]]
    return f" (packed on another setup: {', '.join(changed)})" if changed else ""


def describe(blob: bytes) -> dict:
    """What an archive holds, without decoding it: settings, chunks, sizes and ratio."""
    archive = container.read(blob)
    header = archive.header
    size = archive.original_size
    frames = archive.frames
    facts = {"format": f"alphazip v{blob[len(container.MAGIC)]}", "mode": archive.mode, "backend": header.backend,
             "frames": len(frames)}
    if archive.mode != "raw":
        facts |= {"model": header.model, "fingerprint": header.model_fingerprint, "dtype": header.dtype,
                  "engine": header.engine, "probe": header.probe[:16] or "-", "top_k": header.top_k,
                  # 0 asks for the default, which follows each frame's size: show the longest chunk
                  "context": header.context or max((n for f in frames for n in f.chunk_tokens), default=0),
                  "chunks": sum(len(f.chunk_tokens) for f in frames),
                  "tokens": sum(sum(f.chunk_tokens) for f in frames)}
        if header.threads or header.versions:  # what format 2 recorded; format 3 only where they decide bits
            facts |= {"batch": header.batch, "threads": header.threads,
                      "versions": ", ".join(f"{k} {v}" for k, v in sorted(header.versions.items())) or "-"}
    facts |= {"original bytes": size, "archive bytes": len(blob),
              "ratio": f"{len(blob) / size:.4f}" if size else "-",
              "bits per byte": f"{8 * len(blob) / size:.4f}" if size else "-",
              "check": f"sha256 {archive.original_sha256.hex()}" if archive.original_sha256 else
                       f"crc32 {archive.frames[0].crc:08x}" if archive.frames else "-"}
    return facts
