"""The project's corpora share no prompt with the sets that judge the guard.

The blind set (`benchmarks/blind/`) and the external validation sets (`../shared/data/external/`,
when present) are scored, never fitted on; a fitting row equal or nearly equal to one of them
would make their figures a test on the fitting data. Near: the same words up to 20 % (Jaccard of
the word sets >= 0.8, for prompts of 6+ words).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPORA = sorted((ROOT / "guard" / "resources" / "corpus").glob("*.jsonl")) + [
    ROOT / "guard" / "resources" / "benign_corpus.jsonl",
    ROOT / "guard" / "resources" / "noncompliance.jsonl",
]
JUDGES = [
    ROOT / "benchmarks" / "blind" / "blind_set.jsonl",
    *sorted((ROOT.parent / "shared" / "data" / "external").glob("*.jsonl")),
]


def _words(text: str) -> frozenset[str]:
    return frozenset(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _prompts(path: Path) -> list[str]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            p = json.loads(line).get("prompt")
            if isinstance(p, str):
                out.append(p)
    return out


@pytest.fixture(scope="module")
def judged() -> tuple[set[frozenset[str]], dict[str, list[frozenset[str]]]]:
    sets = [_words(p) for path in JUDGES if path.is_file() for p in _prompts(path)]
    index: dict[str, list[frozenset[str]]] = defaultdict(list)
    for s in sets:
        if len(s) >= 6:
            for w in s:
                index[w].append(s)
    return set(sets), index


@pytest.mark.parametrize("corpus", CORPORA, ids=lambda p: p.name)
def test_no_fitting_prompt_equals_or_nearly_equals_a_judged_one(corpus, judged):
    exact, index = judged
    hits = []
    for prompt in _prompts(corpus):
        a = _words(prompt)
        if a in exact:
            hits.append(prompt)
            continue
        if len(a) < 6:
            continue
        # a near match shares all but a fifth of the words: it holds one of the rarest few
        rare = sorted(a, key=lambda w: len(index.get(w, ())))[: len(a) // 4 + 2]
        if any(len(a & b) / len(a | b) >= 0.8 for w in rare for b in index.get(w, ())):
            hits.append(prompt)
    assert not hits, (
        f"{corpus.name}: {len(hits)} prompt(s) overlap the blind or external sets, e.g. {hits[:3]}"
    )
