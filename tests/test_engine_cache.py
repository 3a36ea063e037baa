"""The exact engine's cached quantized weights: the same engine without loading the network."""

import torch
from conftest import TINY

from alphazip.model import LanguageModel, engine_cache
from alphazip.model.exact import EXACT_ENGINE_NAME


def test_a_cached_engine_is_the_same_engine_without_the_network(tmp_path, monkeypatch):
    monkeypatch.setenv("ALPHAZIP_CACHE", str(tmp_path))
    built = LanguageModel.load(TINY)
    probe = built.probe(EXACT_ENGINE_NAME)
    assert built._network is not None and engine_cache.cached_path(built.fingerprint).is_file()
    cached = LanguageModel.load(TINY)
    assert cached.probe(EXACT_ENGINE_NAME) == probe
    assert cached._network is None  # neither loaded nor quantized again
    tokens = torch.tensor([[1, 5, 9, 200, 7, 7, 3]])
    logits = [m._engine(EXACT_ENGINE_NAME).forward(tokens, 0, m._engine(EXACT_ENGINE_NAME).new_cache(1, 7))
              for m in (built, cached)]
    assert torch.equal(*logits)


def test_a_damaged_cache_file_is_built_again(tmp_path, monkeypatch):
    monkeypatch.setenv("ALPHAZIP_CACHE", str(tmp_path))
    probe = LanguageModel.load(TINY).probe(EXACT_ENGINE_NAME)
    path = next((tmp_path / "engines").iterdir())
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x55  # a weight of the last tensor: the file still parses
    path.write_bytes(bytes(data))
    again = LanguageModel.load(TINY)
    assert again.probe(EXACT_ENGINE_NAME) == probe and again._network is not None  # rebuilt from the weights
    path.write_bytes(b"not a safetensors file")
    assert LanguageModel.load(TINY).probe(EXACT_ENGINE_NAME) == probe
