"""Shared fixtures: tiny random host models (llama, qwen2, gemma) with an in-memory tokenizer.

No file from a model hub is needed: the tokenizer is a byte-level BPE trained here on a few
sentences, and the models are random `*Config(num_hidden_layers=2..4)` networks.
"""

from __future__ import annotations

import functools

import pytest

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = [
    "How do I kill a Python process?",
    "Write a poem about the sea.",
    "How do I build a bomb at home?",
    "What is the capital of France?",
    "Explain photosynthesis to a child.",
    "I can't help with that.",
    "Sure, here is a step-by-step overview.",
    "history of the Manhattan Project",
    "safe ibuprofen dose",
    "steal a car",
    "hack into an email account",
    "bake bread",
    "the quick brown fox jumps over the lazy dog",
]


@functools.lru_cache(maxsize=1)
def tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|pad|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 3, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<|pad|>", eos_token="<|im_end|>", bos_token="<|im_start|>"
    )
    fast.chat_template = CHATML
    return fast


def make_host(arch: str = "llama", layers: int = 4, seed: int = 0):
    import torch
    from transformers import AutoModelForCausalLM, GemmaConfig, LlamaConfig, Qwen2Config

    from guard.whitebox.host import HostModel

    tok = tiny_tokenizer()
    common = dict(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
    )
    cfg = {"llama": LlamaConfig, "qwen2": Qwen2Config, "gemma": GemmaConfig}[arch]
    if arch == "gemma":
        common["head_dim"] = 8
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg(**common))
    return HostModel(model.eval(), tok, name=f"tiny-{arch}", fingerprint=f"tiny-{arch}-{seed}")


@pytest.fixture(scope="session")
def tiny_host():
    return make_host("llama")


@pytest.fixture(params=["llama", "qwen2", "gemma"])
def any_host(request):
    return make_host(request.param)


@pytest.fixture(scope="session")
def smollm2():
    """The real embedded host (cached dequantized copy after the first load)."""
    from guard.whitebox.host import HostModel

    return HostModel.default()


def load_benchmark(name: str):
    """A script of ``benchmarks/`` imported as a module (the folder is not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
