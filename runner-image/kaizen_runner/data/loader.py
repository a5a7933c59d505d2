"""`load_records`: fetch, validate and report in one streaming pass; usable records come back on demand.

The file is parsed once. The validation pass keeps only counts and the first issues in memory and
writes the usable records to a spool file beside it (pickled in batches of a few MB, a format made
for exactly this), and iterating `LoadResult.records` reads the spool back. Memory stays small and constant
however large the file; the price is disk the size of the usable records, freed by `close`.
"""

from __future__ import annotations

import pickle
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kaizen_runner.data.convert import Task
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

_SPOOL_BUFFER = 1 << 20
# Records are pickled in batches: one pickle call per record costs more than the record's own bytes.
# A batch aims at about _BATCH_BYTES, judged by the size of the batch before it, and holds at most
# _MAX_BATCH records, so the records waiting in memory stay a few MB whatever the file's size.
_BATCH_BYTES = 4 << 20
_MAX_BATCH = 256


@dataclass(frozen=True)
class RecordStream:
    """The usable records of a validated file, in file order; iterable any number of times."""

    spool: Path
    count: int

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Record]:
        with open(self.spool, "rb", buffering=_SPOOL_BUFFER) as handle:
            read, loads = handle.read, pickle.loads
            while header := read(8):
                yield from loads(read(int.from_bytes(header, "little")))


class _SpoolWriter:
    """Batches of records, each pickled on its own behind its length: no pickle memo outlives a batch,
    so neither side keeps state that grows with the file."""

    def __init__(self, path: Path) -> None:
        self._handle = open(path, "wb", buffering=_SPOOL_BUFFER)  # noqa: SIM115 (closed by close())
        self._pending: list[Record] = []
        self._batch = 8  # grows once the first batch has shown how large records are

    def write(self, record: Record) -> None:
        self._pending.append(record)
        # Embedded images can be many MB each: such a record goes out at once.
        if len(self._pending) >= self._batch or getattr(record, "images", None):
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        blob = pickle.dumps(self._pending, protocol=pickle.HIGHEST_PROTOCOL)
        self._handle.write(len(blob).to_bytes(8, "little"))
        self._handle.write(blob)
        self._batch = max(1, min(_MAX_BATCH, _BATCH_BYTES * len(self._pending) // len(blob)))
        self._pending = []

    def close(self) -> None:
        if not self._handle.closed:
            self._flush()
        self._handle.close()


@dataclass
class LoadResult:
    """Usable records plus the validation report; close it (or use `with`) to delete downloaded copies
    and the spool of records."""

    records: RecordStream
    report: ValidationReport
    data: LocalData
    _spool_dir: Path | None = field(default=None, repr=False)

    def close(self) -> None:
        self.data.close()
        if self._spool_dir is not None:
            shutil.rmtree(self._spool_dir, ignore_errors=True)
            self._spool_dir = None

    def __enter__(self) -> LoadResult:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _validated(
    data: LocalData, fmt: DataFormat, max_length: int | None, limits: Limits, pairs: bool
) -> Iterator[Record | Issue]:
    with open_rows(data.path, data.name, data.file_type, fmt, limits) as (rows, media):
        validator = Validator(fmt, media, max_length, pairs)
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
    task: Task | None = None,
) -> LoadResult:
    """Validate `source` as `fmt` and give access to its usable records.

    `task` is what the records are for, where it asks more of them than `fmt` does: for "dpo" every
    record must be a preference pair, so a plain ShareGPT(_Image) conversation is a skipped record
    the report names, not an error when `to_trl` converts it.
    Raises DataError when the source cannot be read, when no usable record is left, or (with
    `strict`) when any record is unusable; the error's `report` then holds the full report.
    """
    fmt = parse_format(fmt)
    if max_length is not None and max_length < 1:
        raise ValueError("max_length must be at least 1")
    data = fetch(source, fmt, connection=connection, limits=limits)
    spool_dir = Path(tempfile.mkdtemp(prefix="kaizen-records-"))
    spool = _SpoolWriter(spool_dir / "records.pickle")
    try:
        report = ValidationReport(data.name, fmt.value, data.file_type.value)
        for result in _validated(data, fmt, max_length, limits, task == "dpo"):
            if isinstance(result, Issue):
                report.count_issue(result)
            else:
                report.count_usable()
                spool.write(result)
        spool.close()
        _judge(report, strict, lambda: _format_hint(data, fmt, limits))
    except BaseException:
        spool.close()
        shutil.rmtree(spool_dir, ignore_errors=True)
        data.close()
        raise
    return LoadResult(RecordStream(spool_dir / "records.pickle", report.usable), report, data, spool_dir)


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
