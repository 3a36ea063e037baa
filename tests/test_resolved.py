"""A model folder read through transformers once, then from its record: the same model."""

import json
import shutil

from conftest import TINY_FOLDER

from alphazip.model import LanguageModel, resolved
from alphazip.model.lm import LOGIT_FIELDS

TEXT = "Plain text, <|endoftext|> and <s> written out, ünïcode €, \x00 and\ttabs\n\n  spaces".encode()


def test_a_recorded_folder_loads_as_transformers_read_it(tmp_path, monkeypatch):
    monkeypatch.setenv("ALPHAZIP_CACHE", str(tmp_path))
    first = LanguageModel.load(str(TINY_FOLDER))
    assert type(first.config).__name__ != "RecordedConfig" and resolved.record_path(TINY_FOLDER).is_file()
    again = LanguageModel.load(str(TINY_FOLDER))
    assert isinstance(again.config, resolved.RecordedConfig)
    assert again.fingerprints == first.fingerprints and again.bos_id == first.bos_id
    assert (again.tokenizer.encode(TEXT) == first.tokenizer.encode(TEXT)).all()
    assert again.tokenizer.decode(again.tokenizer.encode(TEXT)) == TEXT


def test_an_edited_config_is_read_through_transformers_again(tmp_path, monkeypatch):
    monkeypatch.setenv("ALPHAZIP_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "model"
    shutil.copytree(TINY_FOLDER, folder)
    before = LanguageModel.load(str(folder)).fingerprint
    config = json.loads((folder / "config.json").read_text())
    config["rms_norm_eps"] = config.get("rms_norm_eps", 1e-6) * 2
    (folder / "config.json").write_text(json.dumps(config))
    edited = LanguageModel.load(str(folder))
    assert type(edited.config).__name__ != "RecordedConfig" and edited.fingerprint != before


def test_a_damaged_record_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("ALPHAZIP_CACHE", str(tmp_path))
    fingerprint = LanguageModel.load(str(TINY_FOLDER)).fingerprint
    resolved.record_path(TINY_FOLDER).write_text('{"config": {"model_type": "llama"}, "tokenizer_file": true}')
    assert resolved.load(TINY_FOLDER, LOGIT_FIELDS)[0].__class__ is not resolved.RecordedConfig
    assert LanguageModel.load(str(TINY_FOLDER)).fingerprint == fingerprint
