"""The validation summary a user sees: counts by reason and the first few issues, as JSON or text."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from kaizen_runner.data.issues import Issue

MAX_EXAMPLES = 20


@dataclass
class ValidationReport:
    source: str
    format: str
    file_type: str
    total: int = 0
    usable: int = 0
    counts_by_reason: Counter[str] = field(default_factory=Counter)
    examples: list[Issue] = field(default_factory=list)
    max_examples: int = MAX_EXAMPLES

    @property
    def skipped(self) -> int:
        return self.total - self.usable

    @property
    def ok(self) -> bool:
        """Usable data is left (strictness is the loader's decision, not the report's)."""
        return self.usable > 0

    def count_usable(self) -> None:
        self.total += 1
        self.usable += 1

    def count_issue(self, issue: Issue) -> None:
        self.total += 1
        self.counts_by_reason[issue.reason.value] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(issue)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "format": self.format,
            "file_type": self.file_type,
            "total": self.total,
            "usable": self.usable,
            "skipped": self.skipped,
            "counts_by_reason": dict(self.counts_by_reason.most_common()),
            "examples": [issue.as_dict() for issue in self.examples],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.as_dict(), indent=indent, ensure_ascii=False)

    def to_text(self) -> str:
        lines = [
            f"{self.source} ({self.format}, {self.file_type}): {self.total} records, "
            f"{self.usable} usable, {self.skipped} skipped"
        ]
        if self.counts_by_reason:
            lines.append("skipped by reason:")
            lines += [f"  {reason}: {count}" for reason, count in self.counts_by_reason.most_common()]
            shown = len(self.examples)
            lines.append(f"first {shown} issue(s):" if shown < self.skipped else "issues:")
            lines += [f"  [{issue.reason.value}] {issue.message}" for issue in self.examples]
        return "\n".join(lines)
