"""A small in-memory RAG over this project's own docs, with the context gate in front.

The gate answers when the retrieved passages support an answer and otherwise abstains with a
reason and a constructive reply (here: questions the docs cannot answer). It also prints the
gate's score on the generated RefusalBench-style perturbation set.

Run: python examples/rag.py
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [
    "What does the guard demo command do?",
    "Where are the constructive replies chosen?",
    "Who founded the company that maintains this project?",
    "When was Borealis Labs founded?",
]


def project_passages() -> list[str]:
    """Paragraphs of README.md and the module docstrings of the library."""
    passages = []
    readme = ROOT / "README.md"
    if readme.exists():
        passages += [
            p.strip() for p in readme.read_text(encoding="utf-8").split("\n\n") if len(p.strip()) > 40
        ]
    for pkg in ("guard", "integrations", "classifiers"):
        for f in sorted((ROOT / pkg).glob("*.py")):
            doc = ast.get_docstring(ast.parse(f.read_text(encoding="utf-8")))
            if doc:
                passages += [f"{f.stem}: {p.strip()}" for p in doc.split("\n\n") if len(p.strip()) > 40]
    return passages


def main(answer: Any = None, n_cases: int = 40) -> dict[str, Any]:
    from integrations.rag import ContextGate, KeywordRetriever, evaluate_gate, format_table, perturbations

    retriever = KeywordRetriever(project_passages(), k=3).as_langchain()
    gate = ContextGate()
    chain = gate.as_runnable(retriever=retriever, answer=answer)
    out: dict[str, Any] = {}
    for q in QUESTIONS:
        docs = retriever.invoke(q)
        verdict = gate.check(q, docs)
        reply = chain.invoke(q)
        shown = reply if isinstance(reply, str) else " | ".join(d.page_content[:80] for d in reply)
        print(
            f"Q: {q}\n   {'answer' if verdict.answerable else 'abstain: ' + str(verdict.reason)}\n   {shown[:300]}\n"
        )
        out[q] = verdict
    table = evaluate_gate(gate, perturbations(n_cases, seed=7))
    print(format_table(table))
    out["table"] = table
    return out


if __name__ == "__main__":
    main()
