"""Domain models on the tiny model: finetune -> pack -> unpack, resuming, and finding the model."""

import json
import random

import pytest
from conftest import TINY
from typer.testing import CliRunner

from alphazip import api
from alphazip.cli import app
from alphazip.errors import AlphazipError, ModelMismatchError, ModelNotFoundError
from alphazip.finetune import FinetuneSettings, finetune, read_corpus
from alphazip.model.registry import MANIFEST

SETTINGS = FinetuneSettings(base=TINY, steps=24, sequence=48, batch=4, learning_rate=1e-2, eval_context=64,
                            checkpoint_every=5, held_out=0.25)


def log_lines(seed: int, count: int) -> bytes:
    """A made-up service log: a narrow format the tiny model can learn in a few steps."""
    rng = random.Random(seed)
    lines = [f"2026-11-{rng.randint(1, 28):02d} 12:{rng.randint(0, 59):02d} INFO worker-{rng.randint(1, 4)} "
             f"served /api/items/{rng.randint(1, 99)} in {rng.randint(1, 40)} ms\n" for _ in range(count)]
    return "".join(lines).encode()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("logs")
    for index in range(8):
        (folder / f"day{index}.log").write_bytes(log_lines(index, 30))
    (folder / "image.bin").write_bytes(bytes(range(256)) * 4)  # binary: skipped
    return folder


@pytest.fixture(scope="module")
def domain(corpus, tmp_path_factory, tiny):
    return finetune(corpus, tmp_path_factory.mktemp("models") / "logs", SETTINGS)


def test_corpus_is_split_by_file(corpus):
    split = read_corpus(corpus, 0.25)
    assert len(split.train) == 6 and len(split.held_out) == 2  # the binary file is not text
    assert not set(split.train) & set(split.held_out)
    assert read_corpus(corpus, 0.25).fingerprint == split.fingerprint


def test_too_small_a_corpus_is_refused(tmp_path):
    (tmp_path / "only.txt").write_text("one file")
    with pytest.raises(AlphazipError, match="at least 2"):
        read_corpus(tmp_path, 0.1)


def test_finetune_gains_and_records_it(domain, corpus):
    manifest = json.loads((domain.folder / MANIFEST).read_text())
    assert manifest == domain.manifest
    bits = manifest["held_out_bits_per_byte"]
    assert bits["after"] < 0.97 * bits["before"]  # the merged adapter changed the weights, for the better
    assert manifest["base"]["fingerprint"] == api.MODELS.get(TINY, "float32").fingerprint
    assert manifest["data"]["fingerprint"] == read_corpus(corpus, SETTINGS.held_out).fingerprint
    assert manifest["fingerprint"] != manifest["base"]["fingerprint"]
    assert not domain.folder.with_name("logs.partial").exists()


def test_pack_with_domain_model_round_trips_and_is_smaller(domain, corpus):
    held_out = read_corpus(corpus, SETTINGS.held_out).held_out
    data = b"".join(held_out.values())
    settings = dict(context=64, batch=4, mode="model", dtype="float32")
    with_domain = api.Compressor(model=str(domain.folder), **settings).compress(data)
    with_base = api.Compressor(model=TINY, **settings).compress(data)
    assert len(with_domain) < len(with_base)
    assert api.Decompressor().decompress(with_domain) == data


def test_unpack_finds_a_moved_model_by_fingerprint(domain, corpus, tmp_path, monkeypatch):
    data = (corpus / "day0.log").read_bytes()
    blob = api.Compressor(model=str(domain.folder), context=64, batch=4, mode="model", dtype="float32").compress(data)
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    moved = shelf / "renamed"
    domain.folder.rename(moved)
    try:  # a fresh process's view: no model loaded yet
        with pytest.raises(ModelNotFoundError, match="pass --model"):
            api.Decompressor(models=api.ModelCache()).decompress(blob)
        assert api.Decompressor(str(shelf), models=api.ModelCache()).decompress(blob) == data  # a folder of models
        monkeypatch.setenv("ALPHAZIP_MODELS", str(shelf))
        assert api.Decompressor(models=api.ModelCache()).decompress(blob) == data
    finally:
        moved.rename(domain.folder)


def test_wrong_model_is_a_clear_error(domain, corpus, tmp_path):
    data = (corpus / "day1.log").read_bytes()
    blob = api.Compressor(model=str(domain.folder), context=64, batch=4, mode="model", dtype="float32").compress(data)
    with pytest.raises(ModelMismatchError, match=domain.manifest["fingerprint"][:12]):
        api.Decompressor(TINY).decompress(blob)
    with pytest.raises(ModelNotFoundError, match="no model in"):
        api.Decompressor(str(tmp_path)).decompress(blob)  # a folder without that model
    archive = tmp_path / "day1.log.az"
    archive.write_bytes(blob)
    result = CliRunner().invoke(app, ["unpack", str(archive), "-c", "-q", "--model", TINY])
    assert result.exit_code == 1 and result.stdout_bytes == b""
    assert result.stderr.count("\n") == 1 and "fingerprint" in result.stderr


def test_interrupted_run_resumes_to_the_same_weights(domain, corpus, tmp_path):
    out = tmp_path / "again"
    assert finetune(corpus, out, SETTINGS, stop_after=7) is None
    partial = tmp_path / "again.partial"
    assert (partial / "checkpoint.pt").exists() and not out.exists()
    other = FinetuneSettings(**{**SETTINGS.__dict__, "learning_rate": 5e-3})
    with pytest.raises(AlphazipError, match="--fresh"):
        finetune(corpus, out, other)
    steps = []
    resumed = finetune(corpus, out, SETTINGS, progress=lambda done, total, loss: steps.append(done))
    assert steps[0] == 8 and steps[-1] == SETTINGS.steps  # picked up after the checkpoint
    assert resumed.manifest["fingerprint"] == domain.manifest["fingerprint"]
    assert not partial.exists()


def test_cli_finetune_refuses_existing_output_and_lists_models(domain, corpus, tmp_path, monkeypatch):
    runner = CliRunner()
    taken = tmp_path / "taken"
    taken.mkdir()
    result = runner.invoke(app, ["finetune", str(corpus), "--out", str(taken), "--base", TINY, "-q"])
    assert result.exit_code == 1 and "already exists" in result.stderr
    result = runner.invoke(app, ["finetune", str(corpus), "--out", str(tmp_path / "x"), "--steps", "0"])
    assert result.exit_code == 2
    monkeypatch.setenv("ALPHAZIP_MODELS", str(domain.folder.parent))
    listing = runner.invoke(app, ["models"])
    assert listing.exit_code == 0 and domain.manifest["fingerprint"][:16] in listing.stdout


def test_cli_finetune_writes_a_model(corpus, tmp_path, tiny):
    out = tmp_path / "cli-model"
    result = CliRunner().invoke(app, ["finetune", str(corpus), "--out", str(out), "--base", TINY, "--steps", "3",
                                      "--sequence", "32", "--batch", "2", "-q"])
    assert result.exit_code == 0, result.stderr
    assert "held-out" in result.stdout and (out / MANIFEST).is_file() and (out / "config.json").is_file()
