"""Engine figures in one run: pack and unpack with default settings against transformers' full
forward pass on the same chunks (fp32 and bf16), the archive and the ideal code length against
those from transformers' fp32 logits, and optionally the float engine and the lockstep path.

    python scripts/measure_engine.py ../shared/corpus/alice29.txt --bytes 152089 --float-engine
    python scripts/measure_engine.py ../shared/corpus/alice29.txt --bytes 20000 --model gemma3-270m --lockstep

The input is the files joined, cut to ``--bytes``. Transformers' bf16 full forward is timed on
the first ``--bf16-chunks`` full chunks only: without native bf16 products (AVX2) it is slow.
"""

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from alphazip import Compressor, Decompressor, ModelMismatchError, api, container, schedule
from alphazip.bench import machine, peak_memory_mib, reset_peak_memory
from alphazip.model.lm import TRANSFORMERS_ENGINE
from alphazip.ranks import ranks_of
from alphazip.schedule import Scores, _ideal_bits, score_chunks


def timed(work):
    """(result, seconds, peak RSS MiB) of ``work()``."""
    reset_peak_memory()
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started, peak_memory_mib()


@torch.inference_mode()
def transformers_full_pass(model, chunks: list[np.ndarray], batch: int = 4) -> tuple[Scores, float]:
    """Ranks and ideal bits of every chunk from transformers' full forward pass (no cache), and its seconds."""
    ranks, bits, seconds = [], [], 0.0
    for start in range(0, len(chunks), batch):
        group = chunks[start:start + batch]
        width = max(map(len, group))
        inputs = np.full((len(group), width), model.bos_id, dtype=np.int64)
        for row, chunk in enumerate(group):  # the start token, then every token but the last
            inputs[row, 1:len(chunk)] = model.tokenizer.model_inputs(chunk[:-1])
        began = time.perf_counter()
        logits = model.hf(input_ids=torch.from_numpy(inputs)).logits.float()
        seconds += time.perf_counter() - began
        for row, chunk in enumerate(group):
            target = torch.from_numpy(chunk)
            ranks.append(ranks_of(logits[row, :len(chunk)], target).numpy())
            bits.append(float(_ideal_bits(logits[row, :len(chunk)], target).sum()))
    return Scores(ranks, bits), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", type=Path, nargs="+")
    parser.add_argument("--bytes", type=int, default=200_000, help="bench the first BYTES of the joined files")
    parser.add_argument("--bf16-chunks", type=int, default=4, help="full chunks timed on transformers bf16")
    parser.add_argument("--model", default=api.Settings.model, help="model to measure (default: the default model)")
    parser.add_argument("--lockstep", action="store_true", help="also pack and unpack on the transformers lockstep path")
    parser.add_argument("--float-engine", action="store_true", help="also pack and unpack on the float engine it replaces")
    args = parser.parse_args()
    data = b"".join(path.read_bytes() for path in args.files)[: args.bytes]
    settings = api.Settings(model=args.model)
    model = api.MODELS.get(settings.model, settings.dtype)
    packer = Compressor(settings)
    frame_chunks = [packer.chunks_of(piece, model) for piece in packer.frames_of(data)]
    chunks = [chunk for frame in frame_chunks for chunk in frame]
    context = max(map(len, chunks))
    tokens = sum(map(len, chunks))
    print(f"{len(data):,} bytes, {len(frame_chunks)} frames, {tokens:,} tokens, {len(chunks)} chunks of {context} at most; "
          f"default settings: {settings.dtype}, batch {settings.batch}, engine {api.engine_for(model, 'auto')}, "
          f"unpack batch {schedule.DECODE_BATCH}; {machine()}")

    engine = api.engine_for(model, "auto")
    # Packing is scoring plus coding: timed as the two, so that the scores (ideal bits) are kept.
    ours_scores, score_seconds, score_rss = timed(
        lambda: [score_chunks(model, frame, settings.batch, engine=engine) for frame in frame_chunks])
    blob, code_seconds, code_rss = timed(lambda: container.write(packer.pack(data, scores=ours_scores)))
    pack_seconds, pack_rss = score_seconds + code_seconds, max(score_rss, code_rss)
    restored, unpack_seconds, unpack_rss = timed(lambda: Decompressor().decompress(blob))
    assert restored == data, "round trip failed"
    pack, unpack = tokens / pack_seconds, tokens / unpack_seconds
    print(f"alphazip pack:   {pack:6.0f} tok/s  ({pack_seconds:.0f} s, peak RSS {pack_rss:,.0f} MiB)")
    print(f"alphazip unpack: {unpack:6.0f} tok/s  ({unpack_seconds:.0f} s, peak RSS {unpack_rss:,.0f} MiB), bytes identical")

    passes = [transformers_full_pass(model, frame) for frame in frame_chunks]
    scores = [frame_scores for frame_scores, _ in passes]
    fp32 = tokens / sum(seconds for _, seconds in passes)
    bf16_model = api.MODELS.get(settings.model, "bfloat16")
    sample = [chunk for chunk in chunks if len(chunk) == context][: args.bf16_chunks] or chunks[:1]
    _, bf16_seconds = transformers_full_pass(bf16_model, sample)
    bf16 = sum(map(len, sample)) / bf16_seconds
    for name, reference in (("fp32", fp32), ("bf16", bf16)):
        print(f"transformers full forward {name}: {reference:6.0f} tok/s -> pack {pack / reference:.2f} x, "
              f"unpack {unpack / reference:.2f} x")

    ours = container.read(blob)
    theirs = container.write(packer.pack(data, scores=scores))
    print(f"--backend {settings.backend}: {len(blob):,} B ({8 * len(blob) / len(data):.4f} bpb, {ours.mode} mode) vs "
          f"{len(theirs):,} B ({8 * len(theirs) / len(data):.4f} bpb) from transformers' fp32 logits: "
          f"{100 * (len(blob) / len(theirs) - 1):+.2f} %")
    ideal, reference_ideal = (sum(sum(frame.bits) for frame in scores_) for scores_ in (ours_scores, scores))
    print(f"ideal code length: {ideal / 8:,.0f} B ({ideal / len(data):.4f} bpb) vs transformers fp32 "
          f"{reference_ideal / 8:,.0f} B ({reference_ideal / len(data):.4f} bpb): {100 * (ideal / reference_ideal - 1):+.2f} %")
    print(f"guard: {refusal_of_altered_probe(blob)}")
    if args.float_engine:
        float_engine = model.engines[1]  # the float engine the exact one replaced, kept for old archives
        floater = Compressor(dataclasses.replace(settings, engine=float_engine))
        float_blob, float_pack_seconds, _ = timed(lambda: floater.compress(data))
        try:
            float_restored, float_unpack_seconds, _ = timed(lambda: Decompressor().decompress(float_blob))
            outcome = f"unpack {tokens / float_unpack_seconds:6.0f} tok/s, bytes identical: {float_restored == data}"
        except ModelMismatchError as error:
            outcome = f"unpack FAILED: {error}"
        except Exception as error:  # noqa: BLE001 - a chunk CRC failure is the measured outcome here
            outcome = f"unpack FAILED: {error}"
        print(f"float engine ({float_engine}): pack {tokens / float_pack_seconds:6.0f} tok/s, {outcome}, "
              f"{len(float_blob):,} B")
    if args.lockstep:
        stepper = Compressor(dataclasses.replace(settings, engine=TRANSFORMERS_ENGINE))
        slow_blob, slow_pack_seconds, _ = timed(lambda: stepper.compress(data))
        slow_restored, slow_unpack_seconds, _ = timed(lambda: Decompressor().decompress(slow_blob))
        assert slow_restored == data, "round trip failed on the lockstep path"
        print(f"transformers lockstep ({TRANSFORMERS_ENGINE}): pack {tokens / slow_pack_seconds:6.0f} tok/s, "
              f"unpack {tokens / slow_unpack_seconds:6.0f} tok/s, {len(slow_blob):,} B -> engine pack "
              f"{slow_pack_seconds / pack_seconds:.2f} x, unpack {slow_unpack_seconds / unpack_seconds:.2f} x as fast")


def refusal_of_altered_probe(blob: bytes) -> str:
    """What unpacking says when the archive's probe fingerprint is altered by one digit."""
    archive = container.read(blob)
    if archive.header.mode != "model":
        return "not checked (raw-mode archive)"
    probe = archive.header.probe
    archive.header.probe = ("0" if probe[0] != "0" else "1") + probe[1:]
    try:
        Decompressor().decompress(container.write(archive))
    except ModelMismatchError as error:
        return f"refused: {error}"
    return "NOT REFUSED"


if __name__ == "__main__":
    main()
