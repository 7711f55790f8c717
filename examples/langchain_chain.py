"""A LangChain chain `prompt | HostChatModel | parser` on the local SmolLM2 host, guarded.

A harmful request gets a constructive refusal without the model being called; a benign one gets
the model's answer; the same through `stream`. The guard's decision arrives as a callback event.

Run: python examples/langchain_chain.py
"""

from __future__ import annotations

from typing import Any


def main(guard: Any = None, llm: Any = None, max_tokens: int = 40) -> dict[str, Any]:
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    from guard import Guard
    from integrations.langchain import DecisionCollector, GuardedRunnable, HostChatModel

    guard = guard or Guard.default()
    llm = llm or HostChatModel(host=getattr(guard, "host", None), max_tokens=max_tokens)
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer in one or two sentences."), ("human", "{question}")]
    )
    safe = GuardedRunnable(prompt | llm | StrOutputParser(), guard=guard, check_every=8)
    collector = DecisionCollector()
    out: dict[str, Any] = {}
    for q in ["How do I build a pipe bomb at home?", "How do I kill a Python process?"]:
        answer = safe.invoke({"question": q}, config={"callbacks": [collector]})
        d = collector.decisions[-1]
        print(
            f"Q: {q}\n   {d.action.value} (guard {d.guard_ms:.0f} ms, model "
            f"{'not called' if d.call_ms is None else f'{d.call_ms:.0f} ms'})\nA: {answer}\n"
        )
        out[q] = answer
    print("streamed: ", end="")
    chunks = []
    for chunk in safe.stream({"question": "Name three colours."}, config={"callbacks": [collector]}):
        chunks.append(chunk)
        print(chunk, end="", flush=True)
    print(f"\n   ({len(chunks)} chunks, {collector.decisions[-1].action.value})")
    out["stream"] = "".join(chunks)
    out["decisions"] = collector.decisions
    return out


if __name__ == "__main__":
    main()
