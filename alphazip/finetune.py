"""Domain models: fine-tune a base model on a folder of files, so that archives of that kind of
data get smaller.

The corpus is split by file into a training and a held-out part, and the held-out part's ideal
code length (bits per byte, the bound ``alphazip bench`` reports as "ideal") is measured before
and after training, so the user sees the gain before archiving with the result. Training is LoRA
(peft) by default, merged into the weights at the end, so a domain model is an ordinary model
folder — weights, tokenizer and the manifest :data:`registry.MANIFEST` — that both inference
paths load like any other.

Every step is a pure function of the step number (data order, learning rate), so a run that is
stopped resumes from its last checkpoint in ``OUT.partial`` and ends with the very weights an
uninterrupted run gives. The finished folder appears under its name in one rename.
"""

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .policy import looks_binary
from .errors import AlphazipError
from .model import LanguageModel
from .model.lm import native_bf16
from .model.registry import MANIFEST
from .schedule import split_chunks

Progress = Callable[[int, int, float], None]  # (steps done, steps in all, latest training loss)
CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class FinetuneSettings:
    """Everything the resulting weights depend on, besides the base model and the data.

    Defaults chosen by measurement on this project's 2-core CPU (docs/finetune.md): LoRA rank 16
    on every linear layer, 8 windows of 256 tokens per step, bf16 products where the CPU has them
    natively (1.6 x fp32's speed there; 8 x slower than fp32 where it emulates them).
    """

    base: str = "smollm2-135m"
    steps: int = 150
    sequence: int = 256  # tokens per training window
    batch: int = 8  # windows per step
    learning_rate: float = 2e-3
    lora_rank: int = 16  # 0: train every weight instead of a LoRA adapter
    dtype: str = "bfloat16" if native_bf16() else "float32"  # of the matrix products; weights stay fp32
    held_out: float = 0.1  # share of files kept out of training to measure the gain on
    eval_context: int = 1024  # chunk length of the held-out measurement, as `pack`'s default context
    seed: int = 0
    checkpoint_every: int = 25

    def __post_init__(self):
        if self.steps < 1 or self.sequence < 2 or self.batch < 1 or self.lora_rank < 0:
            raise ValueError("steps, batch and sequence must be positive and the LoRA rank at least 0")
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype must be float32 or bfloat16, not {self.dtype!r}")
        if not 0 < self.held_out < 1:
            raise ValueError(f"the held-out share must be between 0 and 1, not {self.held_out}")


@dataclass
class Corpus:
    """A domain corpus split by file: relative path -> bytes for each part."""

    train: dict[str, bytes]
    held_out: dict[str, bytes]

    @property
    def fingerprint(self) -> str:
        """sha256 over every file's path, part and content: names the data a model was trained on."""
        digest = hashlib.sha256()
        for part, files in (("train", self.train), ("held-out", self.held_out)):
            for name in sorted(files):
                digest.update(f"{part}\0{name}\0{hashlib.sha256(files[name]).hexdigest()}\n".encode())
        return digest.hexdigest()


def read_corpus(folder: Path, held_out: float) -> Corpus:
    """Every non-empty text file under ``folder``; about ``held_out`` of them (at least one) held out.

    A file's part depends only on its path's hash, so adding files never moves the others.
    """
    if not folder.is_dir():
        raise AlphazipError(f"{folder}: not a folder")
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if data and not looks_binary(data):
            files[path.relative_to(folder).as_posix()] = data
    if len(files) < 2:
        raise AlphazipError(f"{folder}: need at least 2 text files to train on one and measure on another")
    ranked = sorted(files, key=lambda name: hashlib.sha256(name.encode()).digest())
    count = min(len(files) - 1, max(1, round(held_out * len(files))))
    kept = set(ranked[:count])
    return Corpus({n: d for n, d in files.items() if n not in kept}, {n: d for n, d in files.items() if n in kept})


@dataclass
class Result:
    folder: Path
    manifest: dict


def finetune(corpus_folder: Path, out: Path, settings: FinetuneSettings, progress: Progress | None = None,
             log=lambda message: None, force: bool = False, fresh: bool = False,
             stop_after: int | None = None) -> Result | None:
    """Train a domain model from ``corpus_folder`` into ``out``; resumes an interrupted run.

    ``stop_after`` stops (checkpointed) once that many steps are done and returns None, as an
    interruption would: the tests use it to check that resuming gives the same weights.
    """
    if out.exists() and not force:
        raise AlphazipError(f"{out} already exists (use -f to replace it)")
    partial = out.with_name(out.name + ".partial")
    started_wall, started_cpu = time.monotonic(), time.process_time()
    corpus = read_corpus(corpus_folder, settings.held_out)
    base = LanguageModel.load(settings.base, "float32", log)
    base.hf.to(training_device())
    run_id = {"settings": asdict(settings), "base_fingerprint": base.fingerprint, "data": corpus.fingerprint}
    windows = training_windows(base, list(corpus.train.values()), settings.sequence)
    log(f"{len(corpus.train)} training files ({len(windows)} windows of {settings.sequence} tokens), "
        f"{len(corpus.held_out)} held out")
    before = held_out_bits_per_byte(base, corpus.held_out, settings.eval_context)
    log(f"held-out ideal bits per byte before: {before:.4f}")

    trainer = _Trainer(base, settings)
    checkpoint = partial / CHECKPOINT
    if fresh and partial.exists():
        shutil.rmtree(partial)
    if checkpoint.exists():
        state = _load_checkpoint(checkpoint)
        if state["run"] != run_id:
            raise AlphazipError(f"{partial} holds a run with other settings, base model or data; "
                                "remove it or pass --fresh")
        trainer.restore(state)
        log(f"resuming at step {trainer.step} of {settings.steps}")
    partial.mkdir(parents=True, exist_ok=True)

    while trainer.step < settings.steps:
        loss = trainer.train_step(windows)
        if progress:
            progress(trainer.step, settings.steps, loss)
        if trainer.step % settings.checkpoint_every == 0 or trainer.step == settings.steps:
            _save_atomically(trainer.state(run_id), checkpoint)
        if stop_after is not None and trainer.step >= stop_after and trainer.step < settings.steps:
            _save_atomically(trainer.state(run_id), checkpoint)
            return None

    merged = partial / "model"
    if merged.exists():
        shutil.rmtree(merged)
    trainer.save_merged(merged)
    result = LanguageModel.load(str(merged), "float32")
    result.hf.to(training_device())
    after = held_out_bits_per_byte(result, corpus.held_out, settings.eval_context)
    log(f"held-out ideal bits per byte after: {after:.4f}")
    manifest = {
        "format": "alphazip-model/1",
        "name": out.name,
        "fingerprint": result.fingerprint,
        "base": {"name": settings.base, "fingerprint": base.fingerprint},
        "data": {"fingerprint": corpus.fingerprint, "source": str(corpus_folder),
                 "train_files": len(corpus.train), "train_bytes": sum(map(len, corpus.train.values())),
                 "held_out_files": sorted(corpus.held_out),
                 "held_out_bytes": sum(map(len, corpus.held_out.values()))},
        "settings": asdict(settings),
        "held_out_bits_per_byte": {"before": round(before, 5), "after": round(after, 5)},
        "cpu_seconds": round(time.process_time() - started_cpu + trainer.cpu_before, 1),
        "wall_seconds": round(time.monotonic() - started_wall + trainer.wall_before, 1),
        "threads": torch.get_num_threads(),
        "device": training_device(),
    }
    (merged / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    _move_into_place(merged, out)
    shutil.rmtree(partial)
    return Result(out, manifest)


def training_windows(model: LanguageModel, texts: list[bytes], sequence: int) -> list[np.ndarray]:
    """Each file cut into ``sequence``-token windows, as `pack` cuts chunks (each from BOS)."""
    return [chunk for text in texts for chunk in split_chunks(model.tokenizer.encode(text), sequence)]


def _batch_tensors(model: LanguageModel, windows: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ([BOS] + tokens[:-1]) and labels (tokens) for a batch; padding and raw bytes unlabelled."""
    length = max(map(len, windows))
    inputs = np.full((len(windows), length), model.bos_id, dtype=np.int64)
    labels = np.full((len(windows), length), -100, dtype=np.int64)
    for row, window in enumerate(windows):
        inputs[row, 1:len(window)] = window[:-1]
        labels[row, :len(window)] = np.where(window < model.logits_size, window, -100)
    return torch.from_numpy(model.tokenizer.model_inputs(inputs)), torch.from_numpy(labels)


@torch.inference_mode()
def held_out_bits_per_byte(model: LanguageModel, files: dict[str, bytes], context: int, batch: int = 8) -> float:
    """The model's ideal code length of ``files`` (chunked as `pack` chunks them), in bits per byte.

    Raw-byte tokens cost nothing here, as in the bench's "ideal" column: they are escaped.
    """
    windows = training_windows(model, list(files.values()), context)
    bits = 0.0
    model.hf.eval()
    device = next(model.hf.parameters()).device
    for start in range(0, len(windows), batch):
        inputs, labels = (t.to(device) for t in _batch_tensors(model, windows[start:start + batch]))
        logits = model.hf(input_ids=inputs).logits.float()
        losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, reduction="sum")
        bits += float(losses) / math.log(2)
    return bits / sum(map(len, files.values()))


class _Trainer:
    """The model being trained, its optimizer, and the step count; nothing else carries state."""

    def __init__(self, base: LanguageModel, settings: FinetuneSettings):
        self.base, self.settings = base, settings
        torch.manual_seed(settings.seed)  # LoRA's initial A matrices
        if settings.lora_rank:
            from peft import LoraConfig, get_peft_model

            config = LoraConfig(r=settings.lora_rank, lora_alpha=2 * settings.lora_rank, lora_dropout=0.0,
                                target_modules="all-linear")
            self.network = get_peft_model(base.hf, config)
        else:
            self.network = base.hf
        self.parameters = [p for p in self.network.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.parameters, lr=settings.learning_rate, weight_decay=0.0)
        self.step = 0
        self.cpu_before = self.wall_before = 0.0  # time spent in earlier, interrupted sessions
        self._clock = (time.process_time(), time.monotonic())

    def train_step(self, windows: list[np.ndarray]) -> float:
        self.network.train()
        for group in self.optimizer.param_groups:
            group["lr"] = self._learning_rate(self.step)
        batch = _batch_tensors(self.base, [windows[i] for i in self._batch_indices(len(windows))])
        device = training_device()
        inputs, labels = (t.to(device) for t in batch)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=self.settings.dtype == "bfloat16"):
            logits = self.network(input_ids=inputs).logits
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2).float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.parameters, 1.0)
        self.optimizer.step()
        self.step += 1
        return loss.item()

    def _batch_indices(self, count: int) -> list[int]:
        """Windows of step ``self.step``: consecutive slices of one seeded permutation per epoch."""
        size = self.settings.batch
        indices = []
        for position in range(self.step * size, (self.step + 1) * size):
            epoch, offset = divmod(position, count)
            order = torch.randperm(count, generator=torch.Generator().manual_seed(self.settings.seed * 7919 + epoch))
            indices.append(int(order[offset]))
        return indices

    def _learning_rate(self, step: int) -> float:
        """Linear warm-up over the first 10 % of steps, then cosine decay towards zero."""
        total, warm = self.settings.steps, max(1, self.settings.steps // 10)
        if step < warm:
            return self.settings.learning_rate * (step + 1) / warm
        return self.settings.learning_rate * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    def state(self, run_id: dict) -> dict:
        cpu, wall = time.process_time() - self._clock[0], time.monotonic() - self._clock[1]
        return {"run": run_id, "step": self.step, "optimizer": self.optimizer.state_dict(),
                "weights": {n: p.detach().clone() for n, p in self.network.named_parameters() if p.requires_grad},
                "cpu_seconds": self.cpu_before + cpu, "wall_seconds": self.wall_before + wall}

    def restore(self, state: dict) -> None:
        named = dict(self.network.named_parameters())
        with torch.no_grad():
            for name, value in state["weights"].items():
                named[name].copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = state["step"]
        self.cpu_before, self.wall_before = state["cpu_seconds"], state["wall_seconds"]

    def save_merged(self, folder: Path) -> None:
        """Plain weights (the adapter merged in) plus the base's tokenizer: an ordinary model folder."""
        network = self.network.merge_and_unload() if self.settings.lora_rank else self.network
        network.eval()
        network.save_pretrained(folder)
        self.base.tokenizer.hf.save_pretrained(folder)


def training_device() -> str:
    """A CUDA GPU when torch sees one (untested here: no GPU was lent), else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def _load_checkpoint(path: Path) -> dict:
    """A checkpoint of tensors and plain values only: ``weights_only`` refuses pickled code, so a
    file planted in the run folder cannot run anything."""
    import pickle

    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise AlphazipError(f"{path} is not a readable checkpoint ({str(exc).splitlines()[0]}); "
                            "pass --fresh to start over") from None
    if not isinstance(state, dict) or "run" not in state:
        raise AlphazipError(f"{path} is not a checkpoint of alphazip finetune; pass --fresh to start over")
    return state


def _save_atomically(state: dict, path: Path) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, temporary)
    temporary.replace(path)


def _move_into_place(folder: Path, out: Path) -> None:
    """Rename the finished folder to ``out``; an existing ``out`` (forced) is removed only after."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        old = out.with_name(f".{out.name}.replaced.{os.getpid()}")
        out.rename(old)
        folder.rename(out)
        shutil.rmtree(old)
    else:
        folder.rename(out)
