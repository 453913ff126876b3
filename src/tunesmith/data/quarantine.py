"""Keep rejected records instead of dropping them: count them, write them out, enforce a limit.

Every stage that rejects a record (reading, format conversion, cleaning, tokenization) adds it
here. ``write`` puts them in ``quarantine.jsonl`` (one JSON object per line: file, line, index,
field, reason, fix, record) so a user can look at exactly what was left out; ``enforce`` fails
the run when more than ``data.max_bad_fraction`` of the data is bad.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tunesmith.data.readers import Record
from tunesmith.errors import DataError

_SHOWN = 5


@dataclass
class Reject:
    """A record that could not be used, with the field at fault, the reason and the fix."""

    record: Record
    field: str
    reason: str
    fix: str

    def describe(self) -> str:
        return f"{self.record.where()}: {self.field}: {self.reason} ({self.fix})"


def reason_kind(reason: str) -> str:
    """A reason without its per-record details (found values, counts in parentheses), so that
    rejects can be counted by kind."""
    return re.sub(r" \(.*?\)", "", reason.split("; found ")[0])


class Quarantine:
    """The rejected records of one run, in the order they were found."""

    def __init__(self, rejects: Iterable[Reject] = ()):
        self.rejects: list[Reject] = list(rejects)

    def __len__(self) -> int:
        return len(self.rejects)

    def add(self, record: Record, field: str, reason: str, fix: str) -> None:
        """Quarantine one record (e.g. one rejected later than format conversion)."""
        self.rejects.append(Reject(record, field, reason, fix))

    def extend(self, rejects: Iterable[Reject]) -> None:
        self.rejects.extend(rejects)

    def counts_by_reason(self) -> dict[str, int]:
        """``"field: reason"`` -> count, most common first; per-record details are left out so
        that the same problem in many records is counted once."""
        counts = Counter(f"{r.field}: {reason_kind(r.reason)}" for r in self.rejects)
        return dict(counts.most_common())

    def rows(self) -> list[dict]:
        """The quarantine file's rows: the location, the problem and the record as read."""
        return [
            {"file": r.record.file, "line": r.record.line, "index": r.record.index,
             "field": r.field, "reason": r.reason, "fix": r.fix,
             "record": r.record.data if r.record.data is not None else r.record.raw}
            for r in self.rejects
        ]

    def write(self, path: str | Path) -> Path:
        """Write the rows as JSON lines to ``path``, or to ``path/quarantine.jsonl`` when
        ``path`` is a folder (an existing one, or a path without a suffix)."""
        path = Path(path)
        if path.is_dir() or not path.suffix:
            path = path / "quarantine.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            for row in self.rows():
                f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        return path

    def enforce(self, total: int, max_bad_fraction: float, quarantine_path: str | Path | None = None
                ) -> dict[str, int]:
        """Raise DataError when more than ``max_bad_fraction`` of ``total`` records were rejected;
        otherwise return ``counts_by_reason()`` for logging."""
        bad = len(self.rejects)
        fraction = bad / total if total else (1.0 if bad else 0.0)
        if bad == 0 or fraction <= max_bad_fraction:
            return self.counts_by_reason()
        lines = [f"{bad} of {total} records were rejected ({fraction:.1%} bad, more than the limit "
                 f"data.max_bad_fraction={max_bad_fraction:g} = {max_bad_fraction:.1%})."]
        lines.append("By reason:")
        lines += [f"  {n:>6}  {reason}" for reason, n in list(self.counts_by_reason().items())[:10]]
        lines.append(f"First {min(bad, _SHOWN)} problems:")
        lines += [f"  {r.describe()}" for r in self.rejects[:_SHOWN]]
        if quarantine_path is not None:
            lines.append(f"All rejected records, with their reasons: {quarantine_path}")
        lines.append("Fix the data (see the fixes above), map the right columns with data.columns, "
                     "or, if these rows may be skipped, raise data.max_bad_fraction "
                     f"(for example data.max_bad_fraction={_suggest(fraction)}).")
        raise DataError("\n".join(lines))


def _suggest(fraction: float) -> str:
    for step in (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0):
        if fraction <= step:
            return f"{step:g}"
    return "1"
