"""Archives on the exact engine decode under any batch and thread count; the guard stops the rest."""

import pytest
import torch
from conftest import TINY
from tiny import tiny_gemma3, tiny_tokenizer
from transformers import LlamaConfig, LlamaForCausalLM
from typer.testing import CliRunner

from alphazip import Compressor, Decompressor, api, container, schedule
from alphazip.cli import app
from alphazip.errors import ModelMismatchError
from alphazip.model import LanguageModel
from alphazip.errors import AlphazipError
from alphazip.model.engine import ENGINE_NAME
from alphazip.model.exact import EXACT_ENGINE_NAME
from alphazip.model.learning import LEARNING_ENGINES
from alphazip.model.gemma import GEMMA3_ENGINE_NAME
from alphazip.model.lm import TRANSFORMERS_ENGINE

TEXT = ("It was the best of times, it was the worst of times, it was the age of wisdom, " * 8).encode()
BASE = {"model": TINY, "context": 48, "mode": "model", "engine": EXACT_ENGINE_NAME}


@pytest.fixture
def dtype(tiny):
    return "float32"  # the exact engine's arithmetic is its own whatever the dtype


def pack(batch: int, dtype: str, **extra) -> bytes:
    return Compressor(**{**BASE, "batch": batch, "dtype": dtype, **extra}).compress(TEXT)


def test_invariant_engine_is_recorded_with_its_probe(dtype):
    header = container.read(pack(3, dtype)).header
    assert header.engine == EXACT_ENGINE_NAME and len(header.probe) == 16  # format 3 keeps 64 bits
    default = container.read(Compressor(model=TINY, context=48, mode="model", dtype=dtype).compress(TEXT)).header
    assert default.engine == EXACT_ENGINE_NAME  # the default for Llama models


@pytest.mark.parametrize("pack_batch", [1, 7])
def test_payload_does_not_depend_on_the_packing_batch(dtype, pack_batch):
    assert container.read(pack(pack_batch, dtype)).frames == container.read(pack(64, dtype)).frames


@pytest.mark.parametrize("threads", [1, 2, 8])
@pytest.mark.parametrize("unpack_batch", [1, 7, 64])
def test_unpacks_under_any_batch_and_thread_count(dtype, monkeypatch, threads, unpack_batch):
    blob = pack(7, dtype)
    monkeypatch.setattr(schedule, "DECODE_BATCH", unpack_batch)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert Decompressor().decompress(blob) == TEXT
    finally:
        torch.set_num_threads(previous)


def test_transformers_engine_still_packs_and_unpacks(dtype):
    blob = pack(3, dtype, engine=TRANSFORMERS_ENGINE)
    assert container.read(blob).header.engine == TRANSFORMERS_ENGINE
    assert Decompressor().decompress(blob) == TEXT


def altered_probe(blob: bytes) -> bytes:
    archive = container.read(blob)
    probe = archive.header.probe
    archive.header.probe = ("0" if probe[0] != "0" else "1") + probe[1:]
    return container.write(archive)


def test_guard_refuses_an_archive_whose_probe_differs():
    with pytest.raises(ModelMismatchError, match="probe fingerprint"):
        Decompressor().decompress(altered_probe(pack(3, "float32")))


def test_cli_guard_writes_nothing(tmp_path):
    archive = tmp_path / "text.az"
    archive.write_bytes(altered_probe(pack(3, "float32")))
    result = CliRunner().invoke(app, ["unpack", str(archive), "-q"])
    assert result.exit_code == 1 and "probe fingerprint" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text.az"]


def test_unknown_engine_is_a_clear_error():
    with pytest.raises(Exception, match="does not run"):
        pack(3, "float32", engine="warp-drive")



@pytest.mark.parametrize("variant", [{}, {"attention_bias": True}, {"mlp_bias": True},
                                     {"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}}])
def test_llama_variants_the_exact_engine_does_not_compute_pack_only_when_asked(variant):
    config = LlamaConfig(vocab_size=len(tiny_tokenizer()), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, **variant)
    model = LanguageModel.from_hf(LlamaForCausalLM(config), tiny_tokenizer(), "variant")
    if variant:  # the float engine still listed: it decodes whatever it packed before the check existed
        assert model.engines == (TRANSFORMERS_ENGINE, ENGINE_NAME)
        with pytest.raises(AlphazipError, match="--engine transformers-static-step"):
            api.engine_for(model, "auto")  # never packed on a float path unless asked by name
        assert api.engine_for(model, TRANSFORMERS_ENGINE) == TRANSFORMERS_ENGINE
    else:
        assert model.engines == (EXACT_ENGINE_NAME, *LEARNING_ENGINES, ENGINE_NAME, TRANSFORMERS_ENGINE)
        assert api.engine_for(model, "auto") == EXACT_ENGINE_NAME


def test_gemma3_runs_on_the_exact_engine():
    model, tokenizer = tiny_gemma3()
    engines = LanguageModel.from_hf(model, tokenizer, "gemma").engines
    assert engines == (EXACT_ENGINE_NAME, GEMMA3_ENGINE_NAME, TRANSFORMERS_ENGINE)
