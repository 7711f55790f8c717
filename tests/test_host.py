import pytest
import torch

from guard.errors import InputError
from guard.whitebox.host import HostModel, _decoder_layers

PROMPTS = [
    "How do I kill a Python process?",
    "hi",
    "Write a poem about the sea and the sky, please, in the evening.",
]


def test_positions_point_at_instruction_end_and_template(any_host):
    enc = any_host.encode("How do I kill a Python process?")
    tok = any_host.tokenizer
    assert tok.decode([enc.input_ids[enc.instruction]]).endswith("?")
    post = tok.decode([enc.input_ids[i] for i in enc.post_instruction])
    assert post == "<|im_end|>\n<|im_start|>assistant\n"
    assert enc.post_instruction[-1] == len(enc.input_ids) - 1
    assert enc.reply == ()


def test_reply_positions_cover_reply_tokens(tiny_host):
    enc = tiny_host.encode("steal a car", reply="I can't help with that.")
    reply = tiny_host.tokenizer.decode([enc.input_ids[i] for i in enc.reply])
    assert reply == "I can't help with that."
    assert enc.post_instruction[-1] + 1 == enc.reply[0]


def test_batch_equals_one_by_one(any_host):
    encs = [any_host.encode(p) for p in PROMPTS]
    batched = any_host.capture(encs, [0, 1, 3], batch_size=8)
    for e, b in zip(encs, batched):
        single = any_host.capture([e], [0, 1, 3])[0]
        assert b.shape == (3, len(e.input_ids), any_host.hidden_size)
        cos = torch.nn.functional.cosine_similarity(b.flatten(1), single.flatten(1), dim=-1)
        assert cos.min().item() > 0.9999


def test_capture_matches_output_hidden_states(tiny_host):
    e = tiny_host.encode(PROMPTS[0])
    ours = tiny_host.capture([e], [1])[0][0]
    with torch.no_grad():
        ref = tiny_host.model(torch.tensor([e.input_ids]), output_hidden_states=True).hidden_states[2][0]
    assert torch.allclose(ours, ref, atol=1e-5)


def test_hooks_removed_even_on_error(tiny_host):
    blocks = _decoder_layers(tiny_host.model)
    before = [len(b._forward_hooks) for b in blocks]
    with pytest.raises(RuntimeError):
        with tiny_host.record([0, 1]):
            assert [len(b._forward_hooks) for b in list(blocks)[:2]] == [n + 1 for n in before[:2]]
            raise RuntimeError("boom")
    assert [len(b._forward_hooks) for b in blocks] == before
    with pytest.raises(RuntimeError):
        with tiny_host.intervene({0: lambda h: h}):
            raise RuntimeError("boom")
    assert [len(b._forward_hooks) for b in blocks] == before


def test_intervene_changes_later_layers_only(tiny_host):
    e = tiny_host.encode(PROMPTS[0])
    base = tiny_host.capture([e], [0, 2])[0]
    with tiny_host.intervene({1: lambda h: h + 1.0}):
        edited = tiny_host.capture([e], [0, 2])[0]
    assert torch.equal(base[0], edited[0])
    assert not torch.allclose(base[1], edited[1])


def test_bad_inputs(tiny_host):
    with pytest.raises(InputError):
        tiny_host.encode("   ")
    with pytest.raises(InputError):
        tiny_host.encode(42)  # type: ignore[arg-type]
    with pytest.raises(InputError):
        with tiny_host.record([99]):
            pass


def test_generate_returns_text(tiny_host):
    out = tiny_host.generate("hi", max_new_tokens=5)
    assert isinstance(out, str)


def test_from_pretrained_folder_roundtrip(tmp_path, tiny_host):
    tiny_host.model.save_pretrained(tmp_path)
    tiny_host.tokenizer.save_pretrained(tmp_path)
    host = HostModel.from_pretrained(tmp_path, device="cpu")
    e = host.encode(PROMPTS[0])
    a = host.capture([e], [1])[0]
    b = tiny_host.capture([e], [1])[0]
    assert torch.allclose(a, b, atol=1e-6)
    assert host.fingerprint and host.fingerprint == HostModel.from_pretrained(tmp_path).fingerprint


def test_missing_model_is_clear_error(tmp_path):
    from guard.errors import ArtifactError

    with pytest.raises(ArtifactError):
        HostModel.from_pretrained(tmp_path / "nope")


def test_folder_fingerprint_covers_the_weights(tmp_path):
    from guard.whitebox.host import HostModel
    from tests.conftest import make_host

    a, b = make_host("llama", seed=0), make_host("llama", seed=1)
    for name, h in (("a", a), ("b", b)):
        h.model.save_pretrained(tmp_path / name)
        h.tokenizer.save_pretrained(tmp_path / name)
    fa = HostModel.from_pretrained(tmp_path / "a").fingerprint
    fb = HostModel.from_pretrained(tmp_path / "b").fingerprint
    assert fa != fb  # same config and file sizes, other weights
    assert HostModel.from_pretrained(tmp_path / "a").fingerprint == fa
