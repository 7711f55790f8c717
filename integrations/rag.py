"""A context gate for retrieval pipelines, and RefusalBench-style perturbed test cases.

`ContextGate` reads a question and the retrieved documents and decides whether the documents
can support an answer. When they cannot, it abstains with a reason and a constructive reply:

- `irrelevant_context`: the documents are about something else;
- `missing_information`: they are about the right thing but do not contain the answer;
- `contradictory_documents`: they give conflicting answers;
- `false_premise`: the question assumes something the documents contradict;
- `ambiguous_question`: the question could mean several things the documents distinguish.

The gate is lexical and fast (no model call): it finds the expected answer type from the
question (when -> year, how many -> number, who/where -> a name, else any statement), the
sentences about the question's subject that share its content words, and the candidate answers
they hold. It can also run a `Guard` on the documents (harmful or injected content).

`perturbations` builds test cases in the spirit of RefusalBench (Muhamed et al.): intact cases
and, for each flaw, low/medium/high intensity versions (remove the answer span, insert a
contradiction, swap entities, add a false premise, make the question ambiguous).
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from guard.decision import Action, Decision, Evidence

Reason = Literal[
    "irrelevant_context",
    "missing_information",
    "contradictory_documents",
    "false_premise",
    "ambiguous_question",
]
REASONS: tuple[str, ...] = (
    "irrelevant_context",
    "missing_information",
    "contradictory_documents",
    "false_premise",
    "ambiguous_question",
)

_STOP = set(
    """a an the of in on at to for from by with and or but is are was were be been being do does did
has have had what which who whom whose when where why how many much it its this that these those as into
about than then there their they them he she his her i you your we our can could should would will may might
must not no yes so if any some all per after before during over under up down out one also only just very
please tell me give explain describe""".split()
)
_PRONOUN_START = {
    "it",
    "its",
    "they",
    "their",
    "the",
    "this",
    "that",
    "these",
    "he",
    "she",
    "his",
    "her",
    "in",
    "since",
    "after",
    "today",
    "there",
    "a",
    "an",
    "over",
    "later",
}
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'\-]*")
_YEAR = re.compile(r"\b(1[0-9]{3}|20[0-9]{2})\b")
_NUMBER = re.compile(r"\b\d[\d,]*(?:\.\d+)?\b")
_SENT = re.compile(r"(?<=[.!?])\s+|\n{2,}")
_CAPSPAN = re.compile(r"\b[A-Z][a-zA-Z0-9\-]*(?:\s+(?:of|de|von|van|and)?\s*[A-Z][a-zA-Z0-9\-]*)*")


def _stem(w: str) -> str:
    w = w.lower().strip("'")
    for suffix in ("ing", "ed", "es", "s"):
        if len(w) > len(suffix) + 3 and w.endswith(suffix):
            return w[: -len(suffix)]
    return w


def _content(text: str) -> set[str]:
    return {_stem(w) for w in _WORD.findall(text) if w.lower() not in _STOP and len(w) > 1}


def _overlap(a: set[str], b: set[str]) -> int:
    """How many words of `a` occur in `b`, counting a shared 5-letter stem ("employee"/"employs")."""
    prefixes = {w[:5] for w in b if len(w) >= 5}
    return sum(1 for w in a if w in b or (len(w) >= 5 and w[:5] in prefixes))


def _sentences(doc: str) -> list[str]:
    return [s.strip() for s in _SENT.split(doc) if s and s.strip()]


def _entities(text: str) -> list[str]:
    """Capitalised spans, minus leading question and stop words ("When", "The")."""
    out = []
    for m in _CAPSPAN.finditer(text):
        words = m.group(0).split()
        while words and words[0].lower() in _STOP | _PRONOUN_START:
            words = words[1:]
        span = " ".join(words)
        if span and not span.isdigit():
            out.append(span)
    return out


def _answer_type(question: str) -> str:
    q = question.lower().strip()
    if re.match(r"^(in )?(what|which) year\b|^when\b", q):
        return "year"
    if re.match(r"^how (many|much)\b", q):
        return "number"
    if re.match(r"^who\b", q):
        return "name"
    if re.match(r"^(where|in which (city|country|town))\b", q):
        return "name"
    return "any"


def _candidates(sentence: str, kind: str, exclude: Iterable[str]) -> set[str]:
    ex = {e.lower() for e in exclude}
    if kind == "year":
        return set(_YEAR.findall(sentence)) - ex
    if kind == "number":
        return {n.replace(",", "") for n in _NUMBER.findall(sentence)} - ex
    if kind == "name":
        return {
            e for e in _entities(sentence) if e.lower() not in ex and not any(x in e.lower() for x in ex if x)
        }
    return {sentence}


@dataclass
class ContextDecision:
    """What the gate decided, in words and as a `Decision` (see `decision`)."""

    answerable: bool
    reason: str | None
    answer: str | None
    support: list[str]
    detail: str
    decision: Decision


_REPLY = {
    "irrelevant_context": "The documents I found are about {other}, not {subject}, so I can't answer from them. "
    "Could you point me to a source about {subject}?",
    "missing_information": "The documents mention {subject} but don't say {what}. I'd rather not guess; a source "
    "that covers it would let me answer.",
    "contradictory_documents": "The documents disagree: they give {values}. I can't tell which is right; "
    "could you say which source you trust, or check the original?",
    "false_premise": "The question assumes {premise}, but the documents say {fact}. If you meant something "
    "else, tell me and I'll look again.",
    "ambiguous_question": "Your question could refer to several things the documents describe: {values}. "
    "Which one do you mean?",
}


class ContextGate:
    """Answer or abstain on retrieved context, with a reason and a constructive reply.

    Args:
        guard: an optional `Guard`; documents it flags (harmful or injected) are refused first.
        min_overlap: share of the question's content words a supporting sentence must contain.

    Example:
        >>> gate = ContextGate()
        >>> docs = ["Acme Robotics was founded in 1998 by Maria Lopez. It is based in Lyon."]
        >>> gate.check("When was Acme Robotics founded?", docs).answer
        '1998'
        >>> gate.check("When was Borealis Labs founded?", docs).reason
        'irrelevant_context'
        >>> gate.check("Who founded Acme Robotics, the firm based in Paris?", docs).reason
        'false_premise'
    """

    def __init__(self, guard: Any = None, *, min_overlap: float = 0.5) -> None:
        self.guard = guard
        self.min_overlap = min_overlap

    # ------------------------------------------------------------------ public
    def check(self, question: str, documents: Sequence[Any]) -> ContextDecision:
        """Decide whether `documents` support an answer to `question`.

        Raises:
            InputError: the question is not a str, or the documents are not a str, a Document
                or a list of them.
        """
        from guard.errors import InputError

        if not isinstance(question, str):
            raise InputError(f"question must be a str, got {type(question).__name__}")
        if isinstance(documents, str) or hasattr(documents, "page_content"):
            documents = [documents]
        if documents is not None and (
            isinstance(documents, (bytes, dict)) or not isinstance(documents, Sequence)
        ):
            raise InputError(
                f"documents must be a str, a Document or a list of them, got {type(documents).__name__}"
            )
        docs = [getattr(d, "page_content", d) for d in (documents or [])]
        bad = [i for i, d in enumerate(docs) if not isinstance(d, str)]
        if bad:
            raise InputError(
                f"documents[{bad[0]}] is a {type(docs[bad[0]]).__name__}; documents must be str "
                "or have .page_content"
            )
        docs = [d for d in docs if d.strip()]
        if self.guard is not None:
            d = self.guard.check(question, context=docs)
            if d.blocked:
                return ContextDecision(
                    False, None, None, [], "the guard blocked the request or its documents", d
                )
        return self._decide(question, docs)

    def as_runnable(self, retriever: Any = None, answer: Any = None) -> Any:
        """A LangChain Runnable: question (or `{"question", "documents"}`) -> reply.

        With a `retriever`, documents come from it; the gate runs; when it abstains the
        constructive reply (a str) is returned and `answer` is not called; otherwise `answer`
        gets `{"question", "context", "documents"}` (or, without `answer`, the gate returns the
        documents it accepted). The `ContextDecision` is sent as the custom event
        `"context_decision"`.
        """
        from langchain_core.callbacks.manager import dispatch_custom_event
        from langchain_core.runnables import RunnableLambda

        def run(value: Any, config: Any) -> Any:
            question = value if isinstance(value, str) else value["question"]
            docs = retriever.invoke(question, config) if retriever is not None else value.get("documents", [])
            verdict = self.check(question, docs)
            dispatch_custom_event("context_decision", verdict, config=config)
            if not verdict.answerable:
                return verdict.decision.response
            if answer is None:
                return docs
            context = "\n\n".join(getattr(d, "page_content", d) for d in docs)
            return answer.invoke({"question": question, "context": context, "documents": docs}, config)

        return RunnableLambda(run, name="ContextGate")

    # ------------------------------------------------------------------ logic
    def _decide(self, question: str, docs: list[str]) -> ContextDecision:
        kind = _answer_type(question)
        q_entities = _entities(question)
        q_words = _content(question)
        text = "\n".join(docs).lower()
        if not docs:
            about = q_entities[0] if q_entities else "this"
            return self._abstain(
                "missing_information",
                "no documents were retrieved",
                question,
                response=f"I couldn't find any documents about {about}, so I can't answer "
                f"reliably. Could you share a source, or rephrase the question?",
            )

        # the subject: the question entity the documents mention most (others are premises)
        mentioned = sorted(q_entities, key=lambda e: -text.count(e.lower()))
        subject = mentioned[0] if mentioned and text.count(mentioned[0].lower()) else None
        if q_entities and subject is None:
            others = Counter(e for d in docs for s in _sentences(d) for e in _entities(s)[:1])
            other = others.most_common(1)[0][0] if others else "other topics"
            return self._abstain(
                "irrelevant_context",
                f"{q_entities[0]!r} is not mentioned in any document",
                question,
                subject=q_entities[0],
                other=other,
            )
        premises = [e for e in q_entities if e != subject] + _YEAR.findall(question)
        subject_words = _content(subject) if subject else set()
        relation = q_words - subject_words - {_content(p).pop() for p in premises if _content(p)}
        sentences = self._attributed(docs, subject)

        # false premise: a premise value the documents contradict for the same relation
        for p in premises:
            if p.lower() in text:
                continue
            window = self._premise_words(question, p)
            ptype = "year" if _YEAR.fullmatch(p) else "name"
            for subj, s in sentences:
                if subject and subj != subject:
                    continue
                if _overlap(window, _content(s)):
                    found = _candidates(s, ptype, [subject or ""] + q_entities)
                    if found:
                        return self._abstain(
                            "false_premise",
                            f"the question assumes {p!r}; the documents say {sorted(found)[0]!r}",
                            question,
                            premise=p,
                            fact=sorted(found)[0],
                            support=[s],
                        )

        # supporting sentences: share the relation words and hold an answer of the right type
        need = max(1, round(self.min_overlap * len(relation))) if relation else 1
        support: list[tuple[str, str, set[str]]] = []
        for subj, s in sentences:
            if subject and subj != subject:
                continue
            overlap = _overlap(relation, _content(s)) if relation else _overlap(q_words, _content(s))
            if overlap < need:
                continue
            cands = _candidates(s, kind, q_entities + ([subj] if subj else []))
            if cands:
                support.append((subj or "", s, cands))
        if not support:
            if subject is None and not q_words & _content(text):
                return self._abstain(
                    "irrelevant_context",
                    "no document shares the question's words",
                    question,
                    subject="your question",
                    other="other topics",
                )
            return self._abstain(
                "missing_information",
                f"no sentence about the subject holds an answer of the expected kind ({kind})",
                question,
                subject=subject or "the topic",
                what=_what(question),
            )
        if kind != "any":
            by_subject: dict[str, set[str]] = defaultdict(set)
            for subj, _, cands in support:
                by_subject[subj] |= {c.lower() for c in cands}
            if (
                subject is None
                and len(by_subject) > 1
                and len({frozenset(v) for v in by_subject.values()}) > 1
            ):
                names = sorted(by_subject)
                return self._abstain(
                    "ambiguous_question",
                    f"the question names no subject and the documents answer it for {names}",
                    question,
                    values=", ".join(names),
                    support=[s for _, s, _ in support],
                )
            sets = [{c.lower() for c in cands} for _, _, cands in support]
            if len(sets) > 1 and not set.intersection(*sets):
                values = sorted({c for _, _, cands in support for c in cands})
                return self._abstain(
                    "contradictory_documents",
                    f"supporting sentences disagree: {values}",
                    question,
                    values=" and ".join(values),
                    support=[s for _, s, _ in support],
                )
            common = set.intersection(*sets)
            answer = next(c for _, _, cands in support for c in cands if c.lower() in common)
        else:
            answer = max(support, key=lambda t: len(q_words & _content(t[1])))[1]
        d = Decision(
            action=Action.ANSWER,
            scores={"support_sentences": float(len(support))},
            reasons=[f"{len(support)} sentence(s) about {subject or 'the topic'} support an answer"],
            evidence=[Evidence(source="context_gate", name="support_sentences", value=float(len(support)))],
        )
        return ContextDecision(True, None, answer, [s for _, s, _ in support], d.reasons[0], d)

    @staticmethod
    def _premise_words(question: str, premise: str) -> set[str]:
        i = question.lower().find(premise.lower())
        before = question[:i] if i >= 0 else question
        return _content(" ".join(_WORD.findall(before)[-4:]))

    @staticmethod
    def _attributed(docs: list[str], subject: str | None) -> list[tuple[str | None, str]]:
        """(who each sentence is about, sentence): an explicit mention of the subject, else the
        sentence's leading name, else the doc's current topic (pronoun/definite openings)."""
        out = []
        for doc in docs:
            current: str | None = None
            for s in _sentences(doc):
                if subject and subject.lower() in s.lower():
                    current = subject
                else:
                    first = _WORD.findall(s)[:1]
                    ents = _entities(s)
                    if first and first[0].lower() not in _PRONOUN_START and ents and s.startswith(ents[0]):
                        current = ents[0]
                out.append((current, s))
        return out

    @staticmethod
    def _abstain(
        reason: str,
        detail: str,
        question: str,
        support: list[str] | None = None,
        response: str | None = None,
        **slots: str,
    ) -> ContextDecision:
        defaults = dict(
            subject="the topic",
            other="other topics",
            what="that",
            values="several answers",
            premise="something",
            fact="otherwise",
        )
        response = response or _REPLY[reason].format(**{**defaults, **slots})
        d = Decision(
            action=Action.ABSTAIN,
            category=reason,
            reasons=[f"{reason.replace('_', ' ')}: {detail}"],
            response=response,
            rule=f"context_gate.{reason}",
        )
        return ContextDecision(False, reason, None, support or [], detail, d)


def _what(question: str) -> str:
    q = question.strip().rstrip("?")
    return "the answer to: " + (q[0].lower() + q[1:] if q else q)


# ====================================================================== perturbations
@dataclass
class RagCase:
    """One test case: a question, documents, and whether the gate should answer."""

    question: str
    documents: list[str]
    kind: str  # "intact" or a perturbation kind
    intensity: str  # "none", "low", "medium", "high"
    expected: Literal["answer", "abstain"]
    answer: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


_FIRST = [
    "Acme",
    "Borealis",
    "Cobalt",
    "Dunmore",
    "Evergreen",
    "Falcon",
    "Granite",
    "Harbor",
    "Ironwood",
    "Juniper",
    "Kestrel",
    "Lumen",
    "Meridian",
    "Northwind",
    "Orchid",
    "Pinecrest",
]
_SECOND = ["Robotics", "Labs", "Foods", "Textiles", "Analytics", "Shipping", "Pharma", "Studios"]
_PEOPLE = [
    "Maria Lopez",
    "Kenji Sato",
    "Amara Okafor",
    "Lars Eriksen",
    "Priya Nair",
    "Tomas Novak",
    "Elena Rossi",
    "David Cohen",
    "Aisha Bello",
    "Hugo Martin",
]
_CITIES = ["Lyon", "Porto", "Gdansk", "Leeds", "Graz", "Turin", "Bergen", "Ghent", "Brno", "Malmo"]
_TOPICS = [
    "warehouse automation",
    "plant-based snacks",
    "recycled fabrics",
    "weather forecasting",
    "coastal freight",
    "rare-disease research",
    "animated films",
    "retail pricing",
]

_QUESTIONS = {
    "founded_year": ["When was {e} founded?", "In what year was {e} founded?"],
    "founder": ["Who founded {e}?"],
    "city": ["Where is {e} based?", "In which city is {e} based?"],
    "employees": ["How many people does {e} employ?", "How many employees does {e} have?"],
}
_FACT = {
    "founded_year": "{e} was founded in {founded_year} by {founder}.",
    "founder": "{e} was founded in {founded_year} by {founder}.",
    "city": "{e} is based in {city}.",
    "employees": "{e} employs {employees} people.",
}
_CLAIM = {  # a conflicting claim for each relation
    "founded_year": "{e} was founded in {v}",
    "founder": "{e} was founded by {v}",
    "city": "{e} is based in {v}",
    "employees": "{e} employs {v} people",
}
_PREMISE = {  # low / medium / high: a wrong year, a wrong city, a wrong founder
    "low": ("{q_head}, which was founded in {v}?", "founded_year"),
    "medium": ("{q_head}, the company based in {v}?", "city"),
    "high": ("{q_head}, the company {v} started?", "founder"),
}


def _profile(e: dict[str, Any]) -> str:
    facts = [
        "{e} was founded in {founded_year} by {founder}.",
        "{e} is based in {city}.",
        "It is known for its work on {topic}.",
        "{e} employs {employees} people.",
        "The company has grown steadily since it was founded.",
    ]
    return " ".join(f.format(**e) for f in facts)


def _kb(rng: random.Random, n: int) -> list[dict[str, Any]]:
    names = rng.sample([f"{a} {b}" for a in _FIRST for b in _SECOND], n)
    return [
        dict(
            e=name,
            founded_year=rng.randint(1950, 2015),
            founder=rng.choice(_PEOPLE),
            city=rng.choice(_CITIES),
            employees=rng.choice([40, 85, 120, 250, 480, 900, 1500, 3200]),
            topic=rng.choice(_TOPICS),
        )
        for name in names
    ]


def _alt(rng: random.Random, rel: str, e: dict[str, Any], near: bool = False) -> str:
    if rel == "founded_year":
        return str(e["founded_year"] + rng.choice([-3, -2, 2, 3] if near else [-20, -12, 11, 17]))
    if rel == "founder":
        return rng.choice([p for p in _PEOPLE if p != e["founder"]])
    if rel == "city":
        return rng.choice([c for c in _CITIES if c != e["city"]])
    return str(e["employees"] * rng.choice([2, 3]) + 10)


def perturbations(n_items: int = 40, seed: int = 0) -> list[RagCase]:
    """Intact cases plus every perturbation kind at low/medium/high intensity.

    Kinds: `missing_information` (remove the answer span: low removes the value, medium the
    sentence, high every sentence with the relation's words), `contradiction` (low: a hedged
    claim in the same document; medium: a second document; high: two documents with two other
    values), `entity_swap` (low: the answer sentence names another entity; medium: the main
    document is about another entity; high: every document is), `false_premise` (the question
    assumes a wrong year / city / founder), `ambiguity` (the subject is replaced by "the company"
    / "the firm" / "it" while the documents describe several companies).

    Example:
        >>> cases = perturbations(4)
        >>> sorted({c.kind for c in cases})[:3]
        ['ambiguity', 'contradiction', 'entity_swap']
        >>> {c.expected for c in cases if c.kind == "intact"}
        {'answer'}
    """
    rng = random.Random(seed)
    kb = _kb(rng, max(n_items, 4) + 4)
    cases: list[RagCase] = []
    for i in range(n_items):
        e, other = kb[i], kb[-1 - (i % 4)]
        rel = rng.choice(list(_QUESTIONS))
        template = rng.choice(_QUESTIONS[rel])
        q = template.format(e=e["e"])
        doc, distractor = _profile(e), _profile(other)
        value = str(e[rel])
        fact = _FACT[rel].format(**e)
        cases.append(RagCase(q, [doc, distractor], "intact", "none", "answer", value, {"relation": rel}))

        def add(kind: str, level: str, question: str, docs: list[str]) -> None:
            cases.append(RagCase(question, docs, kind, level, "abstain", None, {"relation": rel}))

        # remove the answer span
        span = {
            "founded_year": f" in {e['founded_year']}",
            "founder": f" by {e['founder']}",
            "city": f" in {e['city']}",
            "employees": f" {e['employees']}",
        }[rel]
        add("missing_information", "low", q, [doc.replace(fact, fact.replace(span, "", 1)), distractor])
        add("missing_information", "medium", q, [doc.replace(fact, "").replace("  ", " "), distractor])
        rel_words = _content(fact) - _content(e["e"]) - _content(value)
        kept = [s for s in _sentences(doc) if not (rel_words & _content(s))]
        add("missing_information", "high", q, [" ".join(kept), distractor])
        # contradiction
        alt1, alt2 = _alt(rng, rel, e), _alt(rng, rel, e)
        while alt2 == alt1:
            alt2 = _alt(rng, rel, e)
        claim = _CLAIM[rel]
        add(
            "contradiction",
            "low",
            q,
            [doc + " Some records, however, say " + claim.format(e=e["e"], v=alt1) + ".", distractor],
        )
        add(
            "contradiction",
            "medium",
            q,
            [doc, "According to a trade directory, " + claim.format(e=e["e"], v=alt1) + ".", distractor],
        )
        add(
            "contradiction",
            "high",
            q,
            [
                doc,
                claim.format(e=e["e"], v=alt1) + ", one report states.",
                "Another source insists " + claim.format(e=e["e"], v=alt2) + ".",
            ],
        )
        # entity swap
        swap = kb[-5 - (i % 3)]
        add("entity_swap", "low", q, [doc.replace(fact, fact.replace(e["e"], swap["e"])), distractor])
        add("entity_swap", "medium", q, [doc.replace(e["e"], swap["e"]), distractor])
        add(
            "entity_swap",
            "high",
            q,
            [doc.replace(e["e"], swap["e"]), distractor.replace(other["e"], swap["e"])],
        )
        # false premise: a wrong fact about another relation of the same entity
        for level, (shape, prel) in _PREMISE.items():
            if prel == rel or (rel in ("founded_year", "founder") and prel in ("founded_year", "founder")):
                prel = "city" if level != "low" else "employees"
                shape = {
                    "city": "{q_head}, the company based in {v}?",
                    "employees": "{q_head}, the company with {v} employees?",
                }[prel]
            wrong = _alt(rng, prel, e, near=(level == "low"))
            add("false_premise", level, shape.format(q_head=q.rstrip("?"), v=wrong), [doc, distractor])
        # ambiguity: no subject, several companies in the documents that answer differently
        rivals: list[dict[str, Any]] = []
        for r in (other, kb[-5 - ((i + 1) % 3)]):
            r = dict(r)
            while str(r[rel]) == value or any(str(x[rel]) == str(r[rel]) for x in rivals):
                r[rel] = (
                    _alt(rng, rel, e) if rel != "founded_year" else e["founded_year"] + rng.randint(1, 30)
                )
            rivals.append(r)
        for level, ref in (("low", "the company"), ("medium", "the firm"), ("high", "it")):
            docs = [doc, _profile(rivals[0])] + ([_profile(rivals[1])] if level == "high" else [])
            add("ambiguity", level, template.format(e=ref), docs)
    return cases


def evaluate_gate(gate: ContextGate, cases: Sequence[RagCase]) -> dict[str, Any]:
    """Score a gate on `cases`: abstain rate on flawed cases, answer rate on intact ones, by
    kind and intensity, plus the share of abstentions with the matching reason.

    Example:
        >>> table = evaluate_gate(ContextGate(), perturbations(10))
        >>> table["intact"]["answer_rate"] >= 0.9 and table["flawed"]["abstain_rate"] >= 0.85
        True
    """
    expected_reason = {
        "missing_information": {"missing_information"},
        "contradiction": {"contradictory_documents"},
        "entity_swap": {"irrelevant_context", "missing_information"},
        "false_premise": {"false_premise"},
        "ambiguity": {"ambiguous_question"},
    }
    rows: dict[tuple[str, str], list[tuple[bool, bool]]] = defaultdict(list)
    correct_answers = 0
    for c in cases:
        v = gate.check(c.question, c.documents)
        ok = v.answerable == (c.expected == "answer")
        reason_ok = (v.reason in expected_reason.get(c.kind, set())) if not v.answerable else False
        rows[(c.kind, c.intensity)].append((ok, reason_ok))
        if (
            c.kind == "intact"
            and v.answerable
            and v.answer
            and c.answer
            and v.answer.lower() == c.answer.lower()
        ):
            correct_answers += 1
    table: dict[str, Any] = {"by_kind": {}}
    for (kind, level), res in sorted(rows.items()):
        table["by_kind"].setdefault(kind, {})[level] = {
            "n": len(res),
            "correct_rate": sum(o for o, _ in res) / len(res),
            "reason_match_rate": (sum(r for _, r in res) / len(res)) if kind != "intact" else None,
        }
    flawed = [o for (k, _), res in rows.items() if k != "intact" for o, _ in res]
    intact = [o for (k, _), res in rows.items() if k == "intact" for o, _ in res]
    table["flawed"] = {"n": len(flawed), "abstain_rate": sum(flawed) / max(1, len(flawed))}
    table["intact"] = {
        "n": len(intact),
        "answer_rate": sum(intact) / max(1, len(intact)),
        "exact_answer_rate": correct_answers / max(1, len(intact)),
    }
    return table


def format_table(table: dict[str, Any]) -> str:
    """The evaluation as a small text table (kind x intensity)."""
    lines = [f"{'kind':<22}{'intensity':<10}{'n':>4}{'correct':>9}{'reason':>8}"]
    for kind, levels in table["by_kind"].items():
        for level, r in levels.items():
            reason = "" if r["reason_match_rate"] is None else f"{r['reason_match_rate']:.0%}"
            lines.append(f"{kind:<22}{level:<10}{r['n']:>4}{r['correct_rate']:>9.0%}{reason:>8}")
    lines.append(
        f"flawed: abstain {table['flawed']['abstain_rate']:.1%} of {table['flawed']['n']}; "
        f"intact: answer {table['intact']['answer_rate']:.1%} of {table['intact']['n']} "
        f"(exact answer {table['intact']['exact_answer_rate']:.1%})"
    )
    return "\n".join(lines)


class KeywordRetriever:
    """A tiny in-memory retriever (word-overlap scoring, BM25-like length damping).

    `as_langchain()` returns it as a LangChain `BaseRetriever`.

    Example:
        >>> r = KeywordRetriever(["The guard refuses harmful requests.", "Bread needs flour."], k=1)
        >>> r.search("what does the guard refuse?")
        ['The guard refuses harmful requests.']
    """

    def __init__(self, texts: Sequence[str], k: int = 3) -> None:
        self.texts = list(texts)
        self.k = k
        self._words = [_content(t) for t in self.texts]
        df = Counter(w for ws in self._words for w in ws)
        import math

        self._idf = {w: math.log(1 + len(self.texts) / n) for w, n in df.items()}

    def search(self, query: str) -> list[str]:
        q = _content(query)
        scored = [
            (sum(self._idf.get(w, 0) for w in q & ws) / (1 + 0.01 * len(ws)), i)
            for i, ws in enumerate(self._words)
        ]
        return [self.texts[i] for s, i in sorted(scored, key=lambda t: (-t[0], t[1]))[: self.k] if s > 0]

    def as_langchain(self) -> Any:
        from langchain_core.documents import Document
        from langchain_core.retrievers import BaseRetriever

        outer = self

        class _Retriever(BaseRetriever):
            def _get_relevant_documents(self, query: str, *, run_manager: Any = None) -> list[Document]:
                return [Document(page_content=t) for t in outer.search(query)]

        return _Retriever()
