"""Helpers for the malformed-record tests: conversation turns, and the one issue of a two-record file."""

from __future__ import annotations

from kaizen_runner.data import load_records


def human(value="Hi"):
    return {"from": "human", "value": value}


def gpt(value="Hello"):
    return {"from": "gpt", "value": value}


def only_issue(path, fmt, **options):
    """The single skipped record of a file whose record 0 is valid and record 1 is not."""
    with load_records(path, fmt, **options) as result:
        report = result.report
        assert (report.total, report.usable) == (2, 1)
        [issue] = report.examples
        assert [r.index for r in result.records] == [0]
    return issue
