"""An optional JSONL audit log of decisions, safe under concurrent writers.

Each decision becomes one JSON line: time, action, category, scores, rule, latency, stage and a
hash of the prompt. The prompt text itself is written only when opted in. A line is written
with a single `write` on a file opened in append mode, under a thread lock and (on POSIX) an
advisory file lock, so threads and processes can share one file without losing or
interleaving records.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from integrations._core import prompt_hash

try:  # POSIX only; elsewhere the thread lock and O_APPEND remain
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


class JsonlAuditLog:
    """Append decisions to a JSONL file.

    Args:
        path: the file; parent folders are created.
        include_prompt: write the prompt text (off by default: only its sha256 is written).
        include_reasons: write the decision's reasons (on by default; they are meant to be shown).

    Example:
        >>> import tempfile, pathlib
        >>> from guard import Action, Decision
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "audit.jsonl"
        >>> log = JsonlAuditLog(path)
        >>> log.write(Decision(action=Action.REFUSE, category="violence_weapons"), prompt="secret")
        >>> rec = json.loads(path.read_text())
        >>> rec["action"], "prompt" in rec, len(rec["prompt_sha256"])
        ('refuse', False, 64)
    """

    def __init__(
        self, path: str | os.PathLike[str], *, include_prompt: bool = False, include_reasons: bool = True
    ) -> None:
        self.path = Path(path)
        self.include_prompt = include_prompt
        self.include_reasons = include_reasons
        self._lock = threading.Lock()

    def record(self, decision: Any, prompt: str | None = None) -> dict[str, Any]:
        """The JSON-ready record for one decision (what `write` appends)."""
        action = getattr(decision.action, "value", decision.action)
        rec: dict[str, Any] = {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "action": action,
            "category": decision.category,
            "scores": {k: round(float(v), 6) for k, v in decision.scores.items()},
            "rule": decision.rule,
            "latency_ms": decision.latency_ms,
        }
        for extra in ("stage", "guard_ms", "call_ms", "cut", "chunks_sent"):
            if hasattr(decision, extra):
                rec[extra] = getattr(decision, extra)
        if self.include_reasons:
            rec["reasons"] = list(decision.reasons)
        if prompt is not None:
            rec["prompt_sha256"] = prompt_hash(prompt)
            if self.include_prompt:
                rec["prompt"] = prompt
        return rec

    def write(self, decision: Any, prompt: str | None = None) -> None:
        """Append one decision as one line (never split, never lost)."""
        rec = self.record(decision, prompt)
        try:
            line = (json.dumps(rec, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates have no UTF-8 form; JSON escapes keep them exactly
            line = (json.dumps(rec, ensure_ascii=True, default=str) + "\n").encode("ascii")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                view = memoryview(line)
                while view:  # a regular file takes it in one go; loop for the pathological case
                    n = os.write(fd, view)
                    view = view[n:]
            finally:
                os.close(fd)  # closing also releases the flock

    def read(self) -> list[dict[str, Any]]:
        """All records so far (for tests and small reports)."""
        if not self.path.exists():
            return []
        return [
            json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()
        ]
