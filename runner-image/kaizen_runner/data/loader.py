"""`load_records`: fetch, validate and report in one streaming pass, then re-read usable records on demand.

Nothing is held in memory between passes: the validation pass keeps only counts and the first
issues, and iterating `LoadResult.records` parses the (local) file again. That keeps a 100 MB
upload at a small, constant memory cost, at the price of parsing it twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kaizen_runner.data.formats import DataFormat, parse_format
from kaizen_runner.data.issues import DataError, Issue, Reason
from kaizen_runner.data.limits import DEFAULT_LIMITS, Limits
from kaizen_runner.data.readers import open_rows
from kaizen_runner.data.records import Record
from kaizen_runner.data.report import ValidationReport
from kaizen_runner.data.sources import LocalData, fetch
from kaizen_runner.data.validate import Validator, guess_format

if TYPE_CHECKING:
    from kaizen_runner.storage import S3Connection


@dataclass(frozen=True)
class RecordStream:
    """The usable records of a validated file, in file order; iterable any number of times."""

    data: LocalData
    fmt: DataFormat
    max_length: int | None
    limits: Limits
    count: int

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Record]:
        for result in _validated(self.data, self.fmt, self.max_length, self.limits):
            if not isinstance(result, Issue):
                yield result


@dataclass
class LoadResult:
    """Usable records plus the validation report; close it (or use `with`) to delete downloaded copies."""

    records: RecordStream
    report: ValidationReport
    data: LocalData

    def close(self) -> None:
        self.data.close()

    def __enter__(self) -> LoadResult:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _validated(
    data: LocalData, fmt: DataFormat, max_length: int | None, limits: Limits
) -> Iterator[Record | Issue]:
    with open_rows(data.path, data.name, data.file_type, fmt, limits) as (rows, media):
        validator = Validator(fmt, media, max_length)
        for row in rows:
            yield validator(row)


def load_records(
    source: str | Path,
    fmt: DataFormat | str,
    *,
    strict: bool = False,
    max_length: int | None = None,
    connection: S3Connection | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> LoadResult:
    """Validate `source` as `fmt` and give access to its usable records.

    Raises DataError when the source cannot be read, when no usable record is left, or (with
    `strict`) when any record is unusable; the error's `report` then holds the full report.
    """
    fmt = parse_format(fmt)
    if max_length is not None and max_length < 1:
        raise ValueError("max_length must be at least 1")
    data = fetch(source, fmt, connection=connection, limits=limits)
    try:
        report = ValidationReport(data.name, fmt.value, data.file_type.value)
        for result in _validated(data, fmt, max_length, limits):
            if isinstance(result, Issue):
                report.count_issue(result)
            else:
                report.count_usable()
        _judge(report, strict, lambda: _format_hint(data, fmt, limits))
    except BaseException:
        data.close()
        raise
    return LoadResult(RecordStream(data, fmt, max_length, limits, report.usable), report, data)


def _judge(report: ValidationReport, strict: bool, hint: Callable[[], str]) -> None:
    if report.total == 0:
        raise DataError(Reason.NO_USABLE_RECORDS, f"{report.source}: holds no records", report)
    if report.usable == 0:
        reason, count = report.counts_by_reason.most_common(1)[0]
        message = (
            f"{report.source}: no usable records; all {report.total} were skipped "
            f"(most often {reason}: {count}; first: {report.examples[0].message})"
        )
        raise DataError(Reason.NO_USABLE_RECORDS, message + hint(), report)
    if strict and report.skipped:
        raise DataError(
            Reason.STRICT_VIOLATION,
            f"{report.source}: {report.skipped} of {report.total} records are unusable (strict mode); "
            f"first: {report.examples[0].message}",
            report,
        )


def _format_hint(data: LocalData, fmt: DataFormat, limits: Limits) -> str:
    """When nothing fits, say which format the first record looks like (a wrong --format is common)."""
    with open_rows(data.path, data.name, data.file_type, fmt, limits) as (rows, _):
        first = next(rows, None)
    guessed = guess_format(first.value) if first is not None else None
    return f". The records look like {guessed.value} data" if guessed not in (None, fmt) else ""
